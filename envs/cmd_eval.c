/* cmd_eval.c - `swerve eval`: evaluate SWE-bench predictions in the sandbox,
 * resumably, and write SWE-bench-compatible reports. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/db.h"
#include "envs/eval.h"
#include "envs/pool.h"
#include "envs/repo.h"
#include "envs/task.h"
#include "sandbox/error.h"

static const char usage_text[] =
        "usage: swerve eval --tasks FILE --predictions FILE|gold [options]\n"
        "\n"
        "Evaluates predictions (SWE-bench JSONL / JSON list / dict) against their tasks:\n"
        "for each instance, applies the model patch in an isolated workspace, applies the\n"
        "task's test_patch, runs the tests in the sandbox, grades them as SWE-bench does\n"
        "and computes the reward. Resumable: instances already done in the run are kept.\n"
        "\n"
        "options:\n"
        "  --tasks FILE          SWE-bench task instances (JSONL or JSON list)\n"
        "  --predictions FILE    predictions, or 'gold' for the tasks' own patches\n"
        "  --workers N           parallel episodes (default 1)\n"
        "  --out DIR             output directory (default swerve-out): <DIR>/<id>/{patch.diff,\n"
        "                        test_output.txt,report.json} and <DIR>/<model>.<run-id>.json\n"
        "  --db FILE             results database (default <DIR>/swerve.db)\n"
        "  --run-id ID           run name (default 'eval'); the same id resumes\n"
        "  --redo                evaluate again the instances this run already finished\n"
        "  --reward-spec FILE    reward values (JSON: resolved, unresolved, regression,\n"
        "                        patch_failed, timeout, sandbox_violation, empty_patch,\n"
        "                        partial_credit)\n"
        "  --reward KEY=VALUE    one reward value (repeatable; after --reward-spec)\n"
        "  --timeout S           test timeout when a task gives none (default 1800)\n"
        "  --workspace MODE      auto (default), overlay or copy\n"
        "  --home DIR            repository cache (default $SWERVE_HOME or ~/.cache/swerve)\n"
        "  --quiet               no per-instance error lines\n"
        "\n"
        "exit: 0 every submitted instance completed; 1 some errors or bad input;\n"
        "      2 usage; 3 infrastructure (nothing could run)\n";

static void print_problems(char **p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "swerve eval: %s\n", p[i]);
}

int swerve_cmd_eval(int argc, char **argv)
{
	static const struct option longopts[] = {{"tasks", required_argument, 0, 't'},
	                                         {"predictions", required_argument, 0, 'p'},
	                                         {"workers", required_argument, 0, 'w'},
	                                         {"out", required_argument, 0, 'o'},
	                                         {"db", required_argument, 0, 'd'},
	                                         {"run-id", required_argument, 0, 'r'},
	                                         {"redo", no_argument, 0, 'R'},
	                                         {"reward-spec", required_argument, 0, 's'},
	                                         {"reward", required_argument, 0, 'k'},
	                                         {"timeout", required_argument, 0, 'T'},
	                                         {"workspace", required_argument, 0, 'W'},
	                                         {"home", required_argument, 0, 'H'},
	                                         {"quiet", no_argument, 0, 'q'},
	                                         {"help", no_argument, 0, 'h'},
	                                         {0, 0, 0, 0}};
	const char *tasks_path = NULL, *preds_path = NULL, *out_dir = "swerve-out", *db_path = NULL;
	const char *run_name = "eval", *spec_path = NULL, *home = NULL;
	char *reward_args[64];
	int n_reward = 0, workers = 1, redo = 0, quiet = 0, c;
	double timeout_s = 0;
	enum swerve_ws_mode ws_mode = SWERVE_WS_AUTO;
	struct swerve_task_set *tasks = NULL, view = {0};
	struct swerve_prediction_set *preds = NULL;
	struct swerve_repo_cache *cache = NULL;
	struct swerve_db *db = NULL;
	struct swerve_pool_opts po;
	struct swerve_pool_stats ps;
	char dbbuf[PATH_MAX], path[PATH_MAX];
	char *report = NULL;
	int exit_code = SWERVE_EXIT_OK, rc;
	size_t problems = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 't': tasks_path = optarg; break;
		case 'p': preds_path = optarg; break;
		case 'o': out_dir = optarg; break;
		case 'd': db_path = optarg; break;
		case 'r': run_name = optarg; break;
		case 'R': redo = 1; break;
		case 's': spec_path = optarg; break;
		case 'H': home = optarg; break;
		case 'q': quiet = 1; break;
		case 'k':
			if (n_reward >= 64)
				return swerve_cli_usage("eval", "too many --reward flags");
			reward_args[n_reward++] = optarg;
			break;
		case 'w':
			if (swerve_cli_int(&workers, "eval", "--workers", optarg, 1, 1024))
				return SWERVE_EXIT_USAGE;
			break;
		case 'T':
			if (swerve_cli_seconds(&timeout_s, "eval", "--timeout", optarg))
				return SWERVE_EXIT_USAGE;
			break;
		case 'W':
			if (swerve_cli_ws_mode(&ws_mode, "eval", optarg))
				return SWERVE_EXIT_USAGE;
			break;
		case 'h': fputs(usage_text, stdout); return SWERVE_EXIT_OK;
		default: return swerve_cli_usage("eval", "bad option");
		}
	}
	if (optind < argc)
		return swerve_cli_usage("eval", "unexpected argument '%s'", argv[optind]);
	if (!tasks_path)
		return swerve_cli_usage("eval", "--tasks is required");
	if (!preds_path)
		return swerve_cli_usage("eval", "--predictions is required (a file, or 'gold')");

	memset(&po, 0, sizeof(po));
	swerve_reward_spec_default(&po.reward);
	if (spec_path && swerve_reward_spec_load(&po.reward, spec_path) < 0)
		return swerve_cli_fail("eval", SWERVE_EXIT_USAGE, "%s", swerve_error_last());
	for (int i = 0; i < n_reward; i++)
		if (swerve_reward_spec_set_arg(&po.reward, reward_args[i]) < 0)
			return swerve_cli_fail("eval", SWERVE_EXIT_USAGE, "--reward %s",
			                       swerve_error_last());

	/* inputs: bad items are reported and left out; the rest goes on */
	if (swerve_tasks_load(&tasks, tasks_path) < 0)
		return swerve_cli_fail("eval", SWERVE_EXIT_USAGE, "%s", swerve_error_last());
	print_problems(tasks->problems, tasks->n_problems);
	problems += tasks->n_problems;
	int gold = strcmp(preds_path, "gold") == 0;
	if (!gold) {
		if (swerve_predictions_load(&preds, preds_path) < 0) {
			exit_code = swerve_cli_fail("eval", SWERVE_EXIT_USAGE, "%s",
			                            swerve_error_last());
			goto done;
		}
		swerve_predictions_check(preds, tasks);
		print_problems(preds->problems, preds->n_problems);
		problems += preds->n_problems;
	}

	/* repositories must be in the cache: a missing one is the user's to fix */
	if (swerve_repo_cache_open(&cache, home) < 0) {
		exit_code = swerve_cli_fail("eval", SWERVE_EXIT_INFRA, "%s", swerve_error_last());
		goto done;
	}
	{
		/* view: the tasks that can run (struct copies; the set owns the data) */
		view.tasks = calloc(tasks->n + 1, sizeof(*view.tasks));
		if (!view.tasks) {
			exit_code = swerve_cli_fail("eval", SWERVE_EXIT_INFRA, "out of memory");
			goto done;
		}
		for (size_t i = 0; i < tasks->n; i++) {
			char *gd = NULL;
			if (swerve_repo_git_dir(&gd, cache, tasks->tasks[i].repo) < 0) {
				fprintf(stderr,
				        "swerve eval: instance %s: repository %s is not in the "
				        "cache "
				        "(add it: swerve repo add %s SOURCE)\n",
				        tasks->tasks[i].instance_id, tasks->tasks[i].repo,
				        tasks->tasks[i].repo);
				problems++;
				continue;
			}
			free(gd);
			view.tasks[view.n++] = tasks->tasks[i];
		}
		if (view.n == 0 && tasks->n > 0) {
			exit_code = swerve_cli_fail("eval", SWERVE_EXIT_SOME_FAILED,
			                            "no task can run (see above)");
			goto done;
		}
		if (mkdir(out_dir, 0755) < 0 && errno != EEXIST) {
			exit_code = swerve_cli_fail("eval", SWERVE_EXIT_INFRA, "%s: %s", out_dir,
			                            strerror(errno));
			goto done;
		}
		if (!db_path) {
			snprintf(dbbuf, sizeof(dbbuf), "%s/swerve.db", out_dir);
			db_path = dbbuf;
		}
		struct swerve_db_opts dbo = SWERVE_DB_OPTS_INIT;
		dbo.busy_timeout_ms = 30000;
		int64_t run = 0;
		rc = swerve_db_open(&db, db_path, &dbo);
		if (rc == 0) {
			rc = swerve_db_run_find(&run, db, run_name);
			if (rc == SWERVE_ENOTFOUND) {
				struct swerve_db_run_opts ro = SWERVE_DB_RUN_OPTS_INIT;
				rc = swerve_db_run_create(&run, db, run_name, &ro);
			} else if (rc == 0 && redo) {
				size_t n_reset = 0;
				rc = swerve_db_run_clear(&n_reset, db, run);
				if (rc == 0 && !quiet)
					fprintf(stderr,
					        "swerve eval: --redo: %zu earlier results "
					        "discarded\n",
					        n_reset);
			}
		}
		size_t enq = 0, conflicts = 0;
		if (rc == 0)
			rc = swerve_eval_enqueue(&enq, &conflicts, db, run, &view, preds);
		if (rc < 0) {
			exit_code = swerve_cli_fail("eval", SWERVE_EXIT_INFRA, "%s: %s", db_path,
			                            swerve_error_last());
			goto done;
		}
		problems += conflicts;

		po.db_path = db_path;
		po.run = run;
		po.workers = workers;
		po.progress_tty = isatty(2);
		po.quiet = quiet;
		po.home = swerve_repo_cache_home(cache);
		po.out_dir = out_dir;
		po.preds = preds;
		po.ws_mode = ws_mode;
		po.default_timeout_ms = timeout_s > 0 ? (uint64_t)(timeout_s * 1000) : 0;
		rc = swerve_pool_run(&ps, &po);
		if (rc < 0) {
			exit_code = swerve_cli_fail("eval", SWERVE_EXIT_INFRA, "%s",
			                            swerve_error_last());
			goto done;
		}

		size_t resolved = 0, errors = 0;
		/* the report counts every task of the file */
		if (swerve_eval_report(&report, &resolved, &errors, db, run, tasks, preds) < 0) {
			exit_code = swerve_cli_fail("eval", SWERVE_EXIT_INFRA, "report: %s",
			                            swerve_error_last());
			goto done;
		}
		const char *model = gold ? "gold"
		                    : preds->n && *preds->preds[0].model_name_or_path
		                            ? preds->preds[0].model_name_or_path
		                            : "model";
		char safe_model[128];
		snprintf(safe_model, sizeof(safe_model), "%s", model);
		char safe_run[128];
		snprintf(safe_run, sizeof(safe_run), "%s", run_name);
		for (char *q = safe_model; *q; q++)
			if (*q == '/')
				*q = '_';
		for (char *q = safe_run; *q; q++)
			if (*q == '/')
				*q = '_';
		snprintf(path, sizeof(path), "%s/%s.%s.json", out_dir, safe_model, safe_run);
		FILE *f = fopen(path, "w");
		if (!f || fputs(report, f) < 0 || fclose(f) != 0) {
			exit_code = swerve_cli_fail("eval", SWERVE_EXIT_INFRA, "%s: %s", path,
			                            strerror(errno));
			goto done;
		}
		printf("run %s: report %s\n", run_name, path);
		swerve_eval_print_summary(stdout, report);
		if (ps.interrupted) {
			fprintf(stderr,
			        "swerve eval: interrupted: rerun the same command to resume\n");
			exit_code = SWERVE_EXIT_SOME_FAILED;
		} else if (errors || problems) {
			exit_code = SWERVE_EXIT_SOME_FAILED;
		}
	}
done:
	free(view.tasks);
	free(report);
	swerve_db_close(db);
	swerve_repo_cache_free(cache);
	swerve_prediction_set_free(preds);
	swerve_task_set_free(tasks);
	return exit_code;
}
