/* fuzz_node.c - libFuzzer target for the node log parser (rewards/). */
#include "fuzz_log.h"

FUZZ_LOG_TARGET("node")
