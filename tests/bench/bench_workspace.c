/* bench_workspace.c - issue 4's benchmark: episode workspace materialisation
 * for synthetic repositories of 1k, 10k and 50k files, side by side in one
 * run with `git worktree add` and `cp -a` of the same pristine tree; and
 * applying a ~100-line patch with libgit2 (beside `git apply` and GNU patch).
 *
 * swerve's workspace = swerve_workspace_new (per-episode directories) + the
 * overlay mount the sandbox performs + a first lookup through it; the
 * benchmark mounts in its own private mount namespace (needs root or user
 * namespaces) so the mount's cost is counted, then unmounts and frees.
 * Goals (issue 4): median <= 2 ms per workspace, flat in repository size,
 * >= 100x faster than git worktree add at 10k files; patch <= 1 ms. */
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "envs/envs.h"
#include "sandbox/sandbox.h"
#include "tests/support/support.h"

extern char **environ;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what)
{
	const git_error *e = git_error_last();
	fprintf(stderr, "bench_workspace: %s: %s / %s\n", what, swerve_error_last(),
	        e ? e->message : "");
	exit(1);
}

/* Runs argv quietly; exits the benchmark on failure. */
static void run(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0)
		die(argv[0]);
	posix_spawn_file_actions_destroy(&fa);
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "bench_workspace: %s %s failed\n", argv[0], argv[1]);
		exit(1);
	}
}

/* A bare repository at path with one commit of n files (100 per directory,
 * distinct contents); returns the commit id in sha. */
static void make_repo(char sha[41], const char *path, int n)
{
	git_repository *repo;
	git_treebuilder *root, *dir = NULL;
	git_oid blob, tree, commit;
	git_signature *sig;
	char name[64], content[128];

	if (git_repository_init(&repo, path, 1) < 0 || git_treebuilder_new(&root, repo, NULL) < 0)
		die("init");
	for (int i = 0; i <= n; i++) {
		if (i % 100 == 0 || i == n) {
			if (dir) {
				snprintf(name, sizeof(name), "pkg%04d", i / 100 - (i % 100 == 0));
				if (git_treebuilder_write(&tree, dir) < 0 ||
				    git_treebuilder_insert(NULL, root, name, &tree,
				                           GIT_FILEMODE_TREE) < 0)
					die("tree");
				git_treebuilder_free(dir);
				dir = NULL;
			}
			if (i == n)
				break;
			if (git_treebuilder_new(&dir, repo, NULL) < 0)
				die("treebuilder");
		}
		int len = snprintf(content, sizeof(content),
		                   "# module %d\ndef f(x):\n    return x + %d\n", i, i);
		snprintf(name, sizeof(name), "mod%05d.py", i);
		if (git_blob_create_from_buffer(&blob, repo, content, (size_t)len) < 0 ||
		    git_treebuilder_insert(NULL, dir, name, &blob, GIT_FILEMODE_BLOB) < 0)
			die("blob");
	}
	if (git_treebuilder_write(&tree, root) < 0)
		die("root");
	git_tree *t;
	git_tree_lookup(&t, repo, &tree);
	git_signature_new(&sig, "Bench", "bench@example.com", 1700000000, 0);
	if (git_commit_create_v(&commit, repo, "refs/heads/main", sig, sig, NULL, "synthetic", t,
	                        0) < 0)
		die("commit");
	git_repository_set_head(repo, "refs/heads/main");
	git_oid_tostr(sha, 41, &commit);
	git_tree_free(t);
	git_signature_free(sig);
	git_treebuilder_free(root);
	git_repository_free(repo);
}

static int can_mount;

static const char *load_avg(void)
{
	static char buf[128];
	FILE *f = fopen("/proc/loadavg", "r");
	if (!f || !fgets(buf, sizeof(buf), f))
		snprintf(buf, sizeof(buf), "?\n");
	if (f)
		fclose(f);
	return buf;
}

/* One swerve workspace: create, mount (as the sandbox does), look up a
 * file, then unmount and free. Returns the create..lookup time in ms. */
static double swerve_once(struct swerve_repo_cache *cache, const char *name, const char *sha,
                          const char *mnt, double *total)
{
	struct swerve_workspace *ws;
	struct swerve_ws_opts o = SWERVE_WS_OPTS_INIT;
	char opts[8192], probe[4096];
	struct stat st;

	o.mode = SWERVE_WS_OVERLAY;
	double t0 = now_ms();
	if (swerve_workspace_new(&ws, cache, name, sha, &o) < 0)
		die("workspace");
	if (can_mount) {
		if (snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", ws->lower[0],
		             ws->upper, ws->work) >= (int)sizeof(opts))
			die("path too long");
		if (mount("overlay", mnt, "overlay", 0, opts) < 0)
			die("mount overlay");
	}
	if (snprintf(probe, sizeof(probe), "%s/pkg0000/mod00000.py",
	             can_mount ? mnt : ws->pristine) >= (int)sizeof(probe))
		die("path too long");
	if (stat(probe, &st) < 0)
		die("lookup");
	double t1 = now_ms();
	if (can_mount && umount2(mnt, 0) < 0)
		die("umount");
	swerve_workspace_free(ws);
	*total = now_ms() - t0;
	return t1 - t0;
}

static void bench_workspaces(const char *tmp)
{
	static const int sizes[] = {1000, 10000, 50000};
	struct swerve_repo_cache *cache;
	char home[4096], mnt[4096];

	snprintf(home, sizeof(home), "%s/home", tmp);
	snprintf(mnt, sizeof(mnt), "%s/mnt", tmp);
	mkdir(mnt, 0755);
	if (swerve_repo_cache_open(&cache, home) < 0)
		die("cache");
	can_mount =
	        unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
	printf("host load average at start: %s", load_avg());
	printf("workspace materialisation (median of N runs, ms; %s)\n",
	       can_mount ? "swerve = workspace_new + overlay mount + first lookup"
	                 : "NO MOUNT PRIVILEGE: swerve = workspace_new only");
	printf("%7s | %10s %10s %8s | %10s %4s | %12s %4s | %10s | %9s %9s\n", "files", "swerve",
	       "+teardown", "N", "cp -a", "N", "git worktree", "N", "1st checkout", "vs cp -a",
	       "vs wtree");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int n = sizes[s], nsw = 300, nslow = n >= 50000 ? 3 : n >= 10000 ? 5 : 15;
		char src[4096], name[64], sha[41], dst[4096], *pristine;
		double sw[300], swt[300], cp[20], wt[20];

		snprintf(src, sizeof(src), "%s/src%d.git", tmp, n);
		snprintf(name, sizeof(name), "bench/r%d", n);
		make_repo(sha, src, n);
		if (swerve_repo_add(cache, name, src) < 0)
			die("repo add");
		double t0 = now_ms();
		if (swerve_repo_pristine(&pristine, NULL, cache, name, sha) < 0)
			die("pristine");
		double first = now_ms() - t0;
		for (int i = 0; i < nsw; i++)
			sw[i] = swerve_once(cache, name, sha, mnt, &swt[i]);
		snprintf(dst, sizeof(dst), "%s/cp", tmp);
		for (int i = 0; i < nslow; i++) {
			char *a[] = {"cp", "-a", pristine, dst, NULL},
			     *rm[] = {"rm", "-rf", dst, NULL};
			t0 = now_ms();
			run(a);
			cp[i] = now_ms() - t0;
			run(rm);
		}
		snprintf(dst, sizeof(dst), "%s/wt", tmp);
		for (int i = 0; i < nslow; i++) {
			char gd[4200];
			snprintf(gd, sizeof(gd), "--git-dir=%s", src);
			char *a[] = {"git",      gd,  "worktree", "add", "-q",
			             "--detach", dst, sha,        NULL};
			char *rm[] = {"git", gd, "worktree", "remove", "--force", dst, NULL};
			t0 = now_ms();
			run(a);
			wt[i] = now_ms() - t0;
			run(rm);
		}
		double msw = median(sw, nsw), mcp = median(cp, nslow), mwt = median(wt, nslow);
		printf("%7d | %10.3f %10.3f %8d | %10.1f %4d | %12.1f %4d | %10.1f | %8.0fx "
		       "%8.0fx\n",
		       n, msw, median(swt, nsw), nsw, mcp, nslow, mwt, nslow, first, mcp / msw,
		       mwt / msw);
		fflush(stdout);
		free(pristine);
	}
	swerve_repo_cache_free(cache);
}

static double cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Puts the original file back as a new inode (unlink + create), so no
 * truncate-triggered writeback of the previous round lands in a timed one. */
static void restore(const char *path, const char *data, size_t len)
{
	unlink(path);
	FILE *f = fopen(path, "w");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		die("restore");
}

/* Median wall and CPU time of swerve_patch_apply_dir on the tree at dir. */
static void time_libgit2(double *wall, double *cpu, const char *dir, const char *scratch,
                         const char *patch, size_t plen, const char *orig, size_t olen)
{
	enum { N = 500 };
	static double w[N], c[N];
	char path[4200];
	snprintf(path, sizeof(path), "%s/src/big.py", dir);
	for (int i = 0; i < N; i++) {
		struct swerve_patch_outcome o;
		restore(path, orig, olen);
		double t0 = now_ms(), c0 = cpu_ms();
		if (swerve_patch_apply_dir(&o, dir, patch, plen, scratch, NULL) < 0 ||
		    o.method != SWERVE_PATCH_GIT_APPLY)
			die(o.reason);
		w[i] = now_ms() - t0;
		c[i] = cpu_ms() - c0;
	}
	*wall = median(w, N);
	*cpu = median(c, N);
}

/* A 500-line file and a patch of about 100 lines (10 hunks) against it. */
static void bench_patch(const char *tmp)
{
	char dir[4096], path[4096], *orig, *patch;
	size_t olen, plen;
	int nslow = 50;
	double ga[50], gp[50], t0, lw, lc, sw = -1, sc = -1;

	snprintf(dir, sizeof(dir), "%s/pt", tmp);
	snprintf(path, sizeof(path), "%s/pt/src/big.py", tmp);
	if (ts_sh(NULL, NULL,
	          "set -e; mkdir -p '%s/src'; cd '%s'; git init -q .; "
	          "for i in $(seq 1 500); do echo \"value_$i = compute($i)  # line $i\"; done > "
	          "src/big.py; git add .; git -c user.name=b -c user.email=b@b commit -qm base; "
	          "sed -i '0~50s/compute(\\([0-9]*\\))/compute(\\1) * 2/; "
	          "0~50s/$/ changed/; 1~50s/# line/# LINE/' src/big.py; "
	          "git diff > ../bench.diff; git checkout -q src/big.py",
	          dir, dir) != 0)
		die("patch fixture");
	char pp[4096];
	snprintf(pp, sizeof(pp), "%s/bench.diff", tmp);
	patch = ts_read_file(pp, &plen);
	orig = ts_read_file(path, &olen);
	int lines = 0, hunks = 0;
	for (size_t i = 0; i < plen; i++) {
		lines += patch[i] == '\n';
		hunks += patch[i] == '\n' && strncmp(patch + i + 1, "@@ ", 3) == 0;
	}
	time_libgit2(&lw, &lc, dir, tmp, patch, plen, orig, olen);
	/* the same on tmpfs (where episode scratch directories can live) */
	char shm[64] = "/dev/shm/swerve-bench-XXXXXX";
	if (mkdtemp(shm)) {
		char sdir[200];
		snprintf(sdir, sizeof(sdir), "%s/pt", shm);
		if (ts_sh(NULL, NULL, "cp -a '%s' '%s'", dir, sdir) == 0)
			time_libgit2(&sw, &sc, sdir, shm, patch, plen, orig, olen);
		ts_rmtree(shm);
	}
	for (int i = 0; i < nslow; i++) {
		char *a[] = {"git", "-C", dir, "apply", pp, NULL};
		restore(path, orig, olen);
		t0 = now_ms();
		run(a);
		ga[i] = now_ms() - t0;
		char *b[] = {"patch", "-s", "-d", dir, "-p1", "-i", pp, NULL};
		restore(path, orig, olen);
		t0 = now_ms();
		run(b);
		gp[i] = now_ms() - t0;
	}
	double sandboxed = -1;
	{ /* the full in-sandbox path (what an episode pays) */
		struct swerve_sandbox *sb;
		struct swerve_repo_cache *cache;
		char home[4096];
		snprintf(home, sizeof(home), "%s/home", tmp);
		if (swerve_sandbox_new(&sb, NULL) == 0 &&
		    swerve_repo_cache_open(&cache, home) == 0 &&
		    swerve_repo_add(cache, "bench/patch", dir) == 0) {
			double v[30];
			for (int i = 0; i < 30; i++) {
				struct swerve_workspace *ws;
				struct swerve_patch_outcome o;
				if (swerve_workspace_new(&ws, cache, "bench/patch", "HEAD", NULL) <
				    0)
					die("workspace");
				t0 = now_ms();
				if (swerve_workspace_apply_patch(&o, ws, sb, patch, plen, NULL) <
				            0 ||
				    !o.applied)
					die("apply in sandbox");
				v[i] = now_ms() - t0;
				swerve_workspace_free(ws);
			}
			sandboxed = median(v, 30);
			swerve_repo_cache_free(cache);
			swerve_sandbox_free(sb);
		}
	}
	printf("patch application: %d-line patch (%d hunks) to a 500-line file (median, ms)\n",
	       lines, hunks);
	printf("%36s %8s %8s %5s\n", "method", "wall", "cpu", "N");
	printf("%36s %8.3f %8.3f %5d\n", "swerve libgit2, tree on disk (ext4)", lw, lc, 500);
	if (sw >= 0)
		printf("%36s %8.3f %8.3f %5d\n", "swerve libgit2, tree on tmpfs", sw, sc, 500);
	printf("%36s %8.3f %8s %5d\n", "git apply (CLI, disk)", median(ga, nslow), "-", nslow);
	printf("%36s %8.3f %8s %5d\n", "GNU patch (CLI, disk)", median(gp, nslow), "-", nslow);
	if (sandboxed >= 0)
		printf("%36s %8.3f %8s %5d\n", "swerve, whole step in episode sandbox", sandboxed,
		       "-", 30);
	free(orig);
	free(patch);
}

int main(void)
{
	char *tmp = ts_mkdtemp();
	swerve_git_init();
	bench_patch(tmp);
	printf("\n");
	bench_workspaces(tmp);
	ts_rmtree(tmp);
	free(tmp);
	return 0;
}
