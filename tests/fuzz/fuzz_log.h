/* fuzz_log.h - the body shared by the log-parser fuzz targets: parse the
 * input with one parser (plain and as a truncated capture), check the
 * testlog's invariants, and grade it, so that every path a hostile log can
 * reach (the model controls what its tests print) runs under ASan+UBSan. */
#ifndef SWERVE_FUZZ_LOG_H
#define SWERVE_FUZZ_LOG_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rewards/rewards.h"

static void fuzz_check_log(const struct swerve_testlog *log)
{
	size_t n = swerve_testlog_count(log);
	for (size_t i = 0; i < n; i++) {
		const struct swerve_test_result *r = swerve_testlog_at(log, i);
		enum swerve_test_status st;
		if (!r || !r->name[0] || (unsigned)r->status > SWERVE_TEST_XFAIL)
			abort();
		if (swerve_testlog_get(&st, log, r->name) != 0 || st != r->status)
			abort(); /* every listed id must be found with its status */
	}
	const char *f2p[] = {n ? swerve_testlog_at(log, 0)->name : "x", "missing"};
	const char *p2p[] = {n ? swerve_testlog_at(log, n - 1)->name : "y"};
	struct swerve_grade_input in = {0};
	in.tests[SWERVE_FAIL_TO_PASS] = f2p;
	in.n_tests[SWERVE_FAIL_TO_PASS] = 2;
	in.tests[SWERVE_PASS_TO_PASS] = p2p;
	in.n_tests[SWERVE_PASS_TO_PASS] = 1;
	struct swerve_grade g;
	if (swerve_grade_compute(&g, &in, log, 1) == 0) {
		enum swerve_test_status st;
		/* resolved only if "missing" is really there and passing */
		if (g.resolved && (swerve_testlog_get(&st, log, "missing") != 0 ||
		                   (st != SWERVE_TEST_PASSED && st != SWERVE_TEST_XFAIL)))
			abort();
		swerve_grade_dispose(&g);
	}
}

static int fuzz_parse(const char *parser, const uint8_t *data, size_t size)
{
	for (unsigned flags = 0; flags <= SWERVE_LOG_TRUNCATED; flags += SWERVE_LOG_TRUNCATED) {
		struct swerve_testlog *log = NULL;
		if (swerve_log_parse(&log, parser, (const char *)data, size, flags) == 0) {
			fuzz_check_log(log);
			swerve_testlog_free(log);
		}
	}
	return 0;
}

#define FUZZ_LOG_TARGET(parser)                                                                    \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);                              \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)                               \
	{                                                                                          \
		return fuzz_parse(parser, data, size);                                             \
	}

#endif
