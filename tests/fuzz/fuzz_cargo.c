/* fuzz_cargo.c - libFuzzer target for the cargo log parser (rewards/). */
#include "fuzz_log.h"

FUZZ_LOG_TARGET("cargo")
