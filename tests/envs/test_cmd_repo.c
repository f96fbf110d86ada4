/* test_cmd_repo.c - `swerve repo`: add, list, fetch, resolve, checkout, and
 * its exit codes and one-line errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envs/cli.h"
#include "tests/support/gitfix.h"
#include "tests/support/support.h"

static char *tmp, src[512], home[512];
static char c[3][41];

static void setup(void)
{
	tmp = ts_mkdtemp();
	snprintf(src, sizeof(src), "%s/src", tmp);
	snprintf(home, sizeof(home), "%s/home", tmp);
	gf_standard(c, src);
}

static void teardown(void)
{
	ts_rmtree(tmp);
	free(tmp);
}

TestSuite(cmd_repo, .init = setup, .fini = teardown);

static int repo(char **out, char **err, const char *args)
{
	return ts_sh(out, err, "%s repo --home '%s' %s", ts_swerve_bin(), home, args);
}

Test(cmd_repo, add_list_resolve_checkout)
{
	char *out, *err, args[1024];
	snprintf(args, sizeof(args), "add acme/widget '%s'", src);
	cr_assert_eq(repo(&out, NULL, args), 0);
	cr_assert(strncmp(out, "added acme/widget from ", 23) == 0, "%s", out);
	free(out);
	cr_assert_eq(repo(&out, NULL, "list"), 0);
	cr_assert_str_eq(out, "acme/widget\n");
	free(out);
	cr_assert_eq(repo(&out, NULL, "resolve acme/widget v1.0"), 0);
	cr_assert_eq(strncmp(out, c[2], 40), 0, "%s", out);
	free(out);
	snprintf(args, sizeof(args), "checkout acme/widget %s", c[0]);
	cr_assert_eq(repo(&out, NULL, args), 0);
	cr_assert(strstr(out, c[0]) && strstr(out, "/trees/acme/widget/"), "%s", out);
	free(out);
	cr_assert_eq(repo(&out, NULL, "fetch"), 0);
	cr_assert_str_eq(out, "fetched acme/widget\n");
	free(out);
	/* errors: one line naming the item; bad input exits 1, usage 2 */
	cr_assert_eq(repo(NULL, &err, args + 0 /* checkout again is fine */), 0);
	free(err);
	cr_assert_eq(repo(NULL, &err, "resolve acme/widget deadbeef00"), SWERVE_EXIT_SOME_FAILED);
	cr_assert(strstr(err, "swerve repo: repo acme/widget: commit deadbeef00"), "%s", err);
	free(err);
	snprintf(args, sizeof(args), "add acme/widget '%s'", src);
	cr_assert_eq(repo(NULL, &err, args), SWERVE_EXIT_SOME_FAILED);
	cr_assert(strstr(err, "already in the cache"), "%s", err);
	free(err);
	cr_assert_eq(repo(NULL, &err, "add ../evil /tmp"), SWERVE_EXIT_SOME_FAILED);
	cr_assert(strstr(err, "not a valid owner/name"), "%s", err);
	free(err);
	cr_assert_eq(repo(NULL, &err, "frob"), SWERVE_EXIT_USAGE);
	free(err);
	cr_assert_eq(repo(NULL, &err, "add onlyone"), SWERVE_EXIT_USAGE);
	free(err);
	cr_assert_eq(repo(&out, NULL, "--help"), 0);
	cr_assert(strstr(out, "usage: swerve repo"), "%s", out);
	free(out);
}
