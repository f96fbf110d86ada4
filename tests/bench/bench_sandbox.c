/* bench_sandbox.c - per-run overhead of the sandbox, in process: N runs of
 * /bin/true through one reused context (swerve_sandbox_new once), printing
 * the median and p99 of the whole run and the median time at which each
 * step finished (from swerve_sandbox_last_timing). Also timed: the same run
 * of an in-process fn, and the run started from a sandbox that
 * swerve_sandbox_prepare made beforehand (untimed, as swerve serve does
 * between requests). Baseline in the same run: posix_spawn + waitpid of
 * /bin/true with no isolation.
 * Usage: bench_sandbox [N=1000] */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "sandbox/sandbox.h"

extern char **environ;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000;
}

static int fn_zero(void *arg)
{
	(void)arg;
	return 0;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, int n, double p)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	int i = (int)(p * (n - 1) + 0.5);
	return v[i];
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	if (n < 10)
		n = 10;
	struct swerve_sandbox *sb;
	if (swerve_sandbox_new(&sb, NULL) < 0) {
		printf("bench_sandbox: skipped: %s\n", swerve_error_last());
		return 0;
	}
	uint64_t *tot = calloc((size_t)n, sizeof(uint64_t)), *st[7], *base = calloc((size_t)n, 8);
	uint64_t *fnt = calloc((size_t)n, sizeof(uint64_t));
	uint64_t *prept = calloc((size_t)n, sizeof(uint64_t));
	int nprep = 0;
	for (int k = 0; k < 7; k++)
		st[k] = calloc((size_t)n, sizeof(uint64_t));
	const char *argv_true[] = {"/bin/true", NULL};
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.argv = argv_true;
	o.limits.wall_ms = 10000;
	for (int i = 0; i < 20; i++) { /* warm-up */
		struct swerve_sandbox_result r;
		swerve_sandbox_run(&r, sb, &o);
		swerve_sandbox_result_dispose(&r);
	}
	int bad = 0;
	for (int i = 0; i < n; i++) {
		struct swerve_sandbox_result r;
		struct swerve_sandbox_timing t;
		uint64_t t0 = now_us();
		int rc = swerve_sandbox_run(&r, sb, &o);
		tot[i] = now_us() - t0;
		if (rc < 0 || r.verdict != SWERVE_VERDICT_OK)
			bad++;
		swerve_sandbox_result_dispose(&r);
		swerve_sandbox_last_timing(sb, &t);
		uint64_t v[7] = {t.clone_us,   t.maps_us, t.mounts_us, t.pivot_us,
		                 t.seccomp_us, t.exec_us, t.wait_us};
		for (int k = 0; k < 7; k++)
			st[k][i] = v[k];
		/* the same containment without an exec: the in-process entry point */
		struct swerve_sandbox_opts of = o;
		of.argv = NULL;
		of.fn = fn_zero;
		t0 = now_us();
		rc = swerve_sandbox_run(&r, sb, &of);
		fnt[i] = now_us() - t0;
		if (rc < 0 || r.verdict != SWERVE_VERDICT_OK)
			bad++;
		swerve_sandbox_result_dispose(&r);
		/* the same run started from a prepared sandbox (what swerve
		 * serve's workers do between requests); prepare is not timed */
		swerve_sandbox_prepare(sb);
		t0 = now_us();
		rc = swerve_sandbox_run(&r, sb, &o);
		prept[i] = now_us() - t0;
		swerve_sandbox_last_timing(sb, &t);
		if (rc < 0 || r.verdict != SWERVE_VERDICT_OK)
			bad++;
		nprep += t.prepared;
		swerve_sandbox_result_dispose(&r);
		/* baseline: the same program without any isolation */
		pid_t pid;
		t0 = now_us();
		if (posix_spawn(&pid, "/bin/true", NULL, NULL, (char **)argv_true, environ) == 0)
			waitpid(pid, NULL, 0);
		base[i] = now_us() - t0;
	}
	static const char *names[7] = {"clone returned",         "uid/gid maps written",
	                               "mounts done (child)",    "pivot_root done (child)",
	                               "seccomp loaded (child)", "exec called (child)",
	                               "reaped (parent)"};
	printf("sandbox per-run overhead, /bin/true, %d runs (one context reused)\n", n);
	printf("%-34s %12s\n", "step finished at", "median us");
	for (int k = 0; k < 7; k++)
		printf("%-34s %12llu\n", names[k], (unsigned long long)pct(st[k], n, 0.5));
	uint64_t med = pct(tot, n, 0.5), p99 = pct(tot, n, 0.99);
	uint64_t bmed = pct(base, n, 0.5), bp99 = pct(base, n, 0.99);
	printf("\n%-34s %12s %12s\n", "", "median us", "p99 us");
	printf("%-34s %12llu %12llu\n", "swerve_sandbox_run", (unsigned long long)med,
	       (unsigned long long)p99);
	uint64_t fmed = pct(fnt, n, 0.5), fp99 = pct(fnt, n, 0.99);
	printf("%-34s %12llu %12llu\n", "swerve_sandbox_run, fn (no exec)",
	       (unsigned long long)fmed, (unsigned long long)fp99);
	uint64_t pmed = pct(prept, n, 0.5), pp99 = pct(prept, n, 0.99);
	printf("%-34s %12llu %12llu   (%d of %d runs prepared)\n", "swerve_sandbox_run, prepared",
	       (unsigned long long)pmed, (unsigned long long)pp99, nprep, n);
	printf("%-34s %12llu %12llu\n", "posix_spawn (no isolation)", (unsigned long long)bmed,
	       (unsigned long long)bp99);
	printf("failed runs: %d\n", bad);
	swerve_sandbox_free(sb);
	return bad ? 1 : 0;
}
