/* fuzz_unittest.c - libFuzzer target for the unittest log parser (rewards/). */
#include "fuzz_log.h"

FUZZ_LOG_TARGET("unittest")
