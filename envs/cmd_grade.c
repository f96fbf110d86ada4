/* cmd_grade.c - `swerve grade`: parse a test log and grade it against a
 * task, offline (no repository, no sandbox): re-grade SWE-bench's
 * test_output.txt files, check a log parser on a new runner, try a reward
 * spec. Without --tasks it lists the statuses the parser found. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envs/report.h"
#include "envs/task.h"
#include "rewards/rewards.h"

static const char usage_text[] =
        "usage: swerve grade --log FILE [--parser NAME] [--truncated]\n"
        "       swerve grade --log FILE --tasks FILE --instance ID [--parser NAME]\n"
        "                    [--exit-code N] [--reward-spec FILE] [--reward KEY=VALUE]... "
        "[--json]\n"
        "\n"
        "Parses a test log (the parser named, the task's log_parser, or the one detected)\n"
        "and, with --tasks, grades it against the instance's FAIL_TO_PASS and PASS_TO_PASS\n"
        "as SWE-bench does (a missing or skipped FAIL_TO_PASS test counts as failed).\n"
        "Without --tasks it prints one \"STATUS<TAB>test id\" line per test; the names\n"
        "SWE-bench's parsers would give the same test end in \"<TAB>(alias)\".\n"
        "\n"
        "options:\n"
        "  --log FILE            the test command's output ('-' for stdin)\n"
        "  --parser NAME         pytest unittest django sympy go gojson cargo tap junit node\n"
        "                        ctest, or auto (default: the task's log_parser, else auto)\n"
        "  --truncated           the capture was cut: ignore an unterminated last line\n"
        "  --tasks FILE          SWE-bench instances (JSON list, JSONL or dict)\n"
        "  --instance ID         the instance the log belongs to\n"
        "  --exit-code N         the test command's exit status: checked against the\n"
        "                        parsed statuses (a contradiction makes the run untrusted)\n"
        "  --reward-spec FILE    reward values (JSON; see README)\n"
        "  --reward KEY=VALUE    one reward value (repeatable; after --reward-spec)\n"
        "  --json                print the instance's report.json instead of a summary\n"
        "\n"
        "exit: 0 resolved (or statuses listed); 1 graded, not resolved, or untrusted;\n"
        "      2 usage; 3 unreadable or malformed input\n";

static char *read_input(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (cap - n < 65536) {
			cap = cap ? cap * 2 : 65536;
			char *b = realloc(buf, cap);
			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (buf && ferror(f)) {
		free(buf);
		buf = NULL;
	}
	if (f != stdin)
		fclose(f);
	*len = n;
	return buf;
}

int swerve_cmd_grade(int argc, char **argv)
{
	static const struct option longopts[] = {{"log", required_argument, 0, 'l'},
	                                         {"parser", required_argument, 0, 'p'},
	                                         {"truncated", no_argument, 0, 'T'},
	                                         {"tasks", required_argument, 0, 't'},
	                                         {"instance", required_argument, 0, 'i'},
	                                         {"exit-code", required_argument, 0, 'e'},
	                                         {"reward-spec", required_argument, 0, 's'},
	                                         {"reward", required_argument, 0, 'k'},
	                                         {"json", no_argument, 0, 'j'},
	                                         {"help", no_argument, 0, 'h'},
	                                         {0, 0, 0, 0}};
	const char *log_path = NULL, *parser = NULL, *tasks_path = NULL, *instance = NULL;
	const char *spec_path = NULL, *reward_args[64];
	int n_reward = 0, as_json = 0, c, exit_code = SWERVE_EXIT_CODE_UNKNOWN;
	unsigned flags = 0;
	struct swerve_reward_spec spec;
	struct swerve_task_set *tasks = NULL;
	struct swerve_testlog *log = NULL;
	struct swerve_grade grade;
	int graded = 0, rc = SWERVE_EXIT_OK;
	char *data = NULL, *json = NULL;
	size_t len = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': log_path = optarg; break;
		case 'p': parser = optarg; break;
		case 'T': flags |= SWERVE_LOG_TRUNCATED; break;
		case 't': tasks_path = optarg; break;
		case 'i': instance = optarg; break;
		case 'e': {
			char *end;
			errno = 0;
			long v = strtol(optarg, &end, 10);
			if (end == optarg || *end || errno || v < -255 || v > 255)
				return swerve_cli_fail("grade", SWERVE_EXIT_USAGE,
				                       "--exit-code '%s': not an exit status",
				                       optarg);
			exit_code = (int)v;
			break;
		}
		case 's': spec_path = optarg; break;
		case 'k':
			if (n_reward >= 64)
				return swerve_cli_fail("grade", SWERVE_EXIT_USAGE,
				                       "too many --reward");
			reward_args[n_reward++] = optarg;
			break;
		case 'j': as_json = 1; break;
		case 'h': fputs(usage_text, stdout); return SWERVE_EXIT_OK;
		default:
			return swerve_cli_fail("grade", SWERVE_EXIT_USAGE,
			                       "bad option (see --help)");
		}
	}
	if (optind < argc)
		return swerve_cli_fail("grade", SWERVE_EXIT_USAGE, "unexpected argument '%s'",
		                       argv[optind]);
	if (!log_path)
		return swerve_cli_fail("grade", SWERVE_EXIT_USAGE,
		                       "--log is required (see --help)");
	if (!tasks_path != !instance)
		return swerve_cli_fail("grade", SWERVE_EXIT_USAGE,
		                       "--tasks and --instance go together");
	if (parser && !swerve_log_parser_exists(parser))
		return swerve_cli_fail("grade", SWERVE_EXIT_USAGE,
		                       "--parser '%s': unknown (see --help)", parser);
	swerve_reward_spec_default(&spec);
	if (spec_path && swerve_reward_spec_load(&spec, spec_path) != 0)
		return swerve_cli_fail("grade", SWERVE_EXIT_USAGE, "--reward-spec: %s",
		                       swerve_error_last());
	for (int i = 0; i < n_reward; i++)
		if (swerve_reward_spec_set_arg(&spec, reward_args[i]) != 0)
			return swerve_cli_fail("grade", SWERVE_EXIT_USAGE, "--reward: %s",
			                       swerve_error_last());

	const struct swerve_task *task = NULL;
	if (tasks_path) {
		if (swerve_tasks_load(&tasks, tasks_path) != 0) {
			rc = swerve_cli_fail("grade", SWERVE_EXIT_INFRA, "%s", swerve_error_last());
			goto done;
		}
		task = swerve_task_set_find(tasks, instance);
		if (!task) {
			for (size_t i = 0; i < tasks->n_problems; i++)
				fprintf(stderr, "swerve grade: %s\n", tasks->problems[i]);
			rc = swerve_cli_fail("grade", SWERVE_EXIT_INFRA,
			                     "%s: instance %s: not found", tasks_path, instance);
			goto done;
		}
		if (!parser)
			parser = task->log_parser;
	}
	if (!(data = read_input(log_path, &len))) {
		rc = swerve_cli_fail("grade", SWERVE_EXIT_INFRA, "%s: %s", log_path,
		                     errno ? strerror(errno) : "cannot read");
		goto done;
	}
	if (swerve_log_parse(&log, parser, data, len, flags) != 0) {
		rc = swerve_cli_fail("grade", SWERVE_EXIT_INFRA, "%s: %s", log_path,
		                     swerve_error_last());
		goto done;
	}
	if (!task) {
		for (size_t i = 0; i < swerve_testlog_count(log); i++) {
			const struct swerve_test_result *r = swerve_testlog_at(log, i);
			printf("%s\t%s%s\n", swerve_test_status_name(r->status), r->name,
			       r->alias ? "\t(alias)" : "");
		}
		fprintf(stderr, "swerve grade: %s: %zu tests (parser %s%s)\n", log_path,
		        swerve_testlog_count_tests(log), swerve_testlog_parser(log),
		        swerve_testlog_incomplete(log) ? ", log incomplete" : "");
		goto done;
	}

	struct swerve_grade_input in;
	swerve_task_grade_input(&in, task);
	if (swerve_grade_compute(&grade, &in, log, exit_code) != 0) {
		rc = swerve_cli_fail("grade", SWERVE_EXIT_INFRA, "%s", swerve_error_last());
		goto done;
	}
	graded = 1;
	struct swerve_instance_report r = {
	        .instance_id = task->instance_id,
	        .patch_exists = 1,
	        .patch_applied = 1,
	        .grade = &grade,
	        .log_parser = swerve_testlog_parser(log),
	        .has_exit_code = exit_code != SWERVE_EXIT_CODE_UNKNOWN,
	        .exit_code = exit_code,
	        .log_incomplete = swerve_testlog_incomplete(log),
	};
	enum swerve_outcome outcome;
	if (swerve_outcome_from_grade(&outcome, &grade) == 0) {
		r.has_outcome = 1;
		r.outcome = outcome;
		r.has_reward = 1;
		r.reward = swerve_reward(&spec, outcome, grade.fraction[SWERVE_FAIL_TO_PASS]);
	}
	if (as_json) {
		if (swerve_report_instance_json(&json, &r) != 0) {
			rc = swerve_cli_fail("grade", SWERVE_EXIT_INFRA, "%s", swerve_error_last());
			goto done;
		}
		printf("%s\n", json);
	} else if (!grade.trusted) {
		printf("%s: untrusted: %s (parser %s, %zu tests)\n", task->instance_id,
		       grade.untrusted_reason, r.log_parser, swerve_testlog_count_tests(log));
	} else {
		printf("%s: %s %s reward %g (parser %s, %zu tests; FAIL_TO_PASS %zu/%zu, "
		       "PASS_TO_PASS %zu/%zu%s)\n",
		       task->instance_id, swerve_resolution_name(grade.resolution),
		       swerve_outcome_name(outcome), r.reward, r.log_parser,
		       swerve_testlog_count_tests(log), grade.n_success[SWERVE_FAIL_TO_PASS],
		       in.n_tests[SWERVE_FAIL_TO_PASS], grade.n_success[SWERVE_PASS_TO_PASS],
		       in.n_tests[SWERVE_PASS_TO_PASS], r.log_incomplete ? "; log incomplete" : "");
		for (int k = SWERVE_FAIL_TO_PASS; k <= SWERVE_PASS_TO_PASS; k++)
			for (size_t i = 0; i < grade.n_failure[k]; i++)
				printf("  %s failed: %s\n", swerve_test_category_name(k),
				       grade.failure[k][i]);
	}
	rc = grade.trusted && grade.resolved ? SWERVE_EXIT_OK : SWERVE_EXIT_SOME_FAILED;
done:
	if (graded)
		swerve_grade_dispose(&grade);
	free(json);
	free(data);
	swerve_testlog_free(log);
	swerve_task_set_free(tasks);
	return rc;
}
