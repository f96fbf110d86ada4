/* cmd_submit.c - `swerve submit`: enqueue RL rollouts (JSONL) into a db for
 * `swerve work` to evaluate; the trainer reads the rewards back through the
 * db's consumer API. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db/db.h"
#include "envs/eval.h"
#include "envs/task.h"
#include "sandbox/error.h"

static const char usage_text[] =
        "usage: swerve submit --db FILE --tasks FILE --rollouts FILE [--run NAME]\n"
        "\n"
        "Enqueues rollouts for `swerve work`. Each line of the rollouts file (JSONL) is\n"
        "one sample:\n"
        "  {\"instance_id\": \"...\",      a task of --tasks\n"
        "   \"group\": 7 | \"name\",        the group (GRPO/CISPO: samples of one prompt)\n"
        "   \"group_size\": 8,             samples in the group\n"
        "   \"sample\": 0,                 0 .. group_size-1\n"
        "   \"patch\": \"diff --git ...\",  the model's patch (\"\" or null: empty)\n"
        "   \"policy_version\": 3,          optional (default 0)\n"
        "   \"prompt_tokens\": [..], \"response_tokens\": [..], \"logprobs\": [..]}  optional\n"
        "Idempotent: a sample already queued with the same patch is not queued again.\n"
        "A bad line is reported (file:line: field: reason) and skipped.\n"
        "\n"
        "options:\n"
        "  --db FILE         the database (created if missing)\n"
        "  --tasks FILE      SWE-bench task instances the rollouts refer to\n"
        "  --rollouts FILE   the rollouts (JSONL)\n"
        "  --run NAME        the run (created if missing; default 'rl')\n"
        "  --max-attempts K  infrastructure retries before infra_error (new runs; default 3)\n"
        "\n"
        "exit: 0 all queued; 1 some lines bad; 2 usage; 3 database error\n";

/* A numeric array field (may be absent) as int32 (is_float 0) or float
 * (is_float 1) values in *out (malloc'd, *n entries). Returns 0, or -1 with
 * why set. */
static int num_array(void **out, size_t *n, json_t *obj, const char *key, int is_float,
                     const char **why)
{
	json_t *a = json_object_get(obj, key), *v;
	size_t i;
	*out = NULL;
	*n = 0;
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a)) {
		*why = "not a list";
		return -1;
	}
	int32_t *iv = NULL;
	float *fv = NULL;
	void *buf = malloc((json_array_size(a) + 1) * 4);
	if (!buf) {
		*why = "out of memory";
		return -1;
	}
	if (is_float)
		fv = buf;
	else
		iv = buf;
	json_array_foreach(a, i, v)
	{
		if (is_float ? !json_is_number(v)
		             : !json_is_integer(v) || json_integer_value(v) < INT32_MIN ||
		                       json_integer_value(v) > INT32_MAX) {
			*why = is_float ? "not a list of numbers" : "not a list of 32-bit integers";
			free(buf);
			return -1;
		}
		if (is_float)
			fv[i] = (float)json_number_value(v);
		else
			iv[i] = (int32_t)json_integer_value(v);
	}
	*out = buf;
	*n = json_array_size(a);
	return 0;
}

static int64_t group_key(json_t *g)
{
	if (json_is_integer(g))
		return (int64_t)json_integer_value(g);
	return swerve_eval_group_key(json_string_value(g));
}

int swerve_cmd_submit(int argc, char **argv)
{
	static const struct option longopts[] = {{"db", required_argument, 0, 'd'},
	                                         {"tasks", required_argument, 0, 't'},
	                                         {"rollouts", required_argument, 0, 'r'},
	                                         {"run", required_argument, 0, 'n'},
	                                         {"max-attempts", required_argument, 0, 'k'},
	                                         {"help", no_argument, 0, 'h'},
	                                         {0, 0, 0, 0}};
	const char *db_path = NULL, *tasks_path = NULL, *roll_path = NULL, *run_name = "rl";
	int max_attempts = 3, c, exit_code = SWERVE_EXIT_OK;
	struct swerve_task_set *tasks = NULL;
	struct swerve_db *db = NULL;
	FILE *f = NULL;
	char *line = NULL;
	size_t cap = 0, lineno = 0, queued = 0, already = 0, bad = 0;
	int64_t run = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': db_path = optarg; break;
		case 't': tasks_path = optarg; break;
		case 'r': roll_path = optarg; break;
		case 'n': run_name = optarg; break;
		case 'k': max_attempts = atoi(optarg); break;
		case 'h': fputs(usage_text, stdout); return SWERVE_EXIT_OK;
		default:
			return swerve_cli_fail("submit", SWERVE_EXIT_USAGE,
			                       "bad option (see --help)");
		}
	}
	if (optind < argc)
		return swerve_cli_fail("submit", SWERVE_EXIT_USAGE, "unexpected argument '%s'",
		                       argv[optind]);
	if (!db_path || !tasks_path || !roll_path)
		return swerve_cli_fail("submit", SWERVE_EXIT_USAGE,
		                       "--db, --tasks and --rollouts are required (see --help)");
	if (max_attempts < 1)
		return swerve_cli_fail("submit", SWERVE_EXIT_USAGE, "--max-attempts must be >= 1");

	if (swerve_tasks_load(&tasks, tasks_path) < 0)
		return swerve_cli_fail("submit", SWERVE_EXIT_USAGE, "%s", swerve_error_last());
	for (size_t i = 0; i < tasks->n_problems; i++)
		fprintf(stderr, "swerve submit: %s\n", tasks->problems[i]);
	if (!(f = fopen(roll_path, "r"))) {
		exit_code =
		        swerve_cli_fail("submit", SWERVE_EXIT_USAGE, "%s: cannot open", roll_path);
		goto done;
	}
	struct swerve_db_opts dbo = SWERVE_DB_OPTS_INIT;
	dbo.busy_timeout_ms = 30000;
	int rc = swerve_db_open(&db, db_path, &dbo);
	if (rc == 0) {
		rc = swerve_db_run_find(&run, db, run_name);
		if (rc == SWERVE_ENOTFOUND) {
			struct swerve_db_run_opts ro = SWERVE_DB_RUN_OPTS_INIT;
			ro.max_attempts = max_attempts;
			rc = swerve_db_run_create(&run, db, run_name, &ro);
		}
	}
	if (rc == 0)
		rc = swerve_db_begin(db);
	if (rc < 0) {
		exit_code = swerve_cli_fail("submit", SWERVE_EXIT_INFRA, "%s", swerve_error_last());
		goto done;
	}

	ssize_t len;
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (strspn(line, " \t\r\n") == (size_t)len)
			continue;
		json_error_t jerr;
		json_t *o = json_loadb(line, (size_t)len, JSON_DECODE_ANY, &jerr);
		const char *field = NULL, *why = NULL;
		const struct swerve_task *task = NULL;
		int32_t *pt = NULL, *rt = NULL;
		float *lp = NULL;
		struct swerve_db_rollout r = {0};
		if (!o || !json_is_object(o)) {
			fprintf(stderr, "swerve submit: %s:%zu: not a JSON object%s%s\n", roll_path,
			        lineno, o ? "" : ": ", o ? "" : jerr.text);
			bad++;
			json_decref(o);
			continue;
		}
		json_t *id = json_object_get(o, "instance_id"), *g = json_object_get(o, "group");
		json_t *gs = json_object_get(o, "group_size"), *s = json_object_get(o, "sample");
		json_t *p = json_object_get(o, "patch"), *pv = json_object_get(o, "policy_version");
		if (!json_is_string(id))
			field = "instance_id", why = "missing or not a string";
		else if (!(task = swerve_task_set_find(tasks, json_string_value(id))))
			field = "instance_id", why = "not in the task file";
		else if (!json_is_integer(g) && !json_is_string(g))
			field = "group", why = "missing or not an integer or string";
		else if (!json_is_integer(gs) || json_integer_value(gs) < 1)
			field = "group_size", why = "missing or not an integer >= 1";
		else if (!json_is_integer(s) || json_integer_value(s) < 0 ||
		         json_integer_value(s) >= json_integer_value(gs))
			field = "sample", why = "missing or not in 0 .. group_size-1";
		else if (p && !json_is_string(p) && !json_is_null(p))
			field = "patch", why = "not a string";
		else if (pv && !json_is_integer(pv))
			field = "policy_version", why = "not an integer";
		else if (num_array((void **)&pt, &r.n_prompt_tokens, o, "prompt_tokens", 0, &why) <
		         0)
			field = "prompt_tokens";
		else if (num_array((void **)&rt, &r.n_response_tokens, o, "response_tokens", 0,
		                   &why) < 0)
			field = "response_tokens";
		else if (num_array((void **)&lp, &r.n_logprobs, o, "logprobs", 1, &why) < 0)
			field = "logprobs";
		if (field) {
			fprintf(stderr, "swerve submit: %s:%zu: field %s: %s\n", roll_path, lineno,
			        field, why);
			bad++;
		} else {
			int64_t task_id, rid;
			int created = 0;
			r.run = run;
			r.group = group_key(g);
			r.group_size = (int)json_integer_value(gs);
			r.sample = (int)json_integer_value(s);
			r.policy_version = pv ? (int64_t)json_integer_value(pv) : 0;
			r.patch = json_is_string(p) ? json_string_value(p) : "";
			r.prompt_tokens = pt;
			r.response_tokens = rt;
			r.logprobs = lp;
			rc = swerve_db_task_upsert(&task_id, db, task->instance_id, task->repo,
			                           task->base_commit, task->json);
			if (rc == 0) {
				r.task = task_id;
				rc = swerve_db_enqueue(&rid, &created, db, &r);
			}
			if (rc == SWERVE_EINVAL || rc == SWERVE_EEXIST) {
				fprintf(stderr, "swerve submit: %s:%zu: %s\n", roll_path, lineno,
				        swerve_error_last());
				bad++;
			} else if (rc < 0) {
				swerve_db_rollback(db);
				exit_code = swerve_cli_fail(
				        "submit", SWERVE_EXIT_INFRA,
				        "%s:%zu: %s (nothing from this file was queued)", roll_path,
				        lineno, swerve_error_last());
				free(pt);
				free(rt);
				free(lp);
				json_decref(o);
				goto done;
			} else if (created) {
				queued++;
			} else {
				already++;
			}
		}
		free(pt);
		free(rt);
		free(lp);
		json_decref(o);
	}
	if (swerve_db_commit(db) < 0) {
		exit_code = swerve_cli_fail("submit", SWERVE_EXIT_INFRA, "%s", swerve_error_last());
		goto done;
	}
	printf("run %s: %zu rollouts queued, %zu already there, %zu bad lines\n", run_name, queued,
	       already, bad);
	if (bad)
		exit_code = SWERVE_EXIT_SOME_FAILED;
done:
	free(line);
	if (f)
		fclose(f);
	swerve_db_close(db);
	swerve_task_set_free(tasks);
	return exit_code;
}
