/* fuzz_go.c - libFuzzer target for the go log parser (rewards/). */
#include "fuzz_log.h"

FUZZ_LOG_TARGET("go")
