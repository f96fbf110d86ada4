/* test_cmd_db.c - `swerve db init | stats | export` on a database the
 * library filled: output shape, SWE-bench report counts, exit codes. */
#include <jansson.h>

#include "envs/cli.h"
#include "fixture.h"

static char *dir, *path;
static char resolved_id[64];

static void setup(void)
{
	dir = ts_mkdtemp();
	path = fx_path(dir, "swerve.db");
}

static void teardown(void)
{
	ts_rmtree(dir);
	free(dir);
	free(path);
}

TestSuite(cmd_db, .init = setup, .fini = teardown);

static int swerve(char **out, char **err, const char *args)
{
	return ts_sh(out, err, "%s db %s", ts_swerve_bin(), args);
}

/* Run "eval": 5 instances, one rollout each: resolved, unresolved, empty
 * patch, infra_error, still pending. */
static void fill_eval(void)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "eval", 1, 10);
	fx_fill(db, run, 5, 1);
	struct swerve_db_claim *c;
	size_t n;
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 4, 60000), 0);
	cr_assert_eq(n, 4);
	struct swerve_db_result r = fx_result(1.0);
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, 1, "w", &r), 0);
	snprintf(resolved_id, sizeof(resolved_id), "%s", c[0].instance_id);
	r = fx_result(0.0);
	cr_assert_eq(swerve_db_complete(db, c[1].rollout, 1, "w", &r), 0);
	r = fx_result(0.0);
	r.empty_patch = 1;
	r.patch_applied = 0;
	cr_assert_eq(swerve_db_complete(db, c[2].rollout, 1, "w", &r), 0);
	cr_assert_eq(swerve_db_fail(NULL, db, c[3].rollout, 1, "no space left"), 0);
	swerve_db_claims_free(c, n);
	swerve_db_close(db);
}

Test(cmd_db, init_creates_and_reports_version)
{
	char *out = NULL, args[600];
	snprintf(args, sizeof(args), "init '%s'", path);
	cr_assert_eq(swerve(&out, NULL, args), 0);
	cr_assert(strstr(out, "schema version 1"), "%s", out);
	free(out);
	cr_assert_eq(fx_sql_int(path, "PRAGMA user_version"), SWERVE_DB_SCHEMA_VERSION);
}

Test(cmd_db, stats_counts_by_status)
{
	char *out = NULL, args[600];
	fill_eval();
	snprintf(args, sizeof(args), "stats '%s' --run eval", path);
	cr_assert_eq(swerve(&out, NULL, args), 0);
	cr_assert(strstr(out, "pending 1, running 0, done 3, infra_error 1"), "%s", out);
	cr_assert(strstr(out, "blocked by infra_error 1"), "%s", out);
	free(out);
	snprintf(args, sizeof(args), "stats '%s' --json", path);
	cr_assert_eq(swerve(&out, NULL, args), 0);
	json_error_t je;
	json_t *o = json_loads(out, 0, &je);
	cr_assert_not_null(o, "%s: %s", je.text, out);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(o, "rollouts"), "done")),
	             3);
	cr_assert_eq(json_integer_value(json_object_get(o, "resolved")), 1);
	json_decref(o);
	free(out);
}

Test(cmd_db, export_jsonl_has_one_line_per_rollout)
{
	char *out = NULL, args[600];
	fill_eval();
	snprintf(args, sizeof(args), "export '%s' --run eval --format jsonl", path);
	cr_assert_eq(swerve(&out, NULL, args), 0);
	int lines = 0, with_result = 0, null_results = 0;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		json_error_t je;
		json_t *o = json_loads(line, 0, &je);
		cr_assert_not_null(o, "%s: %s", je.text, line);
		json_t *res = json_object_get(o, "result");
		lines++;
		if (json_is_object(res)) {
			with_result++;
			cr_assert_eq(json_array_size(json_object_get(res, "tests")), 3);
			cr_assert(json_is_object(json_object_get(
			        json_object_get(res, "tests_status"), "FAIL_TO_PASS")));
		} else {
			null_results++;
		}
		json_decref(o);
	}
	cr_assert_eq(lines, 5);
	cr_assert_eq(with_result, 3);
	cr_assert_eq(null_results, 2);
	free(out);
}

Test(cmd_db, export_swebench_run_report)
{
	char *out = NULL, args[600];
	fill_eval();
	char *file = fx_path(dir, "report.json");
	snprintf(args, sizeof(args), "export '%s' --run eval --format swebench -o '%s'", path,
	         file);
	cr_assert_eq(swerve(NULL, NULL, args), 0);
	json_error_t je;
	json_t *o = json_load_file(file, 0, &je);
	cr_assert_not_null(o, "%s", je.text);
	struct {
		const char *key;
		int want;
	} want[] = {{"total_instances", 5},      {"submitted_instances", 5},
	            {"completed_instances", 2},  {"resolved_instances", 1},
	            {"unresolved_instances", 1}, {"empty_patch_instances", 1},
	            {"error_instances", 1},      {"schema_version", 2}};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_eq(json_integer_value(json_object_get(o, want[i].key)), want[i].want,
		             "%s", want[i].key);
	cr_assert_eq(json_array_size(json_object_get(o, "incomplete_ids")), 1);
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(o, "resolved_ids"), 0)),
	                 "owner__repo-0");
	json_decref(o);
	free(file);
	free(out);
}

Test(cmd_db, errors_have_exit_codes_and_one_line)
{
	char *err = NULL, args[600];
	snprintf(args, sizeof(args), "stats '%s/missing.db'", dir);
	cr_assert_eq(swerve(NULL, &err, args), SWERVE_EXIT_INFRA);
	cr_assert(strstr(err, "swerve db: database") && strstr(err, "missing.db"), "%s", err);
	free(err);

	fill_eval();
	snprintf(args, sizeof(args), "export '%s' --run nope", path);
	cr_assert_eq(swerve(NULL, &err, args), SWERVE_EXIT_USAGE);
	cr_assert(strstr(err, "run nope: not found"), "%s", err);
	free(err);
	snprintf(args, sizeof(args), "export '%s' --run eval --format csv", path);
	cr_assert_eq(swerve(NULL, &err, args), SWERVE_EXIT_USAGE);
	free(err);

	fx_sql_int(path, "PRAGMA user_version = 7");
	snprintf(args, sizeof(args), "stats '%s'", path);
	cr_assert_eq(swerve(NULL, &err, args), SWERVE_EXIT_INFRA);
	cr_assert(strstr(err, "newer"), "%s", err);
	cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "not one line: %s", err);
	free(err);
}
