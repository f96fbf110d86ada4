/* cmd_validate.c - `swerve validate`: dataset QA. Runs each task without a
 * patch and with its gold patch, several times, and writes the cleaned task
 * file and the reasons for every rejected task (envs/validate.h). */
#include "cli.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envs/task.h"
#include "envs/validate.h"
#include "sandbox/error.h"

static const char usage_text[] =
        "usage: swerve validate --tasks FILE [options]\n"
        "\n"
        "Dataset QA: runs every task without a patch and with its gold patch, N times\n"
        "each, in the sandbox. A task is kept when, in every run, each FAIL_TO_PASS\n"
        "test fails without the patch and passes with it, and each PASS_TO_PASS test\n"
        "passes both times; otherwise it is rejected with one-line reasons (a test\n"
        "that passes without the patch, a flaky test, a gold patch that does not\n"
        "apply, ...). Tasks whose runs hit infrastructure errors (after retries) are\n"
        "listed as errors, not as rejected.\n"
        "\n"
        "options:\n"
        "  --tasks FILE        SWE-bench task instances (JSONL or JSON list)\n"
        "  --runs N            repetitions of each side, to catch flaky tests (default 2)\n"
        "  --out FILE          the kept tasks, JSONL (default <tasks>.valid.jsonl)\n"
        "  --rejected FILE     one JSON line per rejected task: instance_id, repo,\n"
        "                      status (rejected|error), reasons (default\n"
        "                      <tasks>.rejected.jsonl)\n"
        "  --workers N         parallel episodes (default 1)\n"
        "  --timeout S         test timeout when a task gives none (default 1800)\n"
        "  --workspace MODE    auto (default), overlay or copy\n"
        "  --home DIR          repository cache (default $SWERVE_HOME or ~/.cache/swerve)\n"
        "  --quiet             no per-task lines on stdout\n"
        "\n"
        "exit: 0 every task was decided (kept or rejected); 1 some tasks could not be\n"
        "      decided (infrastructure errors) or some items of the file are malformed;\n"
        "      2 usage; 3 infrastructure (nothing could run)\n";

/* <tasks path less .jsonl/.json> + suffix */
static void default_path(char *out, size_t n, const char *tasks, const char *suffix)
{
	size_t len = strlen(tasks);
	if (len > 6 && strcmp(tasks + len - 6, ".jsonl") == 0)
		len -= 6;
	else if (len > 5 && strcmp(tasks + len - 5, ".json") == 0)
		len -= 5;
	snprintf(out, n, "%.*s%s", (int)len, tasks, suffix);
}

int swerve_cmd_validate(int argc, char **argv)
{
	static const struct option longopts[] = {{"tasks", required_argument, 0, 't'},
	                                         {"runs", required_argument, 0, 'n'},
	                                         {"out", required_argument, 0, 'o'},
	                                         {"rejected", required_argument, 0, 'r'},
	                                         {"workers", required_argument, 0, 'w'},
	                                         {"timeout", required_argument, 0, 'T'},
	                                         {"workspace", required_argument, 0, 'W'},
	                                         {"home", required_argument, 0, 'H'},
	                                         {"quiet", no_argument, 0, 'q'},
	                                         {"help", no_argument, 0, 'h'},
	                                         {0, 0, 0, 0}};
	const char *tasks_path = NULL, *out_path = NULL, *rej_path = NULL;
	char out_buf[PATH_MAX], rej_buf[PATH_MAX];
	struct swerve_validate_opts vo;
	struct swerve_task_set *tasks = NULL;
	struct swerve_validate_result *res = NULL;
	int quiet = 0, c, exit_code = SWERVE_EXIT_OK;
	double timeout_s = 0;

	memset(&vo, 0, sizeof(vo));
	vo.runs = 2;
	vo.workers = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 't': tasks_path = optarg; break;
		case 'o': out_path = optarg; break;
		case 'r': rej_path = optarg; break;
		case 'H': vo.home = optarg; break;
		case 'q': quiet = 1; break;
		case 'n':
			if (swerve_cli_int(&vo.runs, "validate", "--runs", optarg, 1, 1000))
				return SWERVE_EXIT_USAGE;
			break;
		case 'w':
			if (swerve_cli_int(&vo.workers, "validate", "--workers", optarg, 1, 1024))
				return SWERVE_EXIT_USAGE;
			break;
		case 'T':
			if (swerve_cli_seconds(&timeout_s, "validate", "--timeout", optarg))
				return SWERVE_EXIT_USAGE;
			break;
		case 'W':
			if (swerve_cli_ws_mode(&vo.ws_mode, "validate", optarg))
				return SWERVE_EXIT_USAGE;
			break;
		case 'h': fputs(usage_text, stdout); return SWERVE_EXIT_OK;
		default: return swerve_cli_usage("validate", "bad option");
		}
	}
	if (optind < argc)
		return swerve_cli_usage("validate", "unexpected argument '%s'", argv[optind]);
	if (!tasks_path)
		return swerve_cli_usage("validate", "--tasks is required");
	if (!out_path) {
		default_path(out_buf, sizeof(out_buf), tasks_path, ".valid.jsonl");
		out_path = out_buf;
	}
	if (!rej_path) {
		default_path(rej_buf, sizeof(rej_buf), tasks_path, ".rejected.jsonl");
		rej_path = rej_buf;
	}
	if (strcmp(out_path, tasks_path) == 0 || strcmp(rej_path, tasks_path) == 0 ||
	    strcmp(out_path, rej_path) == 0)
		return swerve_cli_usage(
		        "validate", "--out, --rejected and --tasks must be three different files");
	vo.default_timeout_ms = timeout_s > 0 ? (uint64_t)(timeout_s * 1000) : 0;
	vo.progress = !quiet;

	if (swerve_tasks_load(&tasks, tasks_path) < 0)
		return swerve_cli_fail("validate", SWERVE_EXIT_USAGE, "%s", swerve_error_last());
	for (size_t i = 0; i < tasks->n_problems; i++)
		fprintf(stderr, "swerve validate: %s\n", tasks->problems[i]);
	if (tasks->n_problems)
		exit_code = SWERVE_EXIT_SOME_FAILED;

	if (swerve_validate_run(&res, tasks, &vo) < 0) {
		exit_code =
		        swerve_cli_fail("validate", SWERVE_EXIT_INFRA, "%s", swerve_error_last());
		goto done;
	}
	if (!quiet) {
		for (size_t i = 0; i < res->n; i++) {
			const struct swerve_validate_task *v = &res->tasks[i];
			printf("%-8s %s", swerve_validate_status_name(v->status),
			       tasks->tasks[i].instance_id);
			for (size_t k = 0; k < v->n_reasons; k++)
				printf("%s%s", k ? "; " : ": ", v->reasons[k]);
			putchar('\n');
		}
	}
	if (swerve_validate_write(res, tasks, out_path, rej_path) < 0) {
		exit_code =
		        swerve_cli_fail("validate", SWERVE_EXIT_INFRA, "%s", swerve_error_last());
		goto done;
	}
	printf("validated %zu tasks (%d run%s each side, %zu episodes, %.1f s): %zu kept, "
	       "%zu rejected, %zu errors%s\n",
	       res->n, vo.runs, vo.runs == 1 ? "" : "s", res->episodes, res->wall_s, res->kept,
	       res->rejected, res->errors,
	       tasks->n_problems ? " (and malformed items: see above)" : "");
	printf("kept: %s\nrejected: %s\n", out_path, rej_path);
	if (res->errors)
		exit_code = SWERVE_EXIT_SOME_FAILED;
	if (res->n > 0 && res->errors == res->n && res->episodes > 0 && res->kept == 0)
		exit_code = SWERVE_EXIT_INFRA;
done:
	swerve_validate_result_free(res);
	swerve_task_set_free(tasks);
	return exit_code;
}
