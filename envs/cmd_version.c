/* cmd_version.c - `swerve version`: the version and linked library versions. */
#include "cli.h"

#include <git2.h>
#include <jansson.h>
#include <seccomp.h>
#include <sqlite3.h>
#include <stdio.h>

int swerve_cmd_version(int argc, char **argv)
{
	int maj, min, rev;
	const struct scmp_version *sv;

	if (swerve_cli_wants_help(argc, argv)) {
		printf("usage: swerve version\n\nPrints swerve's version and the "
		       "versions of libgit2, libseccomp, SQLite and jansson it runs with.\n");
		return SWERVE_EXIT_OK;
	}
	if (argc > 1)
		return swerve_cli_fail("version", SWERVE_EXIT_USAGE, "unexpected argument '%s'",
		                       argv[1]);
	git_libgit2_version(&maj, &min, &rev);
	sv = seccomp_version();
	printf("swerve %s\n", SWERVE_VERSION);
	printf("  libgit2 %d.%d.%d, libseccomp %u.%u.%u, SQLite %s, jansson %s\n", maj, min, rev,
	       sv ? sv->major : 0, sv ? sv->minor : 0, sv ? sv->micro : 0, sqlite3_libversion(),
	       jansson_version_str());
	return SWERVE_EXIT_OK;
}
