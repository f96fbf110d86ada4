/* cmd_db.c - `swerve db init | stats | export`: create or migrate a database,
 * print its counts, export a run's results as JSON lines or as a SWE-bench
 * run report. Reads through db/db.h only; JSON through jansson. */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"

static const char usage_text[] =
        "usage: swerve db init PATH\n"
        "       swerve db stats PATH [--run NAME] [--json]\n"
        "       swerve db export PATH --run NAME [--format jsonl|swebench] [-o FILE]\n\n"
        "init    create the database (or migrate an older schema) and print its version\n"
        "stats   rollouts by status, groups (complete, consumed, blocked by an\n"
        "        infra_error sample), results, rewards, metrics; the whole file or one run\n"
        "export  jsonl: one line per rollout with its result and per-test statuses;\n"
        "        swebench: the SWE-bench run report (schema_version 2) of a run with one\n"
        "        rollout per instance\n\n"
        "exit codes: 0 success, 2 usage error (unknown run, bad option), 3 the database\n"
        "could not be opened or read (locked, corrupted, newer schema, disk full)\n";

/* A db error: infrastructure, nothing trustworthy produced. */
static int db_error(void)
{
	return swerve_cli_fail("db", SWERVE_EXIT_INFRA, "%s", swerve_error_last());
}

static int open_db(struct swerve_db **db, const char *path, int create)
{
	struct swerve_db_opts o = SWERVE_DB_OPTS_INIT;
	o.create = create;
	return swerve_db_open(db, path, &o);
}

static int cmd_init(const char *path)
{
	struct swerve_db *db;
	if (open_db(&db, path, 1))
		return db_error();
	printf("%s: swerve database, schema version %d\n", path, swerve_db_schema_version(db));
	swerve_db_close(db);
	return SWERVE_EXIT_OK;
}

static int find_run(int64_t *run, struct swerve_db *db, const char *name)
{
	int rc = swerve_db_run_find(run, db, name);
	if (rc == SWERVE_ENOTFOUND)
		return swerve_cli_fail("db", SWERVE_EXIT_USAGE, "run %s: not found", name);
	return rc ? db_error() : 0;
}

static int cmd_stats(const char *path, const char *run_name, int as_json)
{
	struct swerve_db *db;
	struct swerve_db_stats s;
	int64_t run = 0;
	int rc;

	if (open_db(&db, path, 0))
		return db_error();
	if (run_name && (rc = find_run(&run, db, run_name))) {
		swerve_db_close(db);
		return rc;
	}
	if (swerve_db_stats(&s, db, run)) {
		rc = db_error();
		swerve_db_close(db);
		return rc;
	}
	double mean = s.rewarded ? s.reward_sum / (double)s.rewarded : 0.0;
	if (as_json) {
		json_t *o = json_pack(
		        "{s:s, s:i, s:s?, s:I, s:I, s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I},"
		        " s:I, s:I, s:f, s:I}",
		        "database", path, "schema_version", swerve_db_schema_version(db), "run",
		        run_name, "runs", (json_int_t)s.runs, "tasks", (json_int_t)s.tasks,
		        "rollouts", "pending", (json_int_t)s.pending, "running",
		        (json_int_t)s.running, "done", (json_int_t)s.done, "infra_error",
		        (json_int_t)s.infra_error, "groups", "total", (json_int_t)s.groups,
		        "complete", (json_int_t)s.groups_complete, "consumed",
		        (json_int_t)s.groups_consumed, "blocked", (json_int_t)s.groups_blocked,
		        "resolved", (json_int_t)s.resolved, "rewarded", (json_int_t)s.rewarded,
		        "mean_reward", mean, "metrics", (json_int_t)s.metrics);
		json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		json_decref(o);
	} else {
		printf("database %s (schema version %d)%s%s\n", path, swerve_db_schema_version(db),
		       run_name ? ", run " : "", run_name ? run_name : "");
		printf("runs %lld, tasks %lld\n", (long long)s.runs, (long long)s.tasks);
		printf("rollouts: pending %lld, running %lld, done %lld, infra_error %lld\n",
		       (long long)s.pending, (long long)s.running, (long long)s.done,
		       (long long)s.infra_error);
		printf("groups: %lld (complete %lld, consumed %lld, blocked by infra_error %lld)\n",
		       (long long)s.groups, (long long)s.groups_complete,
		       (long long)s.groups_consumed, (long long)s.groups_blocked);
		printf("results: resolved %lld, rewarded %lld, mean reward %.4f\n",
		       (long long)s.resolved, (long long)s.rewarded, mean);
		printf("metrics: %lld\n", (long long)s.metrics);
	}
	swerve_db_close(db);
	return SWERVE_EXIT_OK;
}

/* ---- export ----------------------------------------------------------------- */

struct export
{
	struct swerve_db *db;
	FILE *out;
	const char *run_name;
	int swebench;
	int failed; /* write error */
	/* swebench */
	json_t *ids[7];
	char last_instance[512];
	int duplicate;
};

enum { SUBMITTED, COMPLETED, INCOMPLETE, EMPTY, RESOLVED, UNRESOLVED, ERROR };
static const char *const id_lists[7] = {"submitted_ids",   "completed_ids", "incomplete_ids",
                                        "empty_patch_ids", "resolved_ids",  "unresolved_ids",
                                        "error_ids"};
static const char *const counts[7] = {
        "submitted_instances",   "completed_instances", NULL,
        "empty_patch_instances", "resolved_instances",  "unresolved_instances",
        "error_instances"};

static json_t *counts_json(const struct swerve_db_counts *c)
{
	return json_pack("{s:i, s:i}", "success", c->success, "failure", c->failure);
}

static int add_test(const struct swerve_db_test_status *t, void *payload)
{
	json_array_append_new(payload, json_pack("{s:s, s:s, s:s}", "test_id", t->test_id, "status",
	                                         t->status, "category", t->category));
	return 0;
}

static int export_jsonl(const struct swerve_db_row *row, struct export *ex)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:i, s:I, s:s, s:b, s:s, s:i, s:s?}", "run",
	                      ex->run_name, "instance_id", row->instance_id, "group",
	                      (json_int_t)row->group, "sample", row->sample, "policy_version",
	                      (json_int_t)row->policy_version, "patch_sha256", row->patch_sha256,
	                      "patch_empty", row->patch_empty, "status", row->status, "attempts",
	                      row->attempts, "last_error", row->last_error);
	if (!o)
		return -1;
	const struct swerve_db_result *r = row->result;
	if (r) {
		json_t *tests = json_array();
		if (swerve_db_tests_foreach(ex->db, row->rollout, add_test, tests)) {
			json_decref(tests);
			json_decref(o);
			return -1;
		}
		json_t *res = json_pack(
		        "{s:s, s:s, s:o, s:b, s:b, s:s?, s:{s:o, s:o, s:o, s:o},"
		        " s:{s:I, s:I, s:I, s:I}, s:I, s:i, s:b, s:o}",
		        "verdict", r->verdict, "resolved", r->resolved, "reward",
		        r->has_reward ? json_real(r->reward) : json_null(), "empty_patch",
		        r->empty_patch, "patch_applied", r->patch_applied, "apply_method",
		        r->apply_method, "tests_status", "FAIL_TO_PASS", counts_json(&r->f2p),
		        "PASS_TO_PASS", counts_json(&r->p2p), "FAIL_TO_FAIL", counts_json(&r->f2f),
		        "PASS_TO_FAIL", counts_json(&r->p2f), "timings_ms", "workspace",
		        (json_int_t)r->workspace_ms, "apply", (json_int_t)r->apply_ms, "test",
		        (json_int_t)r->test_ms, "total", (json_int_t)r->total_ms, "max_rss_kb",
		        (json_int_t)r->max_rss_kb, "exit_code", r->exit_code, "output_truncated",
		        r->output_truncated, "tests", tests);
		json_object_set_new(o, "result", res ? res : json_null());
	} else {
		json_object_set_new(o, "result", json_null());
	}
	if (json_dumpf(o, ex->out, JSON_COMPACT | JSON_PRESERVE_ORDER) || fputc('\n', ex->out) < 0)
		ex->failed = 1;
	json_decref(o);
	return ex->failed ? -1 : 0;
}

/* SWE-bench's run report classifies each instance once: an empty patch is
 * not run; done is completed and resolved iff FULL; infra_error is an error
 * instance; pending or running is incomplete. */
static int export_swebench(const struct swerve_db_row *row, struct export *ex)
{
	if (strcmp(row->instance_id, ex->last_instance) == 0) {
		ex->duplicate = 1;
		return 1;
	}
	snprintf(ex->last_instance, sizeof(ex->last_instance), "%s", row->instance_id);
	json_t *id = json_string(row->instance_id);
	json_array_append(ex->ids[SUBMITTED], id);
	int empty = row->patch_empty || (row->result && row->result->empty_patch);
	if (empty) {
		json_array_append(ex->ids[EMPTY], id);
	} else if (strcmp(row->status, "done") == 0 && row->result) {
		json_array_append(ex->ids[COMPLETED], id);
		json_array_append(
		        ex->ids[strcmp(row->result->resolved, "FULL") == 0 ? RESOLVED : UNRESOLVED],
		        id);
	} else if (strcmp(row->status, "infra_error") == 0) {
		json_array_append(ex->ids[ERROR], id);
	} else {
		json_array_append(ex->ids[INCOMPLETE], id);
	}
	json_decref(id);
	return 0;
}

static int export_row(const struct swerve_db_row *row, void *payload)
{
	struct export *ex = payload;
	return ex->swebench ? export_swebench(row, ex) : export_jsonl(row, ex);
}

static int cmd_export(const char *path, const char *run_name, const char *format,
                      const char *out_path)
{
	struct export ex;
	int64_t run;
	int rc = SWERVE_EXIT_OK;

	memset(&ex, 0, sizeof(ex));
	if (!run_name)
		return swerve_cli_fail("db", SWERVE_EXIT_USAGE, "export: --run NAME is required");
	if (strcmp(format, "jsonl") != 0 && strcmp(format, "swebench") != 0)
		return swerve_cli_fail("db", SWERVE_EXIT_USAGE,
		                       "export: --format %s: expected jsonl or swebench", format);
	if (open_db(&ex.db, path, 0))
		return db_error();
	if ((rc = find_run(&run, ex.db, run_name)))
		goto done;
	ex.run_name = run_name;
	ex.swebench = strcmp(format, "swebench") == 0;
	ex.out = out_path ? fopen(out_path, "w") : stdout;
	if (!ex.out) {
		rc = swerve_cli_fail("db", SWERVE_EXIT_INFRA, "%s: cannot write: %m", out_path);
		goto done;
	}
	for (int i = 0; i < 7; i++)
		ex.ids[i] = json_array();
	int err = swerve_db_results_foreach(ex.db, run, export_row, &ex);
	if (ex.duplicate) {
		rc = swerve_cli_fail("db", SWERVE_EXIT_USAGE,
		                     "export: run %s: instance %s has several rollouts; the "
		                     "swebench report needs one per instance (use --format jsonl)",
		                     run_name, ex.last_instance);
		goto done;
	}
	if (err && !ex.failed) {
		rc = db_error();
		goto done;
	}
	if (ex.swebench && !ex.failed) {
		json_t *o = json_object();
		size_t total = json_array_size(ex.ids[SUBMITTED]);
		json_object_set_new(o, "total_instances", json_integer((json_int_t)total));
		for (int i = 0; i < 7; i++)
			if (counts[i])
				json_object_set_new(
				        o, counts[i],
				        json_integer((json_int_t)json_array_size(ex.ids[i])));
		for (int i = 0; i < 7; i++)
			json_object_set(o, id_lists[i], ex.ids[i]);
		json_object_set_new(o, "schema_version", json_integer(2));
		if (json_dumpf(o, ex.out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) ||
		    fputc('\n', ex.out) < 0)
			ex.failed = 1;
		json_decref(o);
	}
	if (ex.failed || fflush(ex.out) != 0)
		rc = swerve_cli_fail("db", SWERVE_EXIT_INFRA, "%s: write failed: %m",
		                     out_path ? out_path : "stdout");
done:
	for (int i = 0; i < 7; i++)
		json_decref(ex.ids[i]);
	if (ex.out && ex.out != stdout && fclose(ex.out) != 0 && rc == 0)
		rc = swerve_cli_fail("db", SWERVE_EXIT_INFRA, "%s: write failed: %m", out_path);
	swerve_db_close(ex.db);
	return rc;
}

int swerve_cmd_db(int argc, char **argv)
{
	const char *sub, *path, *run = NULL, *format = "jsonl", *out = NULL;
	int as_json = 0;

	if (swerve_cli_wants_help(argc, argv)) {
		fputs(usage_text, stdout);
		return SWERVE_EXIT_OK;
	}
	if (argc < 3) {
		fputs(usage_text, stderr);
		return SWERVE_EXIT_USAGE;
	}
	sub = argv[1];
	path = argv[2];
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i];
		int has_value = i + 1 < argc;
		if (strcmp(a, "--json") == 0 && strcmp(sub, "stats") == 0)
			as_json = 1;
		else if (strcmp(a, "--run") == 0 && has_value && strcmp(sub, "init") != 0)
			run = argv[++i];
		else if (strcmp(a, "--format") == 0 && has_value && strcmp(sub, "export") == 0)
			format = argv[++i];
		else if (strcmp(a, "-o") == 0 && has_value && strcmp(sub, "export") == 0)
			out = argv[++i];
		else
			return swerve_cli_fail(
			        "db", SWERVE_EXIT_USAGE,
			        "%s: unexpected argument '%s' (see swerve db --help)", sub, a);
	}
	if (strcmp(sub, "init") == 0)
		return cmd_init(path);
	if (strcmp(sub, "stats") == 0)
		return cmd_stats(path, run, as_json);
	if (strcmp(sub, "export") == 0)
		return cmd_export(path, run, format, out);
	return swerve_cli_fail("db", SWERVE_EXIT_USAGE,
	                       "unknown subcommand '%s' (init, stats, export)", sub);
}
