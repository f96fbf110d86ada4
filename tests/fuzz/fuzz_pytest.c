/* fuzz_pytest.c - libFuzzer target for the pytest log parser (rewards/). */
#include "fuzz_log.h"

FUZZ_LOG_TARGET("pytest")
