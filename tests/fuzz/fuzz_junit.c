/* fuzz_junit.c - libFuzzer target for the junit log parser (rewards/). */
#include "fuzz_log.h"

FUZZ_LOG_TARGET("junit")
