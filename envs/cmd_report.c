/* cmd_report.c - `swerve report`: the SWE-bench run report of a run, from
 * the db alone (what `swerve eval` writes at its end, for any run). */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "envs/eval.h"
#include "envs/task.h"
#include "sandbox/error.h"

static const char usage_text[] =
        "usage: swerve report --db FILE --run-id ID [--tasks FILE] [--out FILE | --json]\n"
        "\n"
        "Builds the run report (SWE-bench's keys and schema_version 2, plus swerve's\n"
        "outcomes and rewards under \"swerve\") from the results stored in the db.\n"
        "\n"
        "options:\n"
        "  --db FILE       the database\n"
        "  --run-id ID     the run (swerve eval --run-id, swerve submit --run)\n"
        "  --tasks FILE    the dataset, so total_instances and incomplete_ids count every\n"
        "                  task (default: the tasks the run touched)\n"
        "  --out FILE      write the JSON report there (and print the summary)\n"
        "  --json          print the JSON report instead of the summary\n"
        "\n"
        "exit: 0 no error instances; 1 some; 2 usage; 3 database error\n";

int swerve_cmd_report(int argc, char **argv)
{
	static const struct option longopts[] = {{"db", required_argument, 0, 'd'},
	                                         {"run-id", required_argument, 0, 'r'},
	                                         {"tasks", required_argument, 0, 't'},
	                                         {"out", required_argument, 0, 'o'},
	                                         {"json", no_argument, 0, 'j'},
	                                         {"help", no_argument, 0, 'h'},
	                                         {0, 0, 0, 0}};
	const char *db_path = NULL, *run_name = NULL, *tasks_path = NULL, *out_path = NULL;
	int as_json = 0, c, exit_code = SWERVE_EXIT_OK;
	struct swerve_task_set *tasks = NULL;
	struct swerve_db *db = NULL;
	char *report = NULL;
	int64_t run;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': db_path = optarg; break;
		case 'r': run_name = optarg; break;
		case 't': tasks_path = optarg; break;
		case 'o': out_path = optarg; break;
		case 'j': as_json = 1; break;
		case 'h': fputs(usage_text, stdout); return SWERVE_EXIT_OK;
		default:
			return swerve_cli_fail("report", SWERVE_EXIT_USAGE,
			                       "bad option (see --help)");
		}
	}
	if (optind < argc)
		return swerve_cli_fail("report", SWERVE_EXIT_USAGE, "unexpected argument '%s'",
		                       argv[optind]);
	if (!db_path || !run_name)
		return swerve_cli_fail("report", SWERVE_EXIT_USAGE,
		                       "--db and --run-id are required (see --help)");
	if (tasks_path) {
		if (swerve_tasks_load(&tasks, tasks_path) < 0)
			return swerve_cli_fail("report", SWERVE_EXIT_USAGE, "%s",
			                       swerve_error_last());
		for (size_t i = 0; i < tasks->n_problems; i++)
			fprintf(stderr, "swerve report: %s\n", tasks->problems[i]);
	}
	struct swerve_db_opts dbo = SWERVE_DB_OPTS_INIT;
	dbo.create = 0;
	dbo.readonly = 1;
	size_t resolved = 0, errors = 0;
	int rc = swerve_db_open(&db, db_path, &dbo);
	if (rc == 0)
		rc = swerve_db_run_find(&run, db, run_name);
	if (rc == 0)
		rc = swerve_eval_report(&report, &resolved, &errors, db, run, tasks, NULL);
	if (rc < 0) {
		exit_code = swerve_cli_fail(
		        "report", rc == SWERVE_ENOTFOUND ? SWERVE_EXIT_USAGE : SWERVE_EXIT_INFRA,
		        "%s", swerve_error_last());
		goto done;
	}
	if (out_path) {
		FILE *f = fopen(out_path, "w");
		if (!f || fputs(report, f) < 0 || fclose(f) != 0) {
			exit_code = swerve_cli_fail("report", SWERVE_EXIT_INFRA, "%s: cannot write",
			                            out_path);
			goto done;
		}
	}
	if (as_json)
		printf("%s\n", report);
	else
		swerve_eval_print_summary(stdout, report);
	if (errors)
		exit_code = SWERVE_EXIT_SOME_FAILED;
done:
	free(report);
	swerve_db_close(db);
	swerve_task_set_free(tasks);
	return exit_code;
}
