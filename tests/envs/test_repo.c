/* test_repo.c - repository cache: import, list, fetch, resolve, pristine
 * trees (content fidelity, atomicity, once-only checkout across threads and
 * processes). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "envs/envs.h"
#include "sandbox/error.h"
#include "tests/support/gitfix.h"
#include "tests/support/support.h"

static char *tmp, src[512], home[512];
static char c[3][41];
static struct swerve_repo_cache *cache;

static void setup(void)
{
	tmp = ts_mkdtemp();
	snprintf(src, sizeof(src), "%s/src", tmp);
	snprintf(home, sizeof(home), "%s/home", tmp);
	gf_standard(c, src);
	cr_assert_eq(swerve_repo_cache_open(&cache, home), 0, "%s", swerve_error_last());
	cr_assert_eq(swerve_repo_add(cache, "acme/widget", src), 0, "%s", swerve_error_last());
}

static void teardown(void)
{
	swerve_repo_cache_free(cache);
	ts_rmtree(tmp);
	free(tmp);
}

TestSuite(repo, .init = setup, .fini = teardown);

Test(repo, names_are_validated)
{
	cr_assert(swerve_repo_name_valid("django/django"));
	cr_assert(swerve_repo_name_valid("a-b/c.d_e"));
	const char *bad[] = {"",   "django", "a/b/c", "../etc", "a/..",     "a/.git",
	                     "/a", "a/",     "a b/c", "a/b;rm", ".hidden/x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert(!swerve_repo_name_valid(bad[i]), "%s", bad[i]);
		cr_assert_eq(swerve_repo_add(cache, bad[i], src), SWERVE_EINVAL, "%s", bad[i]);
		cr_assert(strstr(swerve_error_last(), "not a valid owner/name"), "%s",
		          swerve_error_last());
	}
}

Test(repo, add_is_a_bare_mirror_and_rejects_duplicates)
{
	char *gd, path[1024];
	struct stat st;
	cr_assert_eq(swerve_repo_git_dir(&gd, cache, "acme/widget"), 0);
	snprintf(path, sizeof(path), "%s/HEAD", gd);
	cr_assert_eq(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/refs/tags/v1.0", gd);
	char *out;
	cr_assert_eq(ts_sh(&out, NULL, "git --git-dir='%s' rev-parse v1.0^{commit}", gd), 0);
	cr_assert_eq(strncmp(out, c[2], 40), 0, "%s", out);
	free(out);
	cr_assert_eq(swerve_repo_add(cache, "acme/widget", src), SWERVE_EEXIST);
	cr_assert(strstr(swerve_error_last(), "acme/widget: already in the cache"), "%s",
	          swerve_error_last());
	/* no temporary directory left behind */
	cr_assert_eq(ts_sh(&out, NULL, "ls '%s/repos/acme'", home), 0);
	cr_assert_str_eq(out, "widget.git\n");
	free(out);
	free(gd);
}

Test(repo, add_from_missing_source_leaves_nothing)
{
	char *out;
	cr_assert_eq(swerve_repo_add(cache, "acme/ghost", "/nonexistent/repo"), SWERVE_ENOTFOUND);
	cr_assert(strstr(swerve_error_last(), "repo acme/ghost: source /nonexistent/repo"), "%s",
	          swerve_error_last());
	char empty[1024];
	snprintf(empty, sizeof(empty), "%s/notarepo", tmp);
	mkdir(empty, 0755);
	cr_assert_lt(swerve_repo_add(cache, "acme/ghost", empty), 0);
	cr_assert(strstr(swerve_error_last(), "acme/ghost"), "%s", swerve_error_last());
	cr_assert_eq(ts_sh(&out, NULL, "ls '%s/repos/acme'", home), 0);
	cr_assert_str_eq(out, "widget.git\n");
	free(out);
}

Test(repo, list_is_sorted)
{
	char **names;
	size_t n;
	cr_assert_eq(swerve_repo_add(cache, "aaa/first", src), 0, "%s", swerve_error_last());
	cr_assert_eq(swerve_repo_list(&names, &n, cache), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(names[0], "aaa/first");
	cr_assert_str_eq(names[1], "acme/widget");
	swerve_repo_list_free(names, n);
}

Test(repo, resolve_exact_refs_abbrev_and_unknown)
{
	char id[41], abbrev[12];
	cr_assert_eq(swerve_repo_resolve(id, cache, "acme/widget", c[0]), 0);
	cr_assert_str_eq(id, c[0]);
	cr_assert_eq(swerve_repo_resolve(id, cache, "acme/widget", "v1.0"), 0);
	cr_assert_str_eq(id, c[2]);
	snprintf(abbrev, sizeof(abbrev), "%.10s", c[1]);
	cr_assert_eq(swerve_repo_resolve(id, cache, "acme/widget", abbrev), 0);
	cr_assert_str_eq(id, c[1]);
	cr_assert_eq(swerve_repo_resolve(id, cache, "acme/widget",
	                                 "0123456789012345678901234567890123456789"),
	             SWERVE_ENOTFOUND);
	cr_assert(strstr(swerve_error_last(), "repo acme/widget: commit 0123456789"), "%s",
	          swerve_error_last());
	cr_assert_eq(swerve_repo_resolve(id, cache, "acme/widget", "no-such-branch"),
	             SWERVE_ENOTFOUND);
	cr_assert_eq(swerve_repo_resolve(id, cache, "acme/nothere", c[0]), SWERVE_ENOTFOUND);
	cr_assert(strstr(swerve_error_last(), "repo acme/nothere: not in the cache"), "%s",
	          swerve_error_last());
}

Test(repo, fetch_brings_new_commits)
{
	char id[41], c3[41];
	struct gf_entry e[] = {{"later.txt", GF_FILE, "later\n", 0}};
	gf_commit(c3, src, "c3: later", e, 1);
	cr_assert_eq(swerve_repo_resolve(id, cache, "acme/widget", c3), SWERVE_ENOTFOUND);
	cr_assert_eq(swerve_repo_fetch(cache, "acme/widget"), 0, "%s", swerve_error_last());
	cr_assert_eq(swerve_repo_resolve(id, cache, "acme/widget", c3), 0, "%s",
	             swerve_error_last());
	cr_assert_eq(swerve_repo_fetch(cache, "acme/nothere"), SWERVE_ENOTFOUND);
}

Test(repo, pristine_tree_matches_git_checkout_byte_for_byte)
{
	char *tree, *out, gitco[1024];
	int did;
	cr_assert_eq(swerve_repo_pristine(&tree, &did, cache, "acme/widget", c[0]), 0, "%s",
	             swerve_error_last());
	cr_assert_eq(did, 1);
	/* compare with git's own checkout of the same commit (links, modes, CRLF, no-EOL) */
	snprintf(gitco, sizeof(gitco), "%s/gitco", tmp);
	cr_assert_eq(ts_sh(NULL, NULL,
	                   "git -c core.autocrlf=false clone -q '%s' '%s' && cd '%s' && "
	                   "git -c advice.detachedHead=false checkout -q %s && rm -rf .git",
	                   src, gitco, gitco, c[0]),
	             0);
	cr_assert_eq(
	        ts_sh(&out, NULL, "diff -r --no-dereference '%s' '%s' && echo SAME", tree, gitco),
	        0, "%s", out);
	free(out);
	struct stat st;
	char p[1024];
	snprintf(p, sizeof(p), "%s/link", tree);
	cr_assert_eq(lstat(p, &st), 0);
	cr_assert(S_ISLNK(st.st_mode));
	snprintf(p, sizeof(p), "%s/run.sh", tree);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert(st.st_mode & 0100, "run.sh lost its exec bit");
	size_t len;
	snprintf(p, sizeof(p), "%s/crlf.txt", tree);
	char *crlf = ts_read_file(p, &len);
	cr_assert_str_eq(crlf, "one\r\ntwo\r\nthree\r\n");
	free(crlf);
	snprintf(p, sizeof(p), "%s/data.bin", tree);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_size, 14);
	/* a second call reuses it */
	char *again;
	cr_assert_eq(swerve_repo_pristine(&again, &did, cache, "acme/widget", c[0]), 0);
	cr_assert_eq(did, 0);
	cr_assert_str_eq(again, tree);
	free(again);
	free(tree);
}

Test(repo, pristine_of_later_commit_has_rename_and_deletion)
{
	char *tree, p[1024];
	struct stat st;
	cr_assert_eq(swerve_repo_pristine(&tree, NULL, cache, "acme/widget", "v1.0"), 0);
	cr_assert(strstr(tree, c[2]), "%s", tree);
	snprintf(p, sizeof(p), "%s/new_name.txt", tree);
	cr_assert_eq(stat(p, &st), 0);
	snprintf(p, sizeof(p), "%s/old_name.txt", tree);
	cr_assert_neq(stat(p, &st), 0);
	snprintf(p, sizeof(p), "%s/src/b.py", tree);
	cr_assert_neq(stat(p, &st), 0);
	free(tree);
}

Test(repo, pristine_of_unknown_commit_is_clear_error)
{
	char *tree;
	cr_assert_eq(swerve_repo_pristine(&tree, NULL, cache, "acme/widget",
	                                  "ffffffffffffffffffffffffffffffffffffffff"),
	             SWERVE_ENOTFOUND);
	cr_assert(strstr(swerve_error_last(), "commit ffffffff"), "%s", swerve_error_last());
}

Test(repo, stale_temporary_checkout_is_cleaned)
{
	char p[1024], *tree, *out;
	snprintf(p, sizeof(p), "%s/trees/acme/widget/%s.tmp.99999.1/junk", home, c[1]);
	ts_write_file(p, "x", 1);
	cr_assert_eq(swerve_repo_pristine(&tree, NULL, cache, "acme/widget", c[1]), 0);
	cr_assert_eq(ts_sh(&out, NULL, "ls '%s/trees/acme/widget'", home), 0);
	cr_assert(!strstr(out, ".tmp."), "%s", out);
	free(out);
	free(tree);
}

/* --- concurrency: 8 episodes on one commit check it out once --------------- */

struct worker {
	int did, rc;
	char *path;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct swerve_repo_cache *own;
	if (swerve_repo_cache_open(&own, home) < 0) {
		w->rc = -1;
		return NULL;
	}
	w->rc = swerve_repo_pristine(&w->path, &w->did, own, "acme/widget", c[2]);
	swerve_repo_cache_free(own);
	return NULL;
}

Test(repo, eight_threads_and_processes_check_out_once)
{
	enum { NTHREADS = 4, NPROCS = 4 };
	pthread_t th[NTHREADS];
	struct worker w[NTHREADS];
	pid_t pids[NPROCS];
	int pipefd[2], total = 0;

	cr_assert_eq(pipe(pipefd), 0);
	/* processes: each reports whether it did the checkout */
	for (int i = 0; i < NPROCS; i++) {
		pids[i] = fork();
		cr_assert_geq(pids[i], 0);
		if (pids[i] == 0) {
			struct worker cw = {0};
			worker_main(&cw);
			char b = cw.rc == 0 ? (char)('0' + cw.did) : 'E';
			if (write(pipefd[1], &b, 1) != 1)
				_exit(2);
			_exit(0);
		}
	}
	for (int i = 0; i < NTHREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		pthread_create(&th[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].rc, 0, "%s", swerve_error_last());
		cr_assert(strstr(w[i].path, c[2]));
		total += w[i].did;
		free(w[i].path);
	}
	close(pipefd[1]);
	for (int i = 0; i < NPROCS; i++) {
		char b;
		int st;
		cr_assert_eq(read(pipefd[0], &b, 1), 1);
		cr_assert_neq(b, 'E');
		total += b - '0';
		waitpid(pids[i], &st, 0);
		cr_assert_eq(st, 0);
	}
	cr_assert_eq(total, 1, "the tree was checked out %d times", total);
}
