/* fuzz_tap.c - libFuzzer target for the tap log parser (rewards/). */
#include "fuzz_log.h"

FUZZ_LOG_TARGET("tap")
