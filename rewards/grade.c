/* grade.c - grading as SWE-bench defines it, with its holes closed.
 * Does: split each expected category (FAIL_TO_PASS, PASS_TO_PASS, and the
 * reported-only FAIL_TO_FAIL, PASS_TO_FAIL) into success (PASSED or XFAIL)
 * and failure (everything else: FAILED, ERROR, SKIPPED, missing), then
 * FULL iff every FAIL_TO_PASS and every PASS_TO_PASS test succeeded, PARTIAL
 * iff some but not all FAIL_TO_PASS did and every PASS_TO_PASS did, NO
 * otherwise. SWE-bench leaves missing and skipped tests out of both lists (so
 * an all-missing FAIL_TO_PASS would grade FULL); here they are failures.
 * Refuses to grade (trusted = 0) a run where no test ran, or whose exit code
 * contradicts the parsed statuses: such a log was not produced by the run
 * the statuses describe (a crash after the summary, output from a wrapper
 * script, a runner that ignores failures), and a reward from it would lie.
 * Does not: decide timeouts or patch failures (the caller's outcome). */
#include "rewards.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const category_names[] = {"FAIL_TO_PASS", "PASS_TO_PASS", "FAIL_TO_FAIL",
                                             "PASS_TO_FAIL"};

const char *swerve_test_category_name(enum swerve_test_category c)
{
	return (unsigned)c < SWERVE_CATEGORY_COUNT ? category_names[c] : "?";
}

const char *swerve_resolution_name(enum swerve_resolution r)
{
	switch (r) {
	case SWERVE_RESOLVED_FULL: return "RESOLVED_FULL";
	case SWERVE_RESOLVED_PARTIAL: return "RESOLVED_PARTIAL";
	case SWERVE_RESOLVED_NO: return "RESOLVED_NO";
	}
	return "?";
}

void swerve_grade_dispose(struct swerve_grade *grade)
{
	if (!grade)
		return;
	for (int c = 0; c < SWERVE_CATEGORY_COUNT; c++) {
		free(grade->success[c]);
		free(grade->failure[c]);
		grade->success[c] = grade->failure[c] = NULL;
		grade->n_success[c] = grade->n_failure[c] = 0;
	}
}

static int passing(enum swerve_test_status s)
{
	return s == SWERVE_TEST_PASSED || s == SWERVE_TEST_XFAIL;
}

int swerve_grade_compute(struct swerve_grade *out, const struct swerve_grade_input *in,
                         const struct swerve_testlog *log, int exit_code)
{
	memset(out, 0, sizeof(*out));
	out->trusted = 1;
	out->resolution = SWERVE_RESOLVED_NO;

	for (int c = 0; c < SWERVE_CATEGORY_COUNT; c++) {
		size_t n = in->n_tests[c];
		if (n) {
			out->success[c] = calloc(n, sizeof(char *));
			out->failure[c] = calloc(n, sizeof(char *));
			if (!out->success[c] || !out->failure[c]) {
				swerve_grade_dispose(out);
				return swerve_error_set(SWERVE_ENOMEM, "grade: out of memory");
			}
		}
		for (size_t i = 0; i < n; i++) {
			const char *t = in->tests[c][i];
			enum swerve_test_status st;
			if (t && swerve_testlog_get(&st, log, t) == 0 && passing(st))
				out->success[c][out->n_success[c]++] = t;
			else
				out->failure[c][out->n_failure[c]++] = t;
		}
		out->fraction[c] = n ? (double)out->n_success[c] / (double)n : 1.0;
	}

	size_t total = swerve_testlog_count_tests(log);
	size_t bad = swerve_testlog_count_status(log, SWERVE_TEST_FAILED) +
	             swerve_testlog_count_status(log, SWERVE_TEST_ERROR);
	if (total == 0) {
		out->trusted = 0;
		snprintf(out->untrusted_reason, sizeof(out->untrusted_reason),
		         "no test ran (the %s parser found no result%s)",
		         swerve_testlog_parser(log) ? swerve_testlog_parser(log) : "log",
		         exit_code != SWERVE_EXIT_CODE_UNKNOWN && exit_code != 0
		                 ? "; exit code non-zero"
		                 : "");
	} else if (exit_code != SWERVE_EXIT_CODE_UNKNOWN && exit_code != 0 && bad == 0) {
		out->trusted = 0;
		snprintf(out->untrusted_reason, sizeof(out->untrusted_reason),
		         "exit code %d but no FAILED or ERROR test among %zu parsed", exit_code,
		         total);
	} else if (exit_code == 0 && bad > 0) {
		out->trusted = 0;
		snprintf(out->untrusted_reason, sizeof(out->untrusted_reason),
		         "exit code 0 but %zu FAILED or ERROR test%s parsed", bad,
		         bad == 1 ? "" : "s");
	}

	int f2p_all = out->n_failure[SWERVE_FAIL_TO_PASS] == 0;
	int f2p_some = out->n_success[SWERVE_FAIL_TO_PASS] > 0;
	int p2p_all = out->n_failure[SWERVE_PASS_TO_PASS] == 0;
	if (f2p_all && p2p_all)
		out->resolution = SWERVE_RESOLVED_FULL;
	else if (f2p_some && p2p_all)
		out->resolution = SWERVE_RESOLVED_PARTIAL;
	else
		out->resolution = SWERVE_RESOLVED_NO;
	out->resolved = out->trusted && out->resolution == SWERVE_RESOLVED_FULL;
	return 0;
}
