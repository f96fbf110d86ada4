/* fuzz_ctest.c - libFuzzer target for the ctest log parser (rewards/). */
#include "fuzz_log.h"

FUZZ_LOG_TARGET("ctest")
