/* cli.h - the `swerve` command line: subcommand registry and exit codes.
 *
 * Each subcommand lives in envs/cmd_<name>.c and exports
 * `int swerve_cmd_<name>(int argc, char **argv)`, where argv[0] is the
 * subcommand's name. It returns one of the exit codes below, prints its own
 * `--help`, and reports errors as one line on stderr:
 *   swerve <cmd>: <item>: <reason>
 * To add one, write the file and add a row to the table in envs/main.c. */
#ifndef SWERVE_CLI_H
#define SWERVE_CLI_H

#define SWERVE_VERSION "0.1.0"

enum swerve_exit {
	SWERVE_EXIT_OK = 0,          /* everything succeeded */
	SWERVE_EXIT_SOME_FAILED = 1, /* ran, but some items failed (bad input, failed episodes) */
	SWERVE_EXIT_USAGE = 2,       /* bad command line */
	SWERVE_EXIT_INFRA = 3,       /* infrastructure error: nothing trustworthy was produced */
};

struct swerve_cmd {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
};

/* True when argv holds -h or --help before any `--`. */
int swerve_cli_wants_help(int argc, char **argv);

/* Prints "swerve <cmd>: <message>" to stderr; returns code for chaining. */
int swerve_cli_fail(const char *cmd, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* `swerve exec` on a given sandbox context (NULL: a new one for this run);
 * prints what `swerve exec` prints and returns its exit code. The server
 * (envs/cmd_serve.c) calls it on its workers' warm contexts, with the
 * client's connection as cancel_fd (the run is cancelled when the client
 * goes away; 0: none). */
struct swerve_sandbox;
int swerve_exec_cli(int argc, char **argv, struct swerve_sandbox *ctx, int cancel_fd);

/* Option values (envs/cmd_common.c): 0, or SWERVE_EXIT_USAGE after a
 * one-line message naming the command, the flag and the value. */
#include "envs/workspace.h"
int swerve_cli_int(int *out, const char *cmd, const char *flag, const char *arg, int lo, int hi);
int swerve_cli_seconds(double *out, const char *cmd, const char *flag, const char *arg);
int swerve_cli_ws_mode(enum swerve_ws_mode *out, const char *cmd, const char *arg);
/* "swerve <cmd>: <message> (see swerve <cmd> --help)"; returns SWERVE_EXIT_USAGE. */
int swerve_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
