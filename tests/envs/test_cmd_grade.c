/* test_cmd_grade.c - `swerve grade`: statuses, grading a golden log against a
 * task, JSON report, reward flags, untrusted runs, usage and input errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/support.h"

#define RA_LOG "tests/rewards/logs/pytest_ra.log"

static char *dir;
static char tasks[4096];

static void setup(void)
{
	dir = ts_mkdtemp();
	snprintf(tasks, sizeof(tasks), "%s/tasks.jsonl", dir);
	const char *text =
	        "{\"instance_id\": \"calc-1\", \"repo\": \"o/calc\", \"base_commit\": \"c\", "
	        "\"test_cmd\": \"pytest -rA\", \"log_parser\": \"pytest\", "
	        "\"FAIL_TO_PASS\": \"[\\\"tests/test_calc.py::test_add\\\", "
	        "\\\"tests/test_calc.py::test_param[x y-[z]]\\\"]\", "
	        "\"PASS_TO_PASS\": [\"tests/test_calc.py::TestGroup::test_in_class\"]}\n"
	        "{\"instance_id\": \"calc-2\", \"repo\": \"o/calc\", \"base_commit\": \"c\", "
	        "\"test_cmd\": \"pytest -rA\", "
	        "\"FAIL_TO_PASS\": [\"tests/test_calc.py::test_add\", "
	        "\"tests/test_calc.py::test_sub_fails\"], "
	        "\"PASS_TO_PASS\": [\"tests/test_calc.py::test_xfail\"]}\n";
	cr_assert_eq(ts_write_file(tasks, text, strlen(text)), 0);
}

static void teardown(void)
{
	ts_rmtree(dir);
	free(dir);
}

TestSuite(cmd_grade, .init = setup, .fini = teardown);

Test(cmd_grade, lists_statuses_without_a_task)
{
	char *out, *err;
	int rc = ts_sh(&out, &err, "%s grade --log %s", ts_swerve_bin(), RA_LOG);
	cr_assert_eq(rc, 0, "%s", err);
	cr_expect_not_null(strstr(out, "PASSED\ttests/test_calc.py::test_param[x y-[z]]\n"), "%s",
	                   out);
	cr_expect_not_null(strstr(out, "FAILED\ttests/test_calc.py::test_sub_fails\n"));
	cr_expect_not_null(strstr(err, "10 tests (parser pytest)"), "%s", err);
	free(out);
	free(err);
}

Test(cmd_grade, resolved_task_exits_0_with_reward)
{
	char *out, *err;
	int rc = ts_sh(&out, &err, "%s grade --log %s --tasks %s --instance calc-1 --exit-code 1",
	               ts_swerve_bin(), RA_LOG, tasks);
	cr_assert_eq(rc, 0, "%s%s", out, err);
	cr_expect_not_null(strstr(out, "calc-1: RESOLVED_FULL resolved reward 1 (parser pytest"),
	                   "%s", out);
	cr_expect_not_null(strstr(out, "FAIL_TO_PASS 2/2, PASS_TO_PASS 1/1"), "%s", out);
	free(out);
	free(err);
}

Test(cmd_grade, partial_with_partial_credit_and_json)
{
	char *out, *err;
	int rc = ts_sh(&out, &err,
	               "%s grade --log %s --tasks %s --instance calc-2 --exit-code 1 "
	               "--reward partial_credit=true --reward unresolved=-1",
	               ts_swerve_bin(), RA_LOG, tasks);
	cr_assert_eq(rc, 1, "%s%s", out, err);
	/* -1 + (1 - -1) * 0.5 = 0 */
	cr_expect_not_null(strstr(out, "calc-2: RESOLVED_PARTIAL unresolved reward 0 "), "%s", out);
	cr_expect_not_null(strstr(out, "FAIL_TO_PASS failed: tests/test_calc.py::test_sub_fails"),
	                   "%s", out);
	free(out);
	free(err);
	rc = ts_sh(&out, &err, "%s grade --log %s --tasks %s --instance calc-2 --json",
	           ts_swerve_bin(), RA_LOG, tasks);
	cr_assert_eq(rc, 1, "%s", err);
	cr_expect_not_null(strstr(out, "\"calc-2\": {"), "%s", out);
	cr_expect_not_null(strstr(out, "\"patch_successfully_applied\": true"), "%s", out);
	cr_expect_not_null(strstr(out, "\"tests_status\""), "%s", out);
	cr_expect_not_null(strstr(out, "\"outcome\": \"unresolved\""), "%s", out);
	free(out);
	free(err);
}

Test(cmd_grade, contradicting_exit_code_is_untrusted)
{
	char *out, *err;
	int rc = ts_sh(&out, &err, "%s grade --log %s --tasks %s --instance calc-1 --exit-code 0",
	               ts_swerve_bin(), RA_LOG, tasks);
	cr_assert_eq(rc, 1, "%s%s", out, err);
	cr_expect_not_null(
	        strstr(out, "calc-1: untrusted: exit code 0 but 4 FAILED or ERROR tests"), "%s",
	        out);
	free(out);
	free(err);
}

Test(cmd_grade, errors_are_one_line_with_exit_codes)
{
	char *out, *err;
	cr_expect_eq(ts_sh(&out, &err, "%s grade", ts_swerve_bin()), 2);
	cr_expect_not_null(strstr(err, "swerve grade: --log is required"), "%s", err);
	free(out);
	free(err);
	cr_expect_eq(ts_sh(&out, &err, "%s grade --log %s --parser mocha", ts_swerve_bin(), RA_LOG),
	             2);
	cr_expect_not_null(strstr(err, "'mocha'"), "%s", err);
	free(out);
	free(err);
	cr_expect_eq(ts_sh(&out, &err, "%s grade --log /nonexistent.log", ts_swerve_bin()), 3);
	cr_expect_not_null(strstr(err, "swerve grade: /nonexistent.log: "), "%s", err);
	free(out);
	free(err);
	cr_expect_eq(ts_sh(&out, &err, "%s grade --log %s --tasks %s --instance nope",
	                   ts_swerve_bin(), RA_LOG, tasks),
	             3);
	cr_expect_not_null(strstr(err, "instance nope: not found"), "%s", err);
	free(out);
	free(err);
	cr_expect_eq(ts_sh(&out, &err, "printf 'hello\\n' | %s grade --log -", ts_swerve_bin()), 3);
	cr_expect_not_null(strstr(err, "no parser recognises"), "%s", err);
	free(out);
	free(err);
}
