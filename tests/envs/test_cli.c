/* test_cli.c - the `swerve` command's help, version and exit codes. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "envs/cli.h"
#include "tests/support/support.h"

static int swerve(char **out, char **err, const char *args)
{
	return ts_sh(out, err, "%s %s", ts_swerve_bin(), args);
}

Test(cli, version_prints_version_and_libraries)
{
	char *out;
	cr_assert_eq(swerve(&out, NULL, "--version"), 0);
	cr_assert(strstr(out, "swerve " SWERVE_VERSION), "%s", out);
	cr_assert(strstr(out, "libgit2"), "%s", out);
	free(out);
}

Test(cli, help_lists_commands_and_exit_codes)
{
	char *out;
	cr_assert_eq(swerve(&out, NULL, "--help"), 0);
	cr_assert(strstr(out, "version"), "%s", out);
	cr_assert(strstr(out, "exit codes"), "%s", out);
	free(out);
}

Test(cli, no_arguments_is_usage_error)
{
	char *err;
	cr_assert_eq(swerve(NULL, &err, ""), SWERVE_EXIT_USAGE);
	cr_assert(strstr(err, "usage"), "%s", err);
	free(err);
}

Test(cli, unknown_command_is_named_usage_error)
{
	char *err;
	cr_assert_eq(swerve(NULL, &err, "frobnicate"), SWERVE_EXIT_USAGE);
	cr_assert(strstr(err, "unknown command 'frobnicate'"), "%s", err);
	free(err);
}

Test(cli, subcommand_help_and_bad_argument)
{
	char *out, *err;
	cr_assert_eq(swerve(&out, NULL, "version --help"), 0);
	cr_assert(strstr(out, "usage: swerve version"), "%s", out);
	cr_assert_eq(swerve(NULL, &err, "version extra"), SWERVE_EXIT_USAGE);
	cr_assert(strstr(err, "swerve version: unexpected argument 'extra'"), "%s", err);
	free(out);
	free(err);
}
