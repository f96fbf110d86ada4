/* cmd_cli.c - helpers every command-line program of swerve links (the full
 * command swerve-core and the lean swerve-exec): help detection and the
 * one-line error format (envs/cli.h). */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int swerve_cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return 0;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return 1;
	}
	return 0;
}

int swerve_cli_fail(const char *cmd, int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "swerve %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}
