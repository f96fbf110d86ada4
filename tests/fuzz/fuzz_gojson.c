/* fuzz_gojson.c - libFuzzer target for the gojson log parser (rewards/). */
#include "fuzz_log.h"

FUZZ_LOG_TARGET("gojson")
