/* test_validate.c - the judge of `swerve validate` (envs/validate.h): which
 * observations keep a task, which reject it and with which reasons, and when
 * a task is an error rather than rejected. Pure: no sandbox. The runs
 * themselves are tested end to end in tests/e2e/test_validate.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envs/validate.h"

static struct swerve_task_set *set;

/* F2P: a, b; P2P: c */
static const char task_json[] =
        "{\"instance_id\": \"o__r-1\", \"repo\": \"o/r\", \"base_commit\": \"main\","
        " \"patch\": \"diff --git a/x b/x\\n\", \"test_patch\": \"\","
        " \"test_cmd\": \"true\", \"log_parser\": \"pytest\","
        " \"FAIL_TO_PASS\": \"[\\\"t::a\\\", \\\"t::b\\\"]\","
        " \"PASS_TO_PASS\": [\"t::c\"]}\n";

static void setup(void)
{
	cr_assert_eq(swerve_tasks_load_buffer(&set, "t.jsonl", task_json, strlen(task_json)), 0);
	cr_assert_eq(set->n, 1, "%s", set->n_problems ? set->problems[0] : "");
}

static void teardown(void)
{
	swerve_task_set_free(set);
}

TestSuite(validate_judge, .init = setup, .fini = teardown);

#define P SWERVE_TEST_PASSED
#define F SWERVE_TEST_FAILED
#define S SWERVE_TEST_SKIPPED
#define E SWERVE_TEST_ERROR
#define X SWERVE_TEST_XFAIL
#define M -1

/* the usual good observations: no patch a,b fail, c passes; gold all pass */
static const signed char bad[3] = {F, F, P}, good[3] = {P, P, P};

static struct swerve_validate_obs graded(int gold, int run, const signed char *tests)
{
	return (struct swerve_validate_obs){gold, run, SWERVE_EPISODE_GRADED, "", tests};
}

static int has_reason(const struct swerve_validate_task *v, const char *text)
{
	for (size_t i = 0; i < v->n_reasons; i++)
		if (strstr(v->reasons[i], text))
			return 1;
	return 0;
}

static char *all_reasons(const struct swerve_validate_task *v)
{
	static char buf[8192];
	buf[0] = '\0';
	for (size_t i = 0; i < v->n_reasons; i++)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "[%s] ", v->reasons[i]);
	return buf;
}

Test(validate_judge, sound_task_is_kept_in_any_order)
{
	struct swerve_validate_obs o[] = {graded(1, 2, good), graded(0, 1, bad), graded(1, 1, good),
	                                  graded(0, 2, bad)};
	struct swerve_validate_task v;
	cr_assert_eq(swerve_validate_judge(&v, &set->tasks[0], o, 4), 0);
	cr_assert_eq(v.status, SWERVE_VALIDATE_KEPT, "%s", all_reasons(&v));
	cr_assert_eq(v.n_reasons, 0);
	swerve_validate_task_dispose(&v);
}

Test(validate_judge, other_failing_statuses_and_xfail)
{
	/* without the patch a F2P test may be ERROR, SKIPPED or missing; XFAIL passes */
	static const signed char nb[3] = {E, M, X}, gb[3] = {X, P, P}, nb2[3] = {S, F, P};
	struct swerve_validate_obs o[] = {graded(0, 1, nb), graded(1, 1, gb), graded(0, 2, nb2),
	                                  graded(1, 2, gb)};
	struct swerve_validate_task v;
	cr_assert_eq(swerve_validate_judge(&v, &set->tasks[0], o, 4), 0);
	cr_assert_eq(v.status, SWERVE_VALIDATE_KEPT, "%s", all_reasons(&v));
	swerve_validate_task_dispose(&v);
}

Test(validate_judge, f2p_passing_without_the_patch)
{
	static const signed char nb[3] = {F, P, P};
	struct swerve_validate_obs o[] = {graded(0, 1, nb), graded(1, 1, good), graded(0, 2, nb),
	                                  graded(1, 2, good)};
	struct swerve_validate_task v;
	cr_assert_eq(swerve_validate_judge(&v, &set->tasks[0], o, 4), 0);
	cr_assert_eq(v.status, SWERVE_VALIDATE_REJECTED);
	cr_assert_eq(v.n_reasons, 1, "%s", all_reasons(&v));
	cr_assert_str_eq(v.reasons[0], "FAIL_TO_PASS t::b passes without the patch");
	swerve_validate_task_dispose(&v);
}

Test(validate_judge, gold_not_fixing_and_p2p_regressions)
{
	static const signed char gb[3] = {P, F, E}, nb[3] = {F, F, M};
	struct swerve_validate_obs o[] = {graded(0, 1, nb), graded(1, 1, gb)};
	struct swerve_validate_task v;
	cr_assert_eq(swerve_validate_judge(&v, &set->tasks[0], o, 2), 0);
	cr_assert_eq(v.status, SWERVE_VALIDATE_REJECTED);
	cr_assert(has_reason(&v, "FAIL_TO_PASS t::b does not pass with the gold patch (FAILED)"),
	          "%s", all_reasons(&v));
	cr_assert(has_reason(&v, "PASS_TO_PASS t::c fails with the gold patch (ERROR)"), "%s",
	          all_reasons(&v));
	cr_assert(has_reason(&v, "PASS_TO_PASS t::c is not in the test log without the patch"),
	          "%s", all_reasons(&v));
	cr_assert_eq(v.n_reasons, 3, "%s", all_reasons(&v));
	swerve_validate_task_dispose(&v);
}

Test(validate_judge, flaky_tests_name_the_runs)
{
	static const signed char g2[3] = {P, P, F};
	struct swerve_validate_obs o[] = {graded(0, 1, bad),  graded(1, 1, good), graded(0, 2, bad),
	                                  graded(1, 2, good), graded(0, 3, bad),  graded(1, 3, g2)};
	struct swerve_validate_task v;
	cr_assert_eq(swerve_validate_judge(&v, &set->tasks[0], o, 6), 0);
	cr_assert_eq(v.status, SWERVE_VALIDATE_REJECTED);
	cr_assert_eq(v.n_reasons, 1, "%s", all_reasons(&v));
	cr_assert_str_eq(v.reasons[0],
	                 "flaky: t::c PASSED in run 1, FAILED in run 3 (with the gold patch)");
	swerve_validate_task_dispose(&v);
}

Test(validate_judge, gold_patch_not_applying_said_once)
{
	struct swerve_validate_obs o[] = {
	        graded(0, 1, bad),
	        {1, 1, SWERVE_EPISODE_PATCH_FAILED, "patch did not apply: x: hunk 1 failed", NULL},
	        graded(0, 2, bad),
	        {1, 2, SWERVE_EPISODE_PATCH_FAILED, "patch did not apply: x: hunk 1 failed", NULL}};
	struct swerve_validate_task v;
	cr_assert_eq(swerve_validate_judge(&v, &set->tasks[0], o, 4), 0);
	cr_assert_eq(v.status, SWERVE_VALIDATE_REJECTED);
	cr_assert_eq(v.n_reasons, 1, "%s", all_reasons(&v));
	cr_assert_str_eq(v.reasons[0], "gold patch does not apply: x: hunk 1 failed");
	swerve_validate_task_dispose(&v);
}

Test(validate_judge, timeouts_task_errors_and_violations)
{
	struct swerve_validate_obs o[] = {
	        {0, 1, SWERVE_EPISODE_TASK_ERROR, "the task's test_patch does not apply: y", NULL},
	        {1, 1, SWERVE_EPISODE_TIMEOUT, "", NULL},
	        graded(1, 2, good),
	        {0, 2, SWERVE_EPISODE_VIOLATION, "syscall kexec_load", NULL}};
	struct swerve_validate_task v;
	cr_assert_eq(swerve_validate_judge(&v, &set->tasks[0], o, 4), 0);
	cr_assert_eq(v.status, SWERVE_VALIDATE_REJECTED);
	cr_assert(has_reason(&v, "task error without the patch: the task's test_patch does not "
	                         "apply: y"),
	          "%s", all_reasons(&v));
	cr_assert(has_reason(&v, "tests time out with the gold patch (1 of 2 runs)"), "%s",
	          all_reasons(&v));
	cr_assert(has_reason(&v, "sandbox violation without the patch (1 of 2 runs): syscall "
	                         "kexec_load"),
	          "%s", all_reasons(&v));
	swerve_validate_task_dispose(&v);
}

Test(validate_judge, infrastructure_errors_are_not_rejections)
{
	struct swerve_validate_obs o[] = {
	        graded(0, 1, bad),
	        graded(1, 1, good),
	        {0, 2, SWERVE_EPISODE_INFRA_ERROR, "sandbox: clone: ENOMEM", NULL},
	        graded(1, 2, good)};
	struct swerve_validate_task v;
	cr_assert_eq(swerve_validate_judge(&v, &set->tasks[0], o, 4), 0);
	cr_assert_eq(v.status, SWERVE_VALIDATE_ERROR, "%s", all_reasons(&v));
	cr_assert_eq(v.n_reasons, 1);
	cr_assert_str_eq(v.reasons[0], "infrastructure error without the patch (1 of 2 runs): "
	                               "sandbox: clone: ENOMEM");
	swerve_validate_task_dispose(&v);

	/* but a task that also showed a real problem is rejected */
	static const signed char nb[3] = {P, F, P};
	o[0] = graded(0, 1, nb);
	cr_assert_eq(swerve_validate_judge(&v, &set->tasks[0], o, 4), 0);
	cr_assert_eq(v.status, SWERVE_VALIDATE_REJECTED, "%s", all_reasons(&v));
	cr_assert(has_reason(&v, "FAIL_TO_PASS t::a passes without the patch"));
	cr_assert(has_reason(&v, "infrastructure error"));
	swerve_validate_task_dispose(&v);
}

Test(validate_judge, no_gold_patch_or_no_f2p)
{
	static const char j[] = "{\"instance_id\": \"o__r-2\", \"repo\": \"o/r\", \"base_commit\": "
	                        "\"main\", \"patch\": \"\", \"test_cmd\": \"true\","
	                        " \"FAIL_TO_PASS\": [], \"PASS_TO_PASS\": []}";
	struct swerve_task_set *s2;
	struct swerve_validate_task v;
	cr_assert_eq(swerve_tasks_load_buffer(&s2, "t2.json", j, strlen(j)), 0);
	cr_assert_eq(s2->n, 1, "%s", s2->n_problems ? s2->problems[0] : "");
	cr_assert_eq(swerve_validate_judge(&v, &s2->tasks[0], NULL, 0), 0);
	cr_assert_eq(v.status, SWERVE_VALIDATE_REJECTED);
	cr_assert(has_reason(&v, "the task has no gold patch"), "%s", all_reasons(&v));
	cr_assert(has_reason(&v, "FAIL_TO_PASS is empty"), "%s", all_reasons(&v));
	swerve_validate_task_dispose(&v);
	swerve_task_set_free(s2);
}

Test(validate_judge, reasons_are_capped)
{
	/* 30 PASS_TO_PASS tests failing everywhere: 20 reasons, then one summary line */
	char j[4096];
	int k = snprintf(j, sizeof(j),
	                 "{\"instance_id\": \"o__r-3\", \"repo\": \"o/r\", \"base_commit\": \"m\","
	                 " \"patch\": \"p\", \"test_cmd\": \"true\", \"FAIL_TO_PASS\": [\"f\"],"
	                 " \"PASS_TO_PASS\": [");
	for (int i = 0; i < 30; i++)
		k += snprintf(j + k, sizeof(j) - (size_t)k, "%s\"p%d\"", i ? ", " : "", i);
	snprintf(j + k, sizeof(j) - (size_t)k, "]}");
	struct swerve_task_set *s3;
	cr_assert_eq(swerve_tasks_load_buffer(&s3, "t3.json", j, strlen(j)), 0);
	cr_assert_eq(s3->n, 1);
	signed char nb[31], gb[31];
	nb[0] = F;
	gb[0] = P;
	for (int i = 1; i < 31; i++)
		nb[i] = gb[i] = F;
	struct swerve_validate_obs o[] = {graded(0, 1, nb), graded(1, 1, gb)};
	struct swerve_validate_task v;
	cr_assert_eq(swerve_validate_judge(&v, &s3->tasks[0], o, 2), 0);
	cr_assert_eq(v.status, SWERVE_VALIDATE_REJECTED);
	cr_assert_eq(v.n_reasons, SWERVE_VALIDATE_MAX_REASONS + 1);
	cr_assert_str_eq(v.reasons[SWERVE_VALIDATE_MAX_REASONS], "... and 40 more");
	swerve_validate_task_dispose(&v);
	swerve_task_set_free(s3);
}

Test(validate_judge, write_files)
{
	static const signed char nb[3] = {F, P, P};
	struct swerve_validate_obs o[] = {graded(0, 1, nb), graded(1, 1, good)};
	struct swerve_validate_result r = {0};
	struct swerve_validate_task t;
	char dir[] = "/tmp/swerve-validate-XXXXXX", kp[128], rp[128];
	cr_assert(mkdtemp(dir));
	snprintf(kp, sizeof(kp), "%s/kept.jsonl", dir);
	snprintf(rp, sizeof(rp), "%s/rejected.jsonl", dir);
	cr_assert_eq(swerve_validate_judge(&t, &set->tasks[0], o, 2), 0);
	r.tasks = &t;
	r.n = 1;
	cr_assert_eq(swerve_validate_write(&r, set, kp, rp), 0);
	FILE *f = fopen(kp, "r");
	cr_assert(f);
	cr_assert_eq(fgetc(f), EOF, "nothing kept");
	fclose(f);
	char line[1024] = "";
	f = fopen(rp, "r");
	cr_assert(f && fgets(line, sizeof(line), f));
	fclose(f);
	cr_assert_str_eq(line,
	                 "{\"instance_id\":\"o__r-1\",\"repo\":\"o/r\",\"status\":\"rejected\","
	                 "\"reasons\":[\"FAIL_TO_PASS t::b passes without the patch\"]}\n");
	/* kept: the task's own JSON line */
	o[0] = graded(0, 1, bad);
	swerve_validate_task_dispose(&t);
	cr_assert_eq(swerve_validate_judge(&t, &set->tasks[0], o, 2), 0);
	cr_assert_eq(swerve_validate_write(&r, set, kp, rp), 0);
	f = fopen(kp, "r");
	cr_assert(f && fgets(line, sizeof(line), f));
	fclose(f);
	cr_assert_eq(strncmp(line, set->tasks[0].json, strlen(set->tasks[0].json)), 0, "%s", line);
	swerve_validate_task_dispose(&t);
	unlink(kp);
	unlink(rp);
	rmdir(dir);
}
