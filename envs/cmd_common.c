/* cmd_common.c - option-value parsers shared by the subcommands (see cli.h).
 * Each prints "swerve <cmd>: <flag>: '<value>' is not ... (see swerve <cmd>
 * --help)" and returns SWERVE_EXIT_USAGE on bad input, 0 otherwise. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad(const char *cmd, const char *flag, const char *arg, const char *what)
{
	fprintf(stderr, "swerve %s: %s: '%s' is not %s (see swerve %s --help)\n", cmd, flag, arg,
	        what, cmd);
	return SWERVE_EXIT_USAGE;
}

int swerve_cli_int(int *out, const char *cmd, const char *flag, const char *arg, int lo, int hi)
{
	char *end, what[64];
	long v = strtol(arg, &end, 10);
	if (!*arg || *end || v < lo || v > hi) {
		snprintf(what, sizeof(what), "a number from %d to %d", lo, hi);
		return bad(cmd, flag, arg, what);
	}
	*out = (int)v;
	return 0;
}

int swerve_cli_seconds(double *out, const char *cmd, const char *flag, const char *arg)
{
	char *end;
	double v = strtod(arg, &end);
	if (!*arg || *end || !(v > 0) || v > 1e7)
		return bad(cmd, flag, arg, "a positive number of seconds");
	*out = v;
	return 0;
}

int swerve_cli_ws_mode(enum swerve_ws_mode *out, const char *cmd, const char *arg)
{
	static const struct {
		const char *name;
		enum swerve_ws_mode mode;
	} modes[] = {
	        {"auto", SWERVE_WS_AUTO}, {"overlay", SWERVE_WS_OVERLAY}, {"copy", SWERVE_WS_COPY}};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(arg, modes[i].name) == 0) {
			*out = modes[i].mode;
			return 0;
		}
	return bad(cmd, "--workspace", arg, "auto, overlay or copy");
}

int swerve_cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "swerve %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see swerve %s --help)\n", cmd);
	return SWERVE_EXIT_USAGE;
}
