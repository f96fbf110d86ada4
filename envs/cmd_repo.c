/* cmd_repo.c - `swerve repo`: manage the repository cache (envs/repo.h).
 *
 *   swerve repo add OWNER/NAME SOURCE     import a mirror from a path or URL
 *   swerve repo list                      cached repositories
 *   swerve repo fetch [OWNER/NAME...]     update from the recorded sources
 *   swerve repo resolve OWNER/NAME REV    print the commit id
 *   swerve repo checkout OWNER/NAME REV   print the pristine tree's path
 * Common option: --home DIR (default $SWERVE_HOME or ~/.cache/swerve). */
#include "cli.h"
#include "envs/envs.h"
#include "sandbox/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: swerve repo [--home DIR] add OWNER/NAME SOURCE\n"
	           "       swerve repo [--home DIR] list\n"
	           "       swerve repo [--home DIR] fetch [OWNER/NAME...]\n"
	           "       swerve repo [--home DIR] resolve OWNER/NAME REV\n"
	           "       swerve repo [--home DIR] checkout OWNER/NAME REV\n\n"
	           "Manages the repository cache: one bare mirror per OWNER/NAME, imported\n"
	           "from a local path (or a URL), and one read-only pristine tree per commit.\n"
	           "The cache is DIR, else $SWERVE_HOME, else ~/.cache/swerve.\n");
}

/* Maps a library error to an exit code: bad input is a usage-level failure of
 * the item (1), a broken host or cache is infrastructure (3). */
static int fail(const char *item, int code)
{
	int exit = (code == SWERVE_EINVAL || code == SWERVE_ENOTFOUND || code == SWERVE_EEXIST)
	                   ? SWERVE_EXIT_SOME_FAILED
	                   : SWERVE_EXIT_INFRA;
	(void)item;
	return swerve_cli_fail("repo", exit, "%s", swerve_error_last());
}

int swerve_cmd_repo(int argc, char **argv)
{
	struct swerve_repo_cache *cache = NULL;
	const char *home = NULL, *verb;
	int i = 1, rc = SWERVE_EXIT_OK;

	if (swerve_cli_wants_help(argc, argv)) {
		usage(stdout);
		return SWERVE_EXIT_OK;
	}
	if (i + 1 < argc && strcmp(argv[i], "--home") == 0) {
		home = argv[i + 1];
		i += 2;
	}
	if (i >= argc) {
		usage(stderr);
		return SWERVE_EXIT_USAGE;
	}
	verb = argv[i++];
	int nargs = argc - i;
	if ((strcmp(verb, "add") == 0 && nargs != 2) || (strcmp(verb, "list") == 0 && nargs != 0) ||
	    ((strcmp(verb, "resolve") == 0 || strcmp(verb, "checkout") == 0) && nargs != 2))
		return swerve_cli_fail("repo", SWERVE_EXIT_USAGE,
		                       "%s: wrong number of arguments (see swerve repo --help)",
		                       verb);
	if (strcmp(verb, "add") && strcmp(verb, "list") && strcmp(verb, "fetch") &&
	    strcmp(verb, "resolve") && strcmp(verb, "checkout"))
		return swerve_cli_fail("repo", SWERVE_EXIT_USAGE,
		                       "unknown action '%s' (add, list, fetch, resolve, checkout)",
		                       verb);
	if (swerve_repo_cache_open(&cache, home) < 0)
		return swerve_cli_fail("repo", SWERVE_EXIT_INFRA, "%s", swerve_error_last());

	if (strcmp(verb, "add") == 0) {
		if (swerve_repo_add(cache, argv[i], argv[i + 1]) < 0)
			rc = fail(argv[i], swerve_error_code());
		else
			printf("added %s from %s\n", argv[i], argv[i + 1]);
	} else if (strcmp(verb, "list") == 0) {
		char **names;
		size_t n;
		if (swerve_repo_list(&names, &n, cache) < 0) {
			rc = fail("list", swerve_error_code());
		} else {
			for (size_t k = 0; k < n; k++)
				printf("%s\n", names[k]);
			swerve_repo_list_free(names, n);
		}
	} else if (strcmp(verb, "fetch") == 0) {
		char **names = NULL;
		size_t n = 0;
		if (nargs == 0 && swerve_repo_list(&names, &n, cache) < 0) {
			rc = fail("fetch", swerve_error_code());
		} else {
			size_t total = nargs ? (size_t)nargs : n;
			for (size_t k = 0; k < total; k++) {
				const char *name = nargs ? argv[i + (int)k] : names[k];
				if (swerve_repo_fetch(cache, name) < 0) {
					int e = fail(name, swerve_error_code());
					rc = rc > e ? rc : e;
				} else {
					printf("fetched %s\n", name);
				}
			}
			swerve_repo_list_free(names, n);
		}
	} else if (strcmp(verb, "resolve") == 0) {
		char id[41];
		if (swerve_repo_resolve(id, cache, argv[i], argv[i + 1]) < 0)
			rc = fail(argv[i], swerve_error_code());
		else
			printf("%s\n", id);
	} else {
		char *path;
		if (swerve_repo_pristine(&path, NULL, cache, argv[i], argv[i + 1]) < 0) {
			rc = fail(argv[i], swerve_error_code());
		} else {
			printf("%s\n", path);
			free(path);
		}
	}
	swerve_repo_cache_free(cache);
	return rc;
}
