/* fuzz_sympy.c - libFuzzer target for the sympy log parser (rewards/). */
#include "fuzz_log.h"

FUZZ_LOG_TARGET("sympy")
