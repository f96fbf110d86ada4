/* test_grade.c - grading tables (every status, and missing, for FAIL_TO_PASS
 * and PASS_TO_PASS), partial resolution, the to-fail categories, and the
 * untrusted cases; outcomes and the reward formula. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "rewards/rewards.h"

#define MISSING (-1)

static struct swerve_testlog *make_log(const char *const *names, const int *statuses, size_t n)
{
	struct swerve_testlog *log;
	cr_assert_eq(swerve_testlog_new(&log), 0);
	for (size_t i = 0; i < n; i++)
		if (statuses[i] != MISSING)
			cr_assert_eq(swerve_testlog_set(log, names[i], strlen(names[i]),
			                                (enum swerve_test_status)statuses[i]),
			             0);
	return log;
}

static int passes(int st)
{
	return st == SWERVE_TEST_PASSED || st == SWERVE_TEST_XFAIL;
}

static int failing(int st)
{
	return st == SWERVE_TEST_FAILED || st == SWERVE_TEST_ERROR;
}

Test(grade, table_every_status_pair_for_f2p_and_p2p)
{
	const int all[] = {SWERVE_TEST_PASSED, SWERVE_TEST_FAILED, SWERVE_TEST_SKIPPED,
	                   SWERVE_TEST_ERROR,  SWERVE_TEST_XFAIL,  MISSING};
	const char *f2p[] = {"t_f2p"}, *p2p[] = {"t_p2p"};
	const char *names[] = {"t_f2p", "t_p2p", "t_other"};
	for (size_t a = 0; a < 6; a++)
		for (size_t b = 0; b < 6; b++) {
			int st[] = {all[a], all[b], SWERVE_TEST_PASSED};
			struct swerve_testlog *log = make_log(names, st, 3);
			struct swerve_grade_input in = {0};
			in.tests[SWERVE_FAIL_TO_PASS] = f2p;
			in.n_tests[SWERVE_FAIL_TO_PASS] = 1;
			in.tests[SWERVE_PASS_TO_PASS] = p2p;
			in.n_tests[SWERVE_PASS_TO_PASS] = 1;
			/* exit code consistent with what was parsed */
			int exit_code = (failing(all[a]) || failing(all[b])) ? 1 : 0;
			struct swerve_grade g;
			cr_assert_eq(swerve_grade_compute(&g, &in, log, exit_code), 0);
			cr_assert_eq(g.trusted, 1, "%s/%s: %s", swerve_test_status_name(all[a]),
			             swerve_test_status_name(all[b]), g.untrusted_reason);
			int full = passes(all[a]) && passes(all[b]);
			cr_expect_eq(
			        g.resolution, full ? SWERVE_RESOLVED_FULL : SWERVE_RESOLVED_NO,
			        "F2P %s, P2P %s -> %s",
			        all[a] == MISSING ? "missing" : swerve_test_status_name(all[a]),
			        all[b] == MISSING ? "missing" : swerve_test_status_name(all[b]),
			        swerve_resolution_name(g.resolution));
			cr_expect_eq(g.resolved, full);
			cr_expect_eq(g.n_success[SWERVE_FAIL_TO_PASS], (size_t)passes(all[a]));
			cr_expect_eq(g.n_failure[SWERVE_FAIL_TO_PASS], (size_t)!passes(all[a]));
			cr_expect_eq(g.n_success[SWERVE_PASS_TO_PASS], (size_t)passes(all[b]));
			cr_expect_eq(g.n_failure[SWERVE_PASS_TO_PASS], (size_t)!passes(all[b]));
			enum swerve_outcome o;
			cr_assert_eq(swerve_outcome_from_grade(&o, &g), 0);
			enum swerve_outcome want = full              ? SWERVE_OUTCOME_RESOLVED
			                           : !passes(all[b]) ? SWERVE_OUTCOME_REGRESSION
			                                             : SWERVE_OUTCOME_UNRESOLVED;
			cr_expect_eq(o, want, "outcome %s", swerve_outcome_name(o));
			swerve_grade_dispose(&g);
			swerve_testlog_free(log);
		}
}

Test(grade, partial_needs_some_f2p_and_every_p2p)
{
	const char *f2p[] = {"a", "b", "c", "d"}, *p2p[] = {"p", "q"};
	const char *names[] = {"a", "b", "c", "d", "p", "q"};
	int st[] = {SWERVE_TEST_PASSED, SWERVE_TEST_XFAIL, SWERVE_TEST_FAILED, MISSING,
	            SWERVE_TEST_PASSED, SWERVE_TEST_PASSED};
	struct swerve_testlog *log = make_log(names, st, 6);
	struct swerve_grade_input in = {0};
	in.tests[SWERVE_FAIL_TO_PASS] = f2p;
	in.n_tests[SWERVE_FAIL_TO_PASS] = 4;
	in.tests[SWERVE_PASS_TO_PASS] = p2p;
	in.n_tests[SWERVE_PASS_TO_PASS] = 2;
	struct swerve_grade g;
	cr_assert_eq(swerve_grade_compute(&g, &in, log, 1), 0);
	cr_assert(g.trusted);
	cr_expect_eq(g.resolution, SWERVE_RESOLVED_PARTIAL);
	cr_expect_eq(g.resolved, 0);
	cr_expect_float_eq(g.fraction[SWERVE_FAIL_TO_PASS], 0.5, 1e-12);
	cr_expect_str_eq(g.success[SWERVE_FAIL_TO_PASS][0], "a");
	cr_expect_str_eq(g.success[SWERVE_FAIL_TO_PASS][1], "b");
	cr_expect_str_eq(g.failure[SWERVE_FAIL_TO_PASS][0], "c");
	cr_expect_str_eq(g.failure[SWERVE_FAIL_TO_PASS][1], "d");
	enum swerve_outcome o;
	cr_assert_eq(swerve_outcome_from_grade(&o, &g), 0);
	cr_expect_eq(o, SWERVE_OUTCOME_UNRESOLVED);
	swerve_grade_dispose(&g);
	swerve_testlog_free(log);

	/* the same with one PASS_TO_PASS broken: NO, a regression */
	st[5] = SWERVE_TEST_FAILED;
	log = make_log(names, st, 6);
	cr_assert_eq(swerve_grade_compute(&g, &in, log, 1), 0);
	cr_expect_eq(g.resolution, SWERVE_RESOLVED_NO);
	cr_assert_eq(swerve_outcome_from_grade(&o, &g), 0);
	cr_expect_eq(o, SWERVE_OUTCOME_REGRESSION);
	swerve_grade_dispose(&g);
	swerve_testlog_free(log);
}

Test(grade, to_fail_categories_are_reported_not_graded)
{
	const char *f2p[] = {"a"}, *f2f[] = {"x"}, *p2f[] = {"y"};
	const char *names[] = {"a", "x", "y"};
	int st[] = {SWERVE_TEST_PASSED, SWERVE_TEST_FAILED, SWERVE_TEST_PASSED};
	struct swerve_testlog *log = make_log(names, st, 3);
	struct swerve_grade_input in = {0};
	in.tests[SWERVE_FAIL_TO_PASS] = f2p;
	in.n_tests[SWERVE_FAIL_TO_PASS] = 1;
	in.tests[SWERVE_FAIL_TO_FAIL] = f2f;
	in.n_tests[SWERVE_FAIL_TO_FAIL] = 1;
	in.tests[SWERVE_PASS_TO_FAIL] = p2f;
	in.n_tests[SWERVE_PASS_TO_FAIL] = 1;
	struct swerve_grade g;
	cr_assert_eq(swerve_grade_compute(&g, &in, log, 1), 0);
	cr_expect_eq(g.resolution, SWERVE_RESOLVED_FULL);
	cr_expect_eq(g.n_failure[SWERVE_FAIL_TO_FAIL], 1);
	cr_expect_eq(g.n_success[SWERVE_PASS_TO_FAIL], 1);
	cr_expect_str_eq(swerve_test_category_name(SWERVE_PASS_TO_FAIL), "PASS_TO_FAIL");
	swerve_grade_dispose(&g);
	swerve_testlog_free(log);
}

Test(grade, no_test_ran_is_untrusted_and_has_no_outcome)
{
	struct swerve_testlog *log = make_log(NULL, NULL, 0);
	const char *f2p[] = {"a"};
	struct swerve_grade_input in = {0};
	in.tests[SWERVE_FAIL_TO_PASS] = f2p;
	in.n_tests[SWERVE_FAIL_TO_PASS] = 1;
	struct swerve_grade g;
	cr_assert_eq(swerve_grade_compute(&g, &in, log, 2), 0);
	cr_expect_eq(g.trusted, 0);
	cr_expect_eq(g.resolved, 0);
	cr_expect_not_null(strstr(g.untrusted_reason, "no test ran"), "%s", g.untrusted_reason);
	enum swerve_outcome o;
	cr_expect_eq(swerve_outcome_from_grade(&o, &g), SWERVE_EINVAL);
	cr_expect_not_null(strstr(swerve_error_last(), "untrusted"));
	swerve_grade_dispose(&g);
	swerve_testlog_free(log);
}

Test(grade, exit_code_contradicting_statuses_is_untrusted)
{
	const char *names[] = {"a", "b"};
	const char *f2p[] = {"a"};
	struct swerve_grade_input in = {0};
	in.tests[SWERVE_FAIL_TO_PASS] = f2p;
	in.n_tests[SWERVE_FAIL_TO_PASS] = 1;
	struct swerve_grade g;

	/* all passed, but the runner exited 1 (a crash after the summary) */
	int ok[] = {SWERVE_TEST_PASSED, SWERVE_TEST_SKIPPED};
	struct swerve_testlog *log = make_log(names, ok, 2);
	cr_assert_eq(swerve_grade_compute(&g, &in, log, 1), 0);
	cr_expect_eq(g.trusted, 0);
	cr_expect_eq(g.resolved, 0, "an untrusted run is never resolved");
	cr_expect_not_null(strstr(g.untrusted_reason, "exit code 1"), "%s", g.untrusted_reason);
	swerve_grade_dispose(&g);
	/* unknown exit code: no check */
	cr_assert_eq(swerve_grade_compute(&g, &in, log, SWERVE_EXIT_CODE_UNKNOWN), 0);
	cr_expect_eq(g.trusted, 1);
	cr_expect_eq(g.resolved, 1);
	swerve_grade_dispose(&g);
	swerve_testlog_free(log);

	/* a failure parsed, but exit 0 (a runner told to ignore failures) */
	int bad[] = {SWERVE_TEST_PASSED, SWERVE_TEST_ERROR};
	log = make_log(names, bad, 2);
	cr_assert_eq(swerve_grade_compute(&g, &in, log, 0), 0);
	cr_expect_eq(g.trusted, 0);
	cr_expect_not_null(strstr(g.untrusted_reason, "exit code 0"), "%s", g.untrusted_reason);
	swerve_grade_dispose(&g);
	cr_assert_eq(swerve_grade_compute(&g, &in, log, 1), 0);
	cr_expect_eq(g.trusted, 1);
	cr_expect_eq(g.resolved, 1, "a failing test outside the lists does not matter");
	swerve_grade_dispose(&g);
	swerve_testlog_free(log);
}

Test(grade, golden_pytest_log_end_to_end)
{
	const char *log_text = "PASSED tests/a.py::test_new[x y]\n"
	                       "FAILED tests/a.py::test_old - assert 0\n"
	                       "===== 1 failed, 1 passed in 0.1s =====\n";
	struct swerve_testlog *log;
	cr_assert_eq(swerve_log_parse(&log, "pytest", log_text, strlen(log_text), 0), 0);
	const char *f2p[] = {"tests/a.py::test_new[x y]"}, *p2p[] = {"tests/a.py::test_old"};
	struct swerve_grade_input in = {0};
	in.tests[SWERVE_FAIL_TO_PASS] = f2p;
	in.n_tests[SWERVE_FAIL_TO_PASS] = 1;
	in.tests[SWERVE_PASS_TO_PASS] = p2p;
	in.n_tests[SWERVE_PASS_TO_PASS] = 1;
	struct swerve_grade g;
	cr_assert_eq(swerve_grade_compute(&g, &in, log, 1), 0);
	cr_expect_eq(g.resolution, SWERVE_RESOLVED_NO);
	enum swerve_outcome o;
	cr_assert_eq(swerve_outcome_from_grade(&o, &g), 0);
	cr_expect_eq(o, SWERVE_OUTCOME_REGRESSION);
	swerve_grade_dispose(&g);
	swerve_testlog_free(log);
}

/* ---- rewards ------------------------------------------------------------------ */

Test(reward, default_is_binary)
{
	struct swerve_reward_spec s;
	swerve_reward_spec_default(&s);
	cr_expect_eq(swerve_reward(&s, SWERVE_OUTCOME_RESOLVED, 1.0), 1.0);
	for (int o = SWERVE_OUTCOME_UNRESOLVED; o < SWERVE_OUTCOME_COUNT; o++)
		cr_expect_eq(swerve_reward(&s, (enum swerve_outcome)o, 0.75), 0.0, "%s",
		             swerve_outcome_name((enum swerve_outcome)o));
}

Test(reward, spec_values_and_partial_credit)
{
	struct swerve_reward_spec s;
	swerve_reward_spec_default(&s);
	cr_assert_eq(swerve_reward_spec_set(&s, "unresolved", "-0.5"), 0);
	cr_assert_eq(swerve_reward_spec_set(&s, "regression", "-1"), 0);
	cr_assert_eq(swerve_reward_spec_set_arg(&s, "timeout=-0.25"), 0);
	cr_assert_eq(swerve_reward_spec_set_arg(&s, "partial_credit=true"), 0);
	cr_expect_eq(swerve_reward(&s, SWERVE_OUTCOME_TIMEOUT, 0), -0.25);
	cr_expect_eq(swerve_reward(&s, SWERVE_OUTCOME_REGRESSION, 0.5), -1.0);
	/* u + (r - u) f = -0.5 + 1.5 * 0.5 */
	cr_expect_float_eq(swerve_reward(&s, SWERVE_OUTCOME_UNRESOLVED, 0.5), 0.25, 1e-12);
	cr_expect_float_eq(swerve_reward(&s, SWERVE_OUTCOME_UNRESOLVED, 7.0), 1.0, 1e-12);
	cr_expect_float_eq(swerve_reward(&s, SWERVE_OUTCOME_UNRESOLVED, NAN), -0.5, 1e-12);
	cr_expect_eq(swerve_reward(&s, SWERVE_OUTCOME_RESOLVED, 0.0), 1.0);
}

Test(reward, bad_keys_and_values_are_named_and_leave_spec_alone)
{
	struct swerve_reward_spec s;
	swerve_reward_spec_default(&s);
	cr_expect_eq(swerve_reward_spec_set(&s, "resolvd", "1"), SWERVE_EINVAL);
	cr_expect_not_null(strstr(swerve_error_last(), "'resolvd'"));
	cr_expect_eq(swerve_reward_spec_set(&s, "resolved", "lots"), SWERVE_EINVAL);
	cr_expect_not_null(strstr(swerve_error_last(), "resolved 'lots'"));
	cr_expect_eq(swerve_reward_spec_set(&s, "resolved", "inf"), SWERVE_EINVAL);
	cr_expect_eq(swerve_reward_spec_set(&s, "partial_credit", "maybe"), SWERVE_EINVAL);
	cr_expect_eq(swerve_reward_spec_set_arg(&s, "resolved"), SWERVE_EINVAL);
	cr_expect_eq(swerve_reward_spec_set_arg(&s, "=1"), SWERVE_EINVAL);
	cr_expect_eq(s.value[SWERVE_OUTCOME_RESOLVED], 1.0);
	cr_expect_eq(s.partial_credit, 0);
}

Test(reward, outcome_names_round_trip)
{
	for (int o = 0; o < SWERVE_OUTCOME_COUNT; o++) {
		enum swerve_outcome back;
		cr_assert_eq(
		        swerve_outcome_parse(&back, swerve_outcome_name((enum swerve_outcome)o)),
		        0);
		cr_expect_eq((int)back, o);
	}
	cr_expect_str_eq(swerve_outcome_name(SWERVE_OUTCOME_SANDBOX_VIOLATION),
	                 "sandbox_violation");
}
