/* main.c - the `swerve` command: dispatches to subcommands (envs/cmd_*.c).
 * Exit codes are documented in envs/cli.h and README.md. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int swerve_cmd_version(int argc, char **argv);
int swerve_cmd_db(int argc, char **argv);
int swerve_cmd_exec(int argc, char **argv);
int swerve_cmd_repo(int argc, char **argv);
int swerve_cmd_eval(int argc, char **argv);
int swerve_cmd_submit(int argc, char **argv);
int swerve_cmd_work(int argc, char **argv);
int swerve_cmd_report(int argc, char **argv);
int swerve_cmd_validate(int argc, char **argv);
int swerve_cmd_grade(int argc, char **argv);
int swerve_cmd_serve(int argc, char **argv);

/* The subcommand table: one row per envs/cmd_<name>.c. */
static const struct swerve_cmd commands[] = {
        {"version", "print the version and the libraries swerve was built with",
         swerve_cmd_version},
        {"db", "create, inspect and export the SQLite store (init, stats, export)", swerve_cmd_db},
        {"exec", "run one command in the sandbox and print its verdict (--json)", swerve_cmd_exec},
        {"repo", "manage the repository cache (add, list, fetch, resolve, checkout)",
         swerve_cmd_repo},
        {"eval", "evaluate SWE-bench predictions (resumable; SWE-bench reports)", swerve_cmd_eval},
        {"submit", "enqueue RL rollouts (JSONL) into a db for swerve work", swerve_cmd_submit},
        {"work", "serve the db queue with sandboxed workers until stopped", swerve_cmd_work},
        {"report", "the SWE-bench run report of a run, from the db", swerve_cmd_report},
        {"validate", "dataset QA: tasks must fail without their gold patch and pass with it",
         swerve_cmd_validate},
        {"grade", "parse a test log and grade it against a task, offline (statuses, reward)",
         swerve_cmd_grade},
        {"serve", "keep warm sandboxes and run `swerve exec` for the swerve launcher",
         swerve_cmd_serve},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: swerve <command> [options]\n"
	           "       swerve <command> --help\n"
	           "       swerve --version\n\n"
	           "Sandboxed software-engineering RL environment runner.\n\n"
	           "commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nexit codes: 0 success, 1 some items failed, 2 usage error, "
	           "3 infrastructure error\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return SWERVE_EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return SWERVE_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
		return swerve_cmd_version(1, argv + 1);
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "swerve: unknown command '%s' (see swerve --help)\n", argv[1]);
	return SWERVE_EXIT_USAGE;
}
