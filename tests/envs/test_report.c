/* test_report.c - report.json and the run report carry exactly SWE-bench's
 * keys (checked key by key) plus swerve's under "swerve". */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envs/report.h"
#include "tests/support/support.h"

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	cr_assert_not_null(j, "bad JSON: %s: %s", e.text, text);
	return j;
}

/* The object's keys are exactly `keys` (NULL-terminated). */
static void expect_keys(json_t *obj, const char *const *keys, const char *what)
{
	size_t n = 0;
	for (; keys[n]; n++)
		cr_expect_not_null(json_object_get(obj, keys[n]), "%s: key %s missing", what,
		                   keys[n]);
	cr_expect_eq(json_object_size(obj), n, "%s: %zu keys, expected %zu", what,
	             json_object_size(obj), n);
}

static struct swerve_testlog *log_of(const char *text)
{
	struct swerve_testlog *log;
	cr_assert_eq(swerve_log_parse(&log, "pytest", text, strlen(text), 0), 0);
	return log;
}

Test(report, instance_has_swebench_keys_and_tests_status)
{
	struct swerve_testlog *log = log_of("PASSED t::a\nFAILED t::b\n=== 1 failed in 1s ===\n");
	const char *f2p[] = {"t::a"}, *p2p[] = {"t::b"};
	struct swerve_grade_input in = {0};
	in.tests[SWERVE_FAIL_TO_PASS] = f2p;
	in.n_tests[SWERVE_FAIL_TO_PASS] = 1;
	in.tests[SWERVE_PASS_TO_PASS] = p2p;
	in.n_tests[SWERVE_PASS_TO_PASS] = 1;
	struct swerve_grade g;
	cr_assert_eq(swerve_grade_compute(&g, &in, log, 1), 0);
	struct swerve_instance_report r = {
	        .instance_id = "o__r-1",
	        .patch_exists = 1,
	        .patch_applied = 1,
	        .grade = &g,
	        .has_outcome = 1,
	        .outcome = SWERVE_OUTCOME_REGRESSION,
	        .has_reward = 1,
	        .reward = 0.0,
	        .verdict = "RE",
	        .apply_method = "git_apply",
	        .log_parser = "pytest",
	        .has_exit_code = 1,
	        .exit_code = 1,
	        .t_apply_s = 0.01,
	        .t_test_s = 1.5,
	        .t_total_s = 1.6,
	};
	char *text;
	cr_assert_eq(swerve_report_instance_json(&text, &r), 0);
	json_t *root = parse(text);
	const char *top[] = {"o__r-1", NULL};
	expect_keys(root, top, "report");
	json_t *body = json_object_get(root, "o__r-1");
	const char *keys[] = {"patch_is_None",
	                      "patch_exists",
	                      "patch_successfully_applied",
	                      "resolved",
	                      "tests_status",
	                      "swerve",
	                      NULL};
	expect_keys(body, keys, "instance");
	cr_expect(json_is_false(json_object_get(body, "resolved")));
	cr_expect(json_is_true(json_object_get(body, "patch_successfully_applied")));
	json_t *ts = json_object_get(body, "tests_status");
	const char *cats[] = {"FAIL_TO_PASS", "PASS_TO_PASS", "FAIL_TO_FAIL", "PASS_TO_FAIL", NULL};
	expect_keys(ts, cats, "tests_status");
	const char *sf[] = {"success", "failure", NULL};
	expect_keys(json_object_get(ts, "FAIL_TO_PASS"), sf, "FAIL_TO_PASS");
	cr_expect_str_eq(
	        json_string_value(json_array_get(
	                json_object_get(json_object_get(ts, "FAIL_TO_PASS"), "success"), 0)),
	        "t::a");
	cr_expect_str_eq(
	        json_string_value(json_array_get(
	                json_object_get(json_object_get(ts, "PASS_TO_PASS"), "failure"), 0)),
	        "t::b");
	json_t *sw = json_object_get(body, "swerve");
	cr_expect_str_eq(json_string_value(json_object_get(sw, "outcome")), "regression");
	cr_expect_str_eq(json_string_value(json_object_get(sw, "verdict")), "RE");
	cr_expect_str_eq(json_string_value(json_object_get(sw, "apply_method")), "git_apply");
	cr_expect_str_eq(json_string_value(json_object_get(sw, "resolution")), "RESOLVED_NO");
	cr_expect_eq(json_integer_value(json_object_get(sw, "exit_code")), 1);
	cr_expect_float_eq(
	        json_real_value(json_object_get(json_object_get(sw, "timings"), "test_s")), 1.5,
	        1e-9);
	json_decref(root);
	free(text);
	swerve_grade_dispose(&g);
	swerve_testlog_free(log);
}

Test(report, empty_patch_and_untrusted_have_no_tests_status)
{
	struct swerve_instance_report r = {.instance_id = "e",
	                                   .patch_is_none = 1,
	                                   .has_outcome = 1,
	                                   .outcome = SWERVE_OUTCOME_EMPTY_PATCH,
	                                   .has_reward = 1};
	char *text;
	cr_assert_eq(swerve_report_instance_json(&text, &r), 0);
	json_t *root = parse(text);
	json_t *body = json_object_get(root, "e");
	cr_expect(json_is_true(json_object_get(body, "patch_is_None")));
	cr_expect(json_is_false(json_object_get(body, "patch_exists")));
	cr_expect_null(json_object_get(body, "tests_status"));
	json_decref(root);
	free(text);

	struct swerve_testlog *log = log_of("PASSED t::a\n");
	const char *f2p[] = {"t::a"};
	struct swerve_grade_input in = {0};
	in.tests[SWERVE_FAIL_TO_PASS] = f2p;
	in.n_tests[SWERVE_FAIL_TO_PASS] = 1;
	struct swerve_grade g;
	cr_assert_eq(swerve_grade_compute(&g, &in, log, 139), 0);
	cr_assert_eq(g.trusted, 0);
	struct swerve_instance_report u = {
	        .instance_id = "u", .patch_exists = 1, .patch_applied = 1, .grade = &g};
	cr_assert_eq(swerve_report_instance_json(&text, &u), 0);
	root = parse(text);
	body = json_object_get(root, "u");
	cr_expect(json_is_false(json_object_get(body, "resolved")), "untrusted is never resolved");
	cr_expect_null(json_object_get(body, "tests_status"));
	json_t *sw = json_object_get(body, "swerve");
	cr_expect(json_is_false(json_object_get(sw, "trusted")));
	cr_expect_not_null(strstr(json_string_value(json_object_get(sw, "untrusted_reason")),
	                          "exit code 139"));
	cr_expect(json_is_null(json_object_get(sw, "reward")));
	json_decref(root);
	free(text);
	swerve_grade_dispose(&g);
	swerve_testlog_free(log);
}

Test(report, run_report_counts_and_sorted_ids)
{
	struct swerve_run_report *rr;
	cr_assert_eq(swerve_run_report_new(&rr), 0);
	const char *tasks[] = {"t5", "t1", "t2", "t3", "t4", "t6", "t7"};
	for (int i = 0; i < 7; i++)
		cr_assert_eq(swerve_run_report_add_task(rr, tasks[i]), 0);
	/* t1 resolved, t2 unresolved, t3 empty, t4 infra error, t5 untrusted, t6 not
	 * submitted, t7 patch did not apply (an error in SWE-bench: it writes no report) */
	cr_assert_eq(swerve_run_report_add_prediction(rr, "t1", 0), 0);
	cr_assert_eq(swerve_run_report_add_prediction(rr, "t2", 0), 0);
	cr_assert_eq(swerve_run_report_add_prediction(rr, "t3", 1), 0);
	cr_assert_eq(swerve_run_report_add_prediction(rr, "t4", 0), 0);
	cr_assert_eq(swerve_run_report_add_prediction(rr, "t5", 0), 0);
	cr_assert_eq(swerve_run_report_add_prediction(rr, "t7", 0), 0);
	struct swerve_instance_report r1 = {.instance_id = "t1",
	                                    .has_outcome = 1,
	                                    .outcome = SWERVE_OUTCOME_RESOLVED,
	                                    .has_reward = 1,
	                                    .reward = 1.0};
	struct swerve_instance_report r2 = {.instance_id = "t2",
	                                    .has_outcome = 1,
	                                    .outcome = SWERVE_OUTCOME_UNRESOLVED,
	                                    .has_reward = 1,
	                                    .reward = -0.5};
	struct swerve_instance_report r4 = {.instance_id = "t4", .error = "disk full"};
	struct swerve_grade untrusted = {.trusted = 0};
	struct swerve_instance_report r5 = {.instance_id = "t5", .grade = &untrusted};
	cr_assert_eq(swerve_run_report_add_instance(rr, &r1), 0);
	cr_assert_eq(swerve_run_report_add_instance(rr, &r2), 0);
	cr_assert_eq(swerve_run_report_add_instance(rr, &r4), 0);
	cr_assert_eq(swerve_run_report_add_instance(rr, &r5), 0);
	struct swerve_instance_report r7 = {.instance_id = "t7",
	                                    .has_outcome = 1,
	                                    .outcome = SWERVE_OUTCOME_PATCH_FAILED,
	                                    .has_reward = 1,
	                                    .reward = 0.0};
	cr_assert_eq(swerve_run_report_add_instance(rr, &r7), 0);
	char *text;
	cr_assert_eq(swerve_run_report_json(&text, rr), 0);
	json_t *root = parse(text);
	const char *keys[] = {"total_instances",
	                      "submitted_instances",
	                      "completed_instances",
	                      "resolved_instances",
	                      "unresolved_instances",
	                      "empty_patch_instances",
	                      "error_instances",
	                      "completed_ids",
	                      "incomplete_ids",
	                      "empty_patch_ids",
	                      "submitted_ids",
	                      "resolved_ids",
	                      "unresolved_ids",
	                      "error_ids",
	                      "schema_version",
	                      "swerve",
	                      NULL};
	expect_keys(root, keys, "run report");
	cr_expect_eq(json_integer_value(json_object_get(root, "total_instances")), 7);
	cr_expect_eq(json_integer_value(json_object_get(root, "submitted_instances")), 6);
	cr_expect_eq(json_integer_value(json_object_get(root, "completed_instances")), 2);
	cr_expect_eq(json_integer_value(json_object_get(root, "resolved_instances")), 1);
	cr_expect_eq(json_integer_value(json_object_get(root, "unresolved_instances")), 1);
	cr_expect_eq(json_integer_value(json_object_get(root, "empty_patch_instances")), 1);
	cr_expect_eq(json_integer_value(json_object_get(root, "error_instances")), 3);
	cr_expect_eq(json_integer_value(json_object_get(root, "schema_version")), 2);
	json_t *err = json_object_get(root, "error_ids");
	cr_assert_eq(json_array_size(err), 3);
	cr_expect_str_eq(json_string_value(json_array_get(err, 0)), "t4");
	cr_expect_str_eq(json_string_value(json_array_get(err, 1)), "t5");
	cr_expect_str_eq(json_string_value(json_array_get(err, 2)), "t7");
	json_t *sub = json_object_get(root, "submitted_ids");
	cr_expect_str_eq(json_string_value(json_array_get(sub, 0)), "t1", "sorted");
	cr_expect_str_eq(
	        json_string_value(json_array_get(json_object_get(root, "incomplete_ids"), 0)),
	        "t6");
	json_t *sw = json_object_get(root, "swerve");
	cr_expect_float_eq(json_real_value(json_object_get(sw, "mean_reward")), 0.5 / 3, 1e-12);
	cr_expect_str_eq(json_string_value(json_array_get(json_object_get(sw, "untrusted_ids"), 0)),
	                 "t5");
	cr_expect_str_eq(
	        json_string_value(json_array_get(json_object_get(sw, "infra_error_ids"), 0)), "t4");
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(sw, "outcome_counts"),
	                                                "patch_failed")),
	             1);
	json_decref(root);
	free(text);

	char *dir = ts_mkdtemp();
	char path[4096];
	snprintf(path, sizeof(path), "%s/run.json", dir);
	cr_assert_eq(swerve_run_report_write(path, rr), 0);
	char *back = ts_read_file(path, NULL);
	cr_assert_not_null(back);
	root = parse(back);
	cr_expect_eq(json_integer_value(json_object_get(root, "resolved_instances")), 1);
	json_decref(root);
	free(back);
	cr_expect_eq(swerve_run_report_write("/nonexistent/dir/run.json", rr), SWERVE_EIO);
	ts_rmtree(dir);
	free(dir);
	swerve_run_report_free(rr);
}
