/* fuzz_detect.c - libFuzzer target for parser detection: whatever parser
 * swerve_log_detect picks for arbitrary bytes must cope with them. */
#include "fuzz_log.h"

FUZZ_LOG_TARGET(NULL)
