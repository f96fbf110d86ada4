/* bench_db.c - the store's throughput: complete-result transactions per
 * second with 1, 2 and 8 worker processes (each its own handle, claiming in
 * batches of 32, ONE transaction per result), with synchronous=NORMAL (the
 * default) side by side with synchronous=FULL (fsync per commit) as the
 * baseline; then the trainer's read rate (rollouts/s through
 * swerve_db_groups_fetch, and fetch+consume through swerve_db_groups_take).
 * Goals (issue 6): >= 2,000 results/s, >= 100,000 rollouts/s read.
 *
 * Each result carries what a real episode records: 20 per-test statuses and
 * 2 KiB of captured output; each rollout 512 prompt + 1024 response tokens
 * and 1024 logprobs (10 KiB of blobs). The database lives in $BENCH_DIR
 * (default build/bench-db, i.e. the repository's disk, not tmpfs).
 *
 * usage: bench_db [results_per_run_normal [results_per_run_full [procs,...]]]
 * (default 10000 2000 1,2,8) */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "db/db.h"

#define GSIZE  8
#define NTESTS 20
#define PROMPT 512
#define RESP   1024

static void die(const char *what)
{
	fprintf(stderr, "bench_db: %s: %s\n", what, swerve_error_last());
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fresh_db(char *path, size_t cap, const char *dir, const char *name)
{
	const char *suffix[] = {"", "-wal", "-shm", "-wlock"};
	snprintf(path, cap, "%s/%s.db", dir, name);
	for (int i = 0; i < 4; i++) {
		char p[600];
		snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
		unlink(p);
	}
}

static struct swerve_db *open_db(const char *path, int sync_full)
{
	struct swerve_db_opts o = SWERVE_DB_OPTS_INIT;
	struct swerve_db *db;
	o.sync_full = sync_full;
	o.busy_timeout_ms = 60000;
	if (swerve_db_open(&db, path, &o))
		die("open");
	return db;
}

static int64_t fill(struct swerve_db *db, int n)
{
	static int32_t prompt[PROMPT], resp[RESP];
	static float lp[RESP];
	int64_t run, task = 0, id;
	for (int i = 0; i < RESP; i++) {
		prompt[i % PROMPT] = i * 7;
		resp[i] = i * 13;
		lp[i] = -0.01f * (float)(i % 50);
	}
	if (swerve_db_run_create(&run, db, "bench", NULL) || swerve_db_begin(db))
		die("fill");
	for (int i = 0; i < n; i++) {
		char patch[256], iid[64];
		if (i % GSIZE == 0) {
			snprintf(iid, sizeof(iid), "bench__repo-%d", i / GSIZE);
			if (swerve_db_task_upsert(&task, db, iid, "bench/repo", "0123abcd",
			                          "{\"instance_id\":\"bench\"}"))
				die("task");
		}
		snprintf(patch, sizeof(patch),
		         "diff --git a/src/m.py b/src/m.py\n--- a/src/m.py\n+++ b/src/m.py\n"
		         "@@ -10,3 +10,3 @@\n def f():\n-    return %d\n+    return %d\n",
		         i, i + 1);
		struct swerve_db_rollout r = {.run = run,
		                              .task = task,
		                              .group = i / GSIZE,
		                              .group_size = GSIZE,
		                              .sample = i % GSIZE,
		                              .policy_version = 1,
		                              .patch = patch,
		                              .prompt_tokens = prompt,
		                              .n_prompt_tokens = PROMPT,
		                              .response_tokens = resp,
		                              .n_response_tokens = RESP,
		                              .logprobs = lp,
		                              .n_logprobs = RESP};
		if (swerve_db_enqueue(&id, NULL, db, &r))
			die("enqueue");
	}
	if (swerve_db_commit(db))
		die("commit");
	return run;
}

static void worker(const char *path, int sync_full, int64_t run, int gate)
{
	static struct swerve_db_test_status tests[NTESTS];
	static char ids[NTESTS][80], output[2048];
	char name[32], c;
	struct swerve_db *db = open_db(path, sync_full);
	for (int i = 0; i < NTESTS; i++) {
		snprintf(ids[i], sizeof(ids[i]), "tests/test_module.py::TestClass::test_case_%d",
		         i);
		tests[i] = (struct swerve_db_test_status){ids[i], i == 3 ? "FAILED" : "PASSED",
		                                          i < 2 ? "FAIL_TO_PASS" : "PASS_TO_PASS"};
	}
	memset(output, 'o', sizeof(output) - 1);
	snprintf(name, sizeof(name), "bench-%d", (int)getpid());
	if (read(gate, &c, 1) < 0) /* EOF: go */
		_exit(2);
	for (;;) {
		struct swerve_db_claim *cl;
		size_t n;
		if (swerve_db_claim(&cl, &n, db, run, name, 32, 60000))
			die("claim");
		if (!n)
			break;
		for (size_t i = 0; i < n; i++) {
			struct swerve_db_result r = {.verdict = "OK",
			                             .resolved = "FULL",
			                             .has_reward = 1,
			                             .reward = (double)(cl[i].rollout % 2),
			                             .patch_applied = 1,
			                             .apply_method = "git_apply",
			                             .f2p = {2, 0},
			                             .p2p = {17, 1},
			                             .workspace_ms = 2,
			                             .apply_ms = 1,
			                             .test_ms = 800,
			                             .total_ms = 805,
			                             .max_rss_kb = 81920,
			                             .output = output,
			                             .tests = tests,
			                             .n_tests = NTESTS};
			if (swerve_db_complete(db, cl[i].rollout, cl[i].attempt, name, &r))
				die("complete");
		}
		swerve_db_claims_free(cl, n);
	}
	swerve_db_close(db);
	_exit(0);
}

/* results/s for procs workers completing n results; leaves the db done. */
static double run_workers(const char *path, int sync_full, int procs, int n)
{
	struct swerve_db *db = open_db(path, sync_full);
	int64_t run = fill(db, n);
	swerve_db_close(db);
	int gate[2];
	pid_t pids[64];
	if (pipe(gate))
		die("pipe");
	fflush(stdout);
	for (int p = 0; p < procs; p++) {
		if ((pids[p] = fork()) < 0)
			die("fork");
		if (pids[p] == 0) {
			close(gate[1]);
			worker(path, sync_full, run, gate[0]);
		}
	}
	close(gate[0]);
	double t0 = now_s();
	close(gate[1]);
	for (int p = 0; p < procs; p++) {
		int st;
		if (waitpid(pids[p], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
			die("worker failed");
	}
	double dt = now_s() - t0;
	struct swerve_db_stats s;
	db = open_db(path, sync_full);
	if (swerve_db_stats(&s, db, run))
		die("stats");
	swerve_db_close(db);
	if (s.done != n) {
		fprintf(stderr, "bench_db: %lld of %d done\n", (long long)s.done, n);
		exit(1);
	}
	return n / dt;
}

int main(int argc, char **argv)
{
	int n_normal = argc > 1 ? atoi(argv[1]) : 10000;
	int n_full = argc > 2 ? atoi(argv[2]) : 2000;
	const char *dir = getenv("BENCH_DIR");
	char path[512];
	int procs[16] = {1, 2, 8}, nprocs = 3;

	if (!dir || !*dir)
		dir = "build/bench-db";
	if (mkdir(dir, 0755) && errno != EEXIST) {
		perror(dir);
		return 1;
	}
	n_normal -= n_normal % GSIZE;
	n_full -= n_full % GSIZE;
	cpu_set_t cpus;
	int ncpu = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : -1;
	printf("db: complete-result transactions/s (one transaction per result: result row +\n"
	       "%d test statuses + 2 KiB output; claims in batches of 32), %d CPUs, db in %s\n",
	       NTESTS, ncpu, dir);
	char load[64] = "?";
	FILE *lf = fopen("/proc/loadavg", "r");
	if (lf) {
		if (!fgets(load, sizeof(load), lf))
			snprintf(load, sizeof(load), "?");
		load[strcspn(load, "\n")] = '\0';
		fclose(lf);
	}
	printf("load average at start: %s (other processes share these cores)\n", load);
	printf("%-6s %22s %22s %10s\n", "procs", "synchronous=NORMAL", "baseline: FULL", "goal");
	if (argc > 3) {
		nprocs = 0;
		for (char *t = strtok(argv[3], ","); t && nprocs < 16; t = strtok(NULL, ","))
			if ((procs[nprocs] = atoi(t)) > 0 && procs[nprocs] <= 64)
				nprocs++;
	}
	for (int i = 0; i < nprocs; i++) {
		fresh_db(path, sizeof(path), dir, "normal");
		double normal = run_workers(path, 0, procs[i], n_normal);
		fresh_db(path, sizeof(path), dir, "full");
		double full = run_workers(path, 1, procs[i], n_full);
		printf("%-6d %14.0f (n=%5d) %14.0f (n=%5d) %10d\n", procs[i], normal, n_normal,
		       full, n_full, 2000);
	}

	/* Read rate on one all-done database, in two configurations: swerve's
	 * (64 MiB cache, memory-mapped reads) and SQLite's defaults (2 MiB
	 * cache, pread) as the baseline. Each: one read-only fetch of every
	 * group (cold: first touch of the file and of the batch's memory), the
	 * same again (warm), then the trainer's loop, take 256 groups at a time
	 * into one reused batch, consuming as it goes. */
	fresh_db(path, sizeof(path), dir, "read");
	run_workers(path, 0, 2, n_normal);
	double rate[2][3];
	for (int cfg = 0; cfg < 2; cfg++) {
		struct swerve_db_opts o = SWERVE_DB_OPTS_INIT;
		struct swerve_db *db;
		struct swerve_db_batch b = {0};
		if (cfg == 1) {
			o.cache_mb = 2;
			o.mmap_mb = -1;
		}
		if (swerve_db_open(&db, path, &o))
			die("open");
		for (int pass = 0; pass < 2; pass++) {
			double t0 = now_s();
			size_t rollouts = 0;
			int64_t last = 0;
			if (swerve_db_groups_fetch(&b, db, 0, (size_t)n_normal / GSIZE))
				die("fetch");
			for (size_t g = 0; g < b.n; g++)
				for (int s = 0; s < b.groups[g].size; s++) {
					rollouts++;
					last += b.groups[g].samples[s].response_tokens[RESP - 1];
				}
			rate[cfg][pass] = rollouts / (now_s() - t0);
			if (rollouts != (size_t)n_normal || last == 0)
				die("fetch: short read");
		}
		double t0 = now_s();
		size_t taken = 0;
		for (;;) {
			if (swerve_db_groups_take(&b, db, 0, 256))
				die("take");
			if (!b.n)
				break;
			for (size_t g = 0; g < b.n; g++)
				taken += (size_t)b.groups[g].size;
		}
		rate[cfg][2] = taken / (now_s() - t0);
		swerve_db_batch_free(&b);
		if (taken != (size_t)n_normal)
			die("take: short read");
		/* Un-consume for the next configuration. */
		swerve_db_close(db);
		sqlite3 *raw;
		if (sqlite3_open(path, &raw) ||
		    sqlite3_exec(raw, "UPDATE rollout_groups SET consumed_ms = NULL", NULL, NULL,
		                 NULL))
			die("reset consumed");
		sqlite3_close(raw);
	}
	printf("\ndb: consumer read rate, rollouts/s (%d rollouts in groups of %d; %d+%d "
	       "tokens and %d logprobs each)\n",
	       n_normal, GSIZE, PROMPT, RESP, RESP);
	printf("%-40s %14s %18s %8s\n", "", "swerve config", "baseline: defaults", "goal");
	const char *label[3] = {"groups_fetch, all groups, cold", "groups_fetch, all groups, warm",
	                        "groups_take 256 at a time (trainer)"};
	for (int k = 0; k < 3; k++)
		printf("%-40s %14.0f %18.0f %8d\n", label[k], rate[0][k], rate[1][k], 100000);
	/* The databases are ~150 MB each: do not leave them behind. */
	const char *names[] = {"normal", "full", "read"};
	for (int k = 0; k < 3; k++)
		fresh_db(path, sizeof(path), dir, names[k]);
	return 0;
}
