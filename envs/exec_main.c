/* exec_main.c - swerve-exec: `swerve exec` alone, for the launcher
 * (envs/launch_main.c) when no server listens. It links only the sandbox,
 * libseccomp and jansson (swerve-core links libgit2, SQLite and 19 more
 * libraries, ~3 ms to load), so a one-shot `swerve exec` starts fast.
 * Arguments as `swerve exec` (argv[1] is "exec"). */
#include "cli.h"

#include <string.h>

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "exec") == 0)
		return swerve_exec_cli(argc - 1, argv + 1, NULL, 0);
	return swerve_cli_fail("exec", SWERVE_EXIT_USAGE, "swerve-exec runs only `swerve exec`");
}
