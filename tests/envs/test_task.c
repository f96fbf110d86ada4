/* test_task.c - task, prediction and reward spec loading (envs/task.h):
 * every accepted shape, field validation with file:line:field messages,
 * duplicates and unknown ids, and SWE-bench's test command derivation. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envs/task.h"
#include "tests/support/support.h"

#define TASK(id, extra)                                                                            \
	"{\"instance_id\": \"" id "\", \"repo\": \"o/r\", \"base_commit\": \"abc\", "              \
	"\"test_patch\": \"diff --git a/tests/test_x.py b/tests/test_x.py\\n\", "                  \
	"\"FAIL_TO_PASS\": \"[\\\"tests/test_x.py::test_a\\\"]\", \"PASS_TO_PASS\": []" extra "}"

static struct swerve_task_set *load(const char *text)
{
	struct swerve_task_set *set = NULL;
	int rc = swerve_tasks_load_buffer(&set, "tasks.jsonl", text, strlen(text));
	cr_assert_eq(rc, 0, "%s", swerve_error_last());
	return set;
}

static int has_problem(char **problems, size_t n, const char *needle)
{
	for (size_t i = 0; i < n; i++)
		if (strstr(problems[i], needle))
			return 1;
	return 0;
}

static void dump_problems(char **problems, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "problem: %s\n", problems[i]);
}

Test(task, jsonl_with_encoded_and_real_lists)
{
	const char *text = TASK("a__b-1", "") "\n\n" TASK(
	        "a__b-2",
	        ", \"PASS_TO_PASS\": [\"tests/test_x.py::test_b\"], \"version\": 3.0") "\n";
	struct swerve_task_set *set = load(text);
	dump_problems(set->problems, set->n_problems);
	cr_assert_eq(set->n, 2);
	cr_expect_eq(set->n_problems, 0);
	const struct swerve_task *t = &set->tasks[0];
	cr_expect_str_eq(t->instance_id, "a__b-1");
	cr_expect_eq(t->line, 1);
	cr_assert_eq(t->tests[SWERVE_FAIL_TO_PASS].n, 1);
	cr_expect_str_eq(t->tests[SWERVE_FAIL_TO_PASS].items[0], "tests/test_x.py::test_a");
	cr_expect_eq(t->tests[SWERVE_PASS_TO_PASS].n, 0);
	cr_expect_eq(set->tasks[1].line, 3);
	cr_expect_str_eq(set->tasks[1].tests[SWERVE_PASS_TO_PASS].items[0],
	                 "tests/test_x.py::test_b");
	cr_expect_str_eq(set->tasks[1].version, "3");
	/* derived as SWE-bench does for a Python repository */
	cr_expect_eq(t->test_cmd_derived, 1);
	cr_expect_str_eq(t->test_cmd,
	                 "pytest --no-header -rA --tb=no -p no:cacheprovider tests/test_x.py");
	cr_expect_str_eq(t->log_parser, "pytest");
	cr_expect_not_null(strstr(t->json, "\"instance_id\":\"a__b-1\""));
	struct swerve_grade_input in;
	swerve_task_grade_input(&in, t);
	cr_expect_eq(in.n_tests[SWERVE_FAIL_TO_PASS], 1);
	cr_expect_str_eq(in.tests[SWERVE_FAIL_TO_PASS][0], "tests/test_x.py::test_a");
	swerve_task_set_free(set);
}

Test(task, json_list_reports_the_line_of_a_bad_item_and_keeps_the_rest)
{
	const char *text = "[\n" TASK(
	        "ok-1",
	        "") ",\n"
	            "  {\"instance_id\": \"bad-2\", \"repo\": \"o/r\", \"base_commit\": \"c\",\n"
	            "   \"FAIL_TO_PASS\": \"[1, 2]\", \"PASS_TO_PASS\": []},\n" TASK(
	                    "ok-3",
	                    ", \"test_cmd\": \"make check\", \"log_parser\": \"tap\"") "\n]\n";
	struct swerve_task_set *set = load(text);
	cr_assert_eq(set->n, 2);
	cr_assert_eq(set->n_problems, 1);
	cr_expect_str_eq(
	        set->problems[0],
	        "tasks.jsonl:3: instance bad-2: field FAIL_TO_PASS: item 0 is a number, not "
	        "a test id");
	cr_expect_str_eq(set->tasks[1].instance_id, "ok-3");
	cr_expect_eq(set->tasks[1].line, 5);
	cr_expect_str_eq(set->tasks[1].test_cmd, "make check");
	cr_expect_eq(set->tasks[1].test_cmd_derived, 0);
	cr_expect_str_eq(set->tasks[1].log_parser, "tap");
	swerve_task_set_free(set);
}

Test(task, field_errors_name_file_line_and_field)
{
	const char *text =
	        "{\"repo\": \"o/r\", \"base_commit\": \"c\", \"FAIL_TO_PASS\": [], "
	        "\"PASS_TO_PASS\": []}\n" TASK("t2", ", \"log_parser\": \"mocha\"") "\n" TASK(
	                "t3", ", \"timeout_s\": -1") "\n" TASK("t4",
	                                                       ", \"env\": {\"ro_paths\": "
	                                                       "[\"rel\"]}") "\n"
	                                                                     "{\"instance_id\": "
	                                                                     "\"t5\", \"repo\": "
	                                                                     "\"noslash\", "
	                                                                     "\"base_commit\": "
	                                                                     "\"c\", "
	                                                                     "\"FAIL_TO_PASS\": "
	                                                                     "[], "
	                                                                     "\"PASS_TO_PASS\": "
	                                                                     "[]}\n"
	                                                                     "{\"instance_id\": "
	                                                                     "\"t6\", \"repo\": "
	                                                                     "\"o/r\", "
	                                                                     "\"base_commit\": "
	                                                                     "\"c\", "
	                                                                     "\"PASS_TO_PASS\": "
	                                                                     "[]}\n"
	                                                                     "{\"instance_id\": "
	                                                                     "\"t7\", \"repo\": "
	                                                                     "\"o/r\", "
	                                                                     "\"base_commit\": "
	                                                                     "\"c\", "
	                                                                     "\"FAIL_TO_PASS\": "
	                                                                     "\"[\", "
	                                                                     "\"PASS_TO_PASS\": "
	                                                                     "[]}\n"
	                                                                     "{\"instance_id\": "
	                                                                     "\"t8\", \"repo\": "
	                                                                     "\"o/r\", "
	                                                                     "\"base_commit\": "
	                                                                     "\"c\", "
	                                                                     "\"FAIL_TO_PASS\": "
	                                                                     "[], "
	                                                                     "\"PASS_TO_PASS\": "
	                                                                     "[], \"test_patch\": "
	                                                                     "\"diff --git "
	                                                                     "a/README.md "
	                                                                     "b/README.md\\n\"}\n"
	                                                                     "{\"instance_id\": 9, "
	                                                                     "oops\n"
	                                                                     "[1]\n";
	struct swerve_task_set *set = load(text);
	dump_problems(set->problems, set->n_problems);
	cr_expect_eq(set->n, 0);
	cr_assert_eq(set->n_problems, 10);
	cr_expect(has_problem(
	        set->problems, set->n_problems,
	        "tasks.jsonl:1: instance (no instance_id): field instance_id: missing"));
	cr_expect(has_problem(
	        set->problems, set->n_problems,
	        "tasks.jsonl:2: instance t2: field log_parser: unknown parser 'mocha'"));
	cr_expect(has_problem(set->problems, set->n_problems,
	                      "tasks.jsonl:3: instance t3: field timeout_s:"));
	cr_expect(has_problem(set->problems, set->n_problems,
	                      "tasks.jsonl:4: instance t4: field env.ro_paths: item 0"));
	cr_expect(has_problem(set->problems, set->n_problems,
	                      "tasks.jsonl:5: instance t5: field repo: 'noslash'"));
	cr_expect(has_problem(set->problems, set->n_problems,
	                      "tasks.jsonl:6: instance t6: field FAIL_TO_PASS: missing"));
	cr_expect(has_problem(
	        set->problems, set->n_problems,
	        "tasks.jsonl:7: instance t7: field FAIL_TO_PASS: a string that is not a "
	        "JSON list"));
	cr_expect(has_problem(set->problems, set->n_problems,
	                      "tasks.jsonl:8: instance t8: field test_cmd: absent, and test_patch "
	                      "touches no test file"));
	cr_expect(has_problem(set->problems, set->n_problems, "tasks.jsonl:9:"));
	cr_expect(
	        has_problem(set->problems, set->n_problems,
	                    "tasks.jsonl:10: instance (no instance_id): field (item): expected an "
	                    "object, got a list"));
	swerve_task_set_free(set);
}

Test(task, duplicates_are_reported_first_wins)
{
	const char *text = TASK("d", ", \"test_cmd\": \"first\"") "\n" TASK(
	        "d", ", \"test_cmd\": \"second\"") "\n";
	struct swerve_task_set *set = load(text);
	cr_assert_eq(set->n, 1);
	cr_expect_str_eq(set->tasks[0].test_cmd, "first");
	cr_assert_eq(set->n_problems, 1);
	cr_expect_str_eq(set->problems[0],
	                 "tasks.jsonl:2: instance d: duplicate instance_id (first "
	                 "at line 1; this one is ignored)");
	swerve_task_set_free(set);
}

Test(task, swerve_fields_setup_env_timeout)
{
	const char *text = TASK(
	        "s",
	        ", \"setup\": \"pip install -e .\", \"timeout_s\": 90.5, \"env\": {\"ro_paths\": "
	        "[\"/opt/venv\"], \"vars\": {\"PYTHONPATH\": \"src\", \"TZ\": \"UTC\"}}");
	struct swerve_task_set *set = load(text);
	cr_assert_eq(set->n, 1, "%s", set->n_problems ? set->problems[0] : "");
	const struct swerve_task *t = &set->tasks[0];
	cr_assert_eq(t->setup.n, 1);
	cr_expect_str_eq(t->setup.items[0], "pip install -e .");
	cr_expect_float_eq(t->timeout_s, 90.5, 1e-9);
	cr_assert_eq(t->env_ro_paths.n, 1);
	cr_expect_str_eq(t->env_ro_paths.items[0], "/opt/venv");
	cr_assert_eq(t->env_vars.n, 2);
	cr_expect_str_eq(t->env_vars.items[0], "PYTHONPATH=src");
	cr_expect_str_eq(t->env_vars.items[1], "TZ=UTC");
	swerve_task_set_free(set);
}

Test(task, not_json_at_all_is_einval_and_empty_is_empty)
{
	struct swerve_task_set *set = NULL;
	cr_expect_eq(swerve_tasks_load_buffer(&set, "t.txt", "hello", 5), SWERVE_EINVAL);
	cr_expect_not_null(strstr(swerve_error_last(), "t.txt:1: not a JSON list"));
	cr_assert_eq(swerve_tasks_load_buffer(&set, "t.json", " \n", 2), 0);
	cr_expect_eq(set->n, 0);
	swerve_task_set_free(set);
	cr_expect_eq(swerve_tasks_load(&set, "/nonexistent/tasks.json"), SWERVE_ENOTFOUND);
}

Test(task, truncated_list_keeps_items_before_the_break)
{
	const char *text = "[" TASK("a", "") ",\n" TASK("b", "") ",\n{\"instance_id\": \"c\", ";
	struct swerve_task_set *set = load(text);
	cr_expect_eq(set->n, 2);
	cr_assert_eq(set->n_problems, 1);
	cr_expect(has_problem(set->problems, 1, "tasks.jsonl:3:"), "%s", set->problems[0]);
	swerve_task_set_free(set);
}

Test(derive, django_sympy_go_cargo_node_and_quoting)
{
	char *cmd, *parser;
	cr_assert_eq(swerve_task_derive_test_cmd(&cmd, &parser, "django/django",
	                                         "diff --git a/tests/admin_views/tests.py "
	                                         "b/tests/admin_views/tests.py\n"
	                                         "diff --git a/tests/fixtures/data.json "
	                                         "b/tests/fixtures/data.json\n"),
	             0);
	cr_expect_str_eq(cmd,
	                 "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1 "
	                 "admin_views.tests");
	cr_expect_str_eq(parser, "django");
	free(cmd);
	free(parser);

	cr_assert_eq(swerve_task_derive_test_cmd(&cmd, &parser, "sympy/sympy",
	                                         "diff --git a/sympy/core/tests/test_basic.py "
	                                         "b/sympy/core/tests/test_basic.py\n"),
	             0);
	cr_expect_str_eq(cmd, "PYTHONWARNINGS='ignore::UserWarning,ignore::SyntaxWarning' bin/test "
	                      "-C --verbose sympy/core/tests/test_basic.py");
	cr_expect_str_eq(parser, "sympy");
	free(cmd);
	free(parser);

	cr_assert_eq(swerve_task_derive_test_cmd(&cmd, &parser, "o/g",
	                                         "diff --git a/pkg/a/x_test.go b/pkg/a/x_test.go\n"
	                                         "diff --git a/pkg/a/y_test.go b/pkg/a/y_test.go\n"
	                                         "diff --git a/z_test.go b/z_test.go\n"),
	             0);
	cr_expect_str_eq(cmd, "go test -v ./pkg/a .");
	cr_expect_str_eq(parser, "go");
	free(cmd);
	free(parser);

	cr_assert_eq(swerve_task_derive_test_cmd(&cmd, &parser, "o/rs",
	                                         "diff --git a/tests/parse.rs b/tests/parse.rs\n"),
	             0);
	cr_expect_str_eq(cmd, "cargo test --no-fail-fast --test parse");
	free(cmd);
	free(parser);
	cr_assert_eq(swerve_task_derive_test_cmd(&cmd, &parser, "o/rs",
	                                         "diff --git a/src/lib.rs b/src/lib.rs\n"),
	             0);
	cr_expect_str_eq(cmd, "cargo test --no-fail-fast");
	cr_expect_str_eq(parser, "cargo");
	free(cmd);
	free(parser);

	cr_assert_eq(swerve_task_derive_test_cmd(&cmd, &parser, "o/js",
	                                         "diff --git a/test/it's here.test.js b/test/it's "
	                                         "here.test.js\n"),
	             0);
	cr_expect_str_eq(cmd, "node --test --test-reporter=tap 'test/it'\\''s here.test.js'");
	cr_expect_str_eq(parser, "tap");
	free(cmd);
	free(parser);

	cr_expect_eq(swerve_task_derive_test_cmd(&cmd, &parser, "o/c",
	                                         "diff --git a/test/x.c b/test/x.c\n"),
	             SWERVE_EINVAL);
	cr_expect_not_null(strstr(swerve_error_last(), "set test_cmd"));
}

/* ---- predictions ----------------------------------------------------------------- */

Test(predictions, jsonl_list_and_dict_forms)
{
	const char *jsonl =
	        "{\"instance_id\": \"a\", \"model_name_or_path\": \"m\", \"model_patch\": "
	        "\"diff\"}\n"
	        "{\"instance_id\": \"b\", \"model_name_or_path\": \"m\", \"model_patch\": null}\n"
	        "{\"instance_id\": \"c\", \"model_name_or_path\": \"m\", \"model_patch\": \"\"}\n"
	        "{\"instance_id\": \"a\", \"model_patch\": \"again\"}\n"
	        "{\"instance_id\": \"d\", \"model_patch\": 5}\n";
	struct swerve_prediction_set *p = NULL;
	cr_assert_eq(swerve_predictions_load_buffer(&p, "preds.jsonl", jsonl, strlen(jsonl)), 0);
	cr_assert_eq(p->n, 3);
	cr_expect_str_eq(p->preds[0].model_patch, "diff");
	cr_expect_null(p->preds[1].model_patch);
	cr_expect_eq(p->preds[1].patch_is_none, 1);
	cr_expect_null(p->preds[2].model_patch);
	cr_expect_eq(p->preds[2].patch_is_none, 0);
	cr_assert_eq(p->n_problems, 2);
	cr_expect_str_eq(p->problems[0],
	                 "preds.jsonl:4: instance a: duplicate prediction (first at "
	                 "line 1; this one is ignored)");
	cr_expect_str_eq(p->problems[1], "preds.jsonl:5: instance d: field model_patch: expected a "
	                                 "string or null, got a number");
	swerve_prediction_set_free(p);

	const char *dict = "{\n  \"x__y-1\": {\"model_name_or_path\": \"m\", \"model_patch\": "
	                   "\"p1\"},\n  \"x__y-2\": {\"instance_id\": \"other\", \"model_patch\": "
	                   "\"p2\"}\n}\n";
	cr_assert_eq(swerve_predictions_load_buffer(&p, "preds.json", dict, strlen(dict)), 0);
	cr_assert_eq(p->n, 1);
	cr_expect_str_eq(p->preds[0].instance_id, "x__y-1");
	cr_expect_eq(p->preds[0].line, 2);
	cr_assert_eq(p->n_problems, 1);
	cr_expect(has_problem(p->problems, 1,
	                      "preds.json:3: instance other: field instance_id: "
	                      "'other' differs from its key 'x__y-2'"),
	          "%s", p->problems[0]);
	swerve_prediction_set_free(p);

	const char *list = "[{\"instance_id\": \"q\", \"model_patch\": \"p\"}]";
	cr_assert_eq(swerve_predictions_load_buffer(&p, "preds.json", list, strlen(list)), 0);
	cr_assert_eq(p->n, 1);
	cr_expect_str_eq(swerve_prediction_set_find(p, "q")->model_patch, "p");
	swerve_prediction_set_free(p);
}

Test(predictions, unknown_ids_are_dropped_and_reported)
{
	struct swerve_task_set *tasks = load(TASK("known", ""));
	const char *jsonl = "{\"instance_id\": \"known\", \"model_patch\": \"p\"}\n"
	                    "{\"instance_id\": \"stranger\", \"model_patch\": \"p\"}\n";
	struct swerve_prediction_set *p = NULL;
	cr_assert_eq(swerve_predictions_load_buffer(&p, "preds.jsonl", jsonl, strlen(jsonl)), 0);
	cr_expect_eq(swerve_predictions_check(p, tasks), 1);
	cr_assert_eq(p->n, 1);
	cr_expect_str_eq(p->preds[0].instance_id, "known");
	cr_assert_eq(p->n_problems, 1);
	cr_expect(has_problem(p->problems, 1, "instance stranger: unknown instance_id"));
	swerve_prediction_set_free(p);
	swerve_task_set_free(tasks);
}

/* ---- reward spec files ----------------------------------------------------------- */

Test(reward_spec, file_sets_values_and_rejects_unknown_keys)
{
	char *dir = ts_mkdtemp();
	char path[4096];
	snprintf(path, sizeof(path), "%s/spec.json", dir);
	const char *good = "{\"resolved\": 1, \"regression\": -1, \"timeout\": -0.5, "
	                   "\"partial_credit\": true}";
	cr_assert_eq(ts_write_file(path, good, strlen(good)), 0);
	struct swerve_reward_spec s;
	swerve_reward_spec_default(&s);
	cr_assert_eq(swerve_reward_spec_load(&s, path), 0, "%s", swerve_error_last());
	cr_expect_eq(s.value[SWERVE_OUTCOME_REGRESSION], -1.0);
	cr_expect_eq(s.value[SWERVE_OUTCOME_TIMEOUT], -0.5);
	cr_expect_eq(s.partial_credit, 1);

	const char *bad = "{\"resolved\": 2, \"resolvedd\": 1}";
	cr_assert_eq(ts_write_file(path, bad, strlen(bad)), 0);
	struct swerve_reward_spec before = s;
	cr_expect_eq(swerve_reward_spec_load(&s, path), SWERVE_EINVAL);
	cr_expect_not_null(strstr(swerve_error_last(), "spec.json"), "%s", swerve_error_last());
	cr_expect_not_null(strstr(swerve_error_last(), "'resolvedd'"), "%s", swerve_error_last());
	cr_expect_eq(memcmp(&before, &s, sizeof(s)), 0, "spec changed on failure");

	const char *typo = "{\"timeout\": \"zero\"}";
	cr_assert_eq(ts_write_file(path, typo, strlen(typo)), 0);
	cr_expect_eq(swerve_reward_spec_load(&s, path), SWERVE_EINVAL);
	cr_expect_not_null(strstr(swerve_error_last(), "timeout: expected a number"));
	ts_rmtree(dir);
	free(dir);
}

Test(task, many_instances_index_finds_all_and_catches_late_duplicates)
{
	size_t cap = 1 << 22, len = 0;
	char *text = malloc(cap);
	cr_assert_not_null(text);
	for (int i = 0; i < 5000; i++)
		len += (size_t)snprintf(text + len, cap - len,
		                        "{\"instance_id\": \"o__r-%d\", \"repo\": \"o/r\", "
		                        "\"base_commit\": \"c\", \"test_cmd\": \"t\", "
		                        "\"FAIL_TO_PASS\": [], \"PASS_TO_PASS\": []}\n",
		                        i);
	len += (size_t)snprintf(text + len, cap - len,
	                        "{\"instance_id\": \"o__r-17\", \"repo\": \"o/r\", "
	                        "\"base_commit\": \"c\", \"test_cmd\": \"t\", "
	                        "\"FAIL_TO_PASS\": [], \"PASS_TO_PASS\": []}\n");
	struct swerve_task_set *set = NULL;
	cr_assert_eq(swerve_tasks_load_buffer(&set, "big.jsonl", text, len), 0);
	cr_expect_eq(set->n, 5000);
	cr_assert_eq(set->n_problems, 1);
	cr_expect_str_eq(set->problems[0],
	                 "big.jsonl:5001: instance o__r-17: duplicate instance_id "
	                 "(first at line 18; this one is ignored)");
	char id[32];
	for (int i = 0; i < 5000; i += 7) {
		snprintf(id, sizeof(id), "o__r-%d", i);
		const struct swerve_task *t = swerve_task_set_find(set, id);
		cr_assert_not_null(t, "%s", id);
		cr_expect_str_eq(t->instance_id, id);
	}
	cr_expect_null(swerve_task_set_find(set, "o__r-5000"));
	swerve_task_set_free(set);
	free(text);
}
