/* test_queue_stress.c - the queue under many processes and crashes: 10,000
 * items completed exactly once by concurrent workers; a worker SIGKILLed
 * mid-episode whose items are redone once after the lease expires; the
 * writer killed at random points dozens of times with the file checked after
 * each kill; concurrent trainers taking each group once, only when complete.
 *
 * Children log what they committed AFTER each COMMIT returns, with one
 * write(2) per record: what the log says is committed must be in the file
 * (nothing lost), and the file may hold at most one unlogged commit per kill. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

static char *dir, *path;

static void setup(void)
{
	dir = ts_mkdtemp();
	path = fx_path(dir, "swerve.db");
}

static void teardown(void)
{
	ts_rmtree(dir);
	free(dir);
	free(path);
}

TestSuite(stress, .init = setup, .fini = teardown, .timeout = 120);

struct rec {
	int64_t kind; /* 'C' completed rollout, 'G' consumed group */
	int64_t id;
};

static void log_rec(int fd, int64_t kind, int64_t id)
{
	struct rec r = {kind, id};
	if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(90);
}

static void child_die(const char *what)
{
	fprintf(stderr, "child %d: %s: %s\n", (int)getpid(), what, swerve_error_last());
	_exit(91);
}

/* A worker: claim `batch` at a time and complete each, until a claim finds
 * nothing. With take_every > 0 it also takes complete groups now and then,
 * like a trainer sharing the process. Exits 0, or 91 on any error. */
static void worker(int64_t run, int log_fd, int batch, int lease_ms, int take_every)
{
	struct swerve_db *db;
	char name[32];
	int done = 0;
	snprintf(name, sizeof(name), "w%d", (int)getpid());
	if (swerve_db_open(&db, path, NULL))
		child_die("open");
	for (;;) {
		struct swerve_db_claim *c;
		size_t n;
		if (swerve_db_claim(&c, &n, db, run, name, (size_t)batch, lease_ms))
			child_die("claim");
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			struct swerve_db_result r = fx_result((c[i].rollout % 3) ? 1.0 : 0.0);
			int rc = swerve_db_complete(db, c[i].rollout, c[i].attempt, name, &r);
			if (rc)
				child_die("complete");
			log_rec(log_fd, 'C', c[i].rollout);
			if (take_every && ++done % take_every == 0) {
				struct swerve_db_batch b = {0};
				if (swerve_db_groups_take(&b, db, run, 4))
					child_die("take");
				for (size_t g = 0; g < b.n; g++)
					log_rec(log_fd, 'G', b.groups[g].id);
				swerve_db_batch_free(&b);
			}
		}
		swerve_db_claims_free(c, n);
	}
	swerve_db_close(db);
	_exit(0);
}

static int open_log(const char *name)
{
	char *p = fx_path(dir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	free(p);
	return fd;
}

/* Reads every record of a log file; returns the count. */
static size_t read_log(const char *name, struct rec **out)
{
	char *p = fx_path(dir, name);
	size_t len = 0;
	char *data = ts_read_file(p, &len);
	free(p);
	cr_assert_not_null(data);
	cr_assert_eq(len % sizeof(struct rec), 0, "torn log record");
	*out = (struct rec *)data;
	return len / sizeof(struct rec);
}

static int wait_ok(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		cr_assert_eq(errno, EINTR);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(stress, many_processes_complete_10000_items_exactly_once)
{
	enum { ITEMS = 10000, GSIZE = 8, PROCS = 6 };
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	fx_fill(db, run, ITEMS / GSIZE, GSIZE);
	swerve_db_close(db);

	pid_t pids[PROCS];
	for (int p = 0; p < PROCS; p++) {
		char name[32];
		snprintf(name, sizeof(name), "log%d", p);
		int fd = open_log(name);
		pids[p] = fork();
		cr_assert_geq(pids[p], 0);
		if (pids[p] == 0)
			worker(run, fd, 8, 60000, 0);
		close(fd);
	}
	for (int p = 0; p < PROCS; p++)
		cr_assert_eq(wait_ok(pids[p]), 0, "worker %d failed", p);

	static unsigned char seen[ITEMS + 1];
	size_t total = 0;
	int busy_procs = 0;
	for (int p = 0; p < PROCS; p++) {
		char name[32];
		struct rec *r;
		snprintf(name, sizeof(name), "log%d", p);
		size_t n = read_log(name, &r);
		busy_procs += n > 0;
		for (size_t i = 0; i < n; i++) {
			cr_assert(r[i].id >= 1 && r[i].id <= ITEMS);
			cr_assert_eq(seen[r[i].id], 0, "rollout %lld completed twice",
			             (long long)r[i].id);
			seen[r[i].id] = 1;
		}
		total += n;
		free(r);
	}
	cr_assert_eq(total, ITEMS);
	cr_assert_geq(busy_procs, 2, "only %d process did any work", busy_procs);
	cr_assert_eq(fx_sql_int(path, "SELECT count(DISTINCT rollout_id) FROM results"), ITEMS);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results"), ITEMS);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollouts WHERE status = 'done' AND "
	                              "attempts = 1"),
	             ITEMS);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM test_results"), 3 * ITEMS);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM trainer_groups"), ITEMS / GSIZE);
}

Test(stress, sigkilled_worker_items_are_redone_once_after_lease_expiry)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	fx_fill(db, run, 5, 4);
	int ready[2];
	cr_assert_eq(pipe(ready), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Mid-episode: items claimed, work under way, no result yet. */
		struct swerve_db *cdb;
		struct swerve_db_claim *c;
		size_t n;
		swerve_db_close(db);
		if (swerve_db_open(&cdb, path, NULL) ||
		    swerve_db_claim(&c, &n, cdb, run, "victim", 5, 400) || n != 5)
			child_die("claim");
		if (write(ready[1], "x", 1) != 1)
			_exit(92);
		for (;;)
			pause();
	}
	char x;
	cr_assert_eq(read(ready[0], &x, 1), 1);
	kill(pid, SIGKILL);
	cr_assert_eq(wait_ok(pid), 128 + SIGKILL);
	close(ready[0]);
	close(ready[1]);

	/* Another worker drains the queue; the victim's items come back only
	 * once their lease has expired. */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int completed = 0, empty_polls = 0;
	double first_redo_ms = -1;
	while (completed < 20) {
		struct swerve_db_claim *c;
		size_t n;
		cr_assert_eq(swerve_db_claim(&c, &n, db, run, "rescuer", 8, 60000), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
		for (size_t i = 0; i < n; i++) {
			if (c[i].attempt == 2 && first_redo_ms < 0)
				first_redo_ms = ms;
			struct swerve_db_result r = fx_result(1.0);
			cr_assert_eq(
			        swerve_db_complete(db, c[i].rollout, c[i].attempt, "rescuer", &r),
			        0, "%s", swerve_error_last());
			completed++;
		}
		swerve_db_claims_free(c, n);
		if (n == 0) {
			cr_assert_lt(++empty_polls, 200, "victim's items never came back");
			fx_sleep_ms(10);
		}
	}
	swerve_db_close(db);
	cr_assert_geq(first_redo_ms, 300, "redone %.0f ms after the kill, lease was 400 ms",
	              first_redo_ms);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results"), 20);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results WHERE attempt = 2 AND "
	                              "worker = 'rescuer'"),
	             5);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollouts WHERE last_error LIKE "
	                              "'lease of victim expired (attempt 1)'"),
	             5);
}

/* Checks the invariants of the file after a crash; returns results count. */
static long long check_after_crash(const struct rec *log, size_t nlog, int iteration)
{
	struct swerve_db *db;
	cr_assert_eq(swerve_db_open(&db, path, NULL), 0, "iteration %d: %s", iteration,
	             swerve_error_last());
	cr_assert_eq(swerve_db_check(db), 0, "iteration %d: %s", iteration, swerve_error_last());
	swerve_db_close(db);
	long long results = fx_sql_int(path, "SELECT count(*) FROM results");
	cr_assert_eq(results,
	             fx_sql_int(path, "SELECT count(*) FROM rollouts WHERE status = "
	                              "'done'"),
	             "iteration %d: a done rollout without a result, or the reverse", iteration);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results res JOIN rollouts ro ON "
	                              "ro.id = res.rollout_id WHERE ro.status != 'done'"),
	             0);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM test_results"), 3 * results,
	             "iteration %d: a partial result", iteration);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollout_groups g WHERE n_done != "
	                              "(SELECT count(*) FROM rollouts r WHERE r.group_id = g.id "
	                              "AND r.status = 'done')"),
	             0, "iteration %d: group counters drifted", iteration);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollout_groups WHERE consumed_ms IS "
	                              "NOT NULL AND n_done != size"),
	             0, "iteration %d: an incomplete group was consumed", iteration);
	/* Nothing logged as committed is missing. */
	sqlite3 *s;
	sqlite3_stmt *cst, *gst;
	cr_assert_eq(sqlite3_open(path, &s), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(s, "SELECT count(*) FROM results WHERE rollout_id = ?1", -1,
	                                &cst, NULL),
	             SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(s,
	                                "SELECT count(*) FROM rollout_groups WHERE id = ?1 "
	                                "AND consumed_ms IS NOT NULL",
	                                -1, &gst, NULL),
	             SQLITE_OK);
	long long logged_c = 0;
	for (size_t i = 0; i < nlog; i++) {
		sqlite3_stmt *st = log[i].kind == 'C' ? cst : gst;
		logged_c += log[i].kind == 'C';
		sqlite3_bind_int64(st, 1, log[i].id);
		cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
		cr_assert_eq(sqlite3_column_int(st, 0), 1, "iteration %d: logged %c %lld lost",
		             iteration, (int)log[i].kind, (long long)log[i].id);
		sqlite3_reset(st);
	}
	sqlite3_finalize(cst);
	sqlite3_finalize(gst);
	sqlite3_close(s);
	/* At most one unlogged commit per kill so far. */
	cr_assert_leq(results, logged_c + iteration, "iteration %d: %lld results, %lld logged",
	              iteration, results, logged_c);
	return results;
}

Test(stress, writer_killed_at_random_points_loses_and_duplicates_nothing)
{
	enum { GROUPS = 400, GSIZE = 8, KILLS = 40 };
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 100, 10);
	fx_fill(db, run, GROUPS, GSIZE);
	swerve_db_close(db);
	srand((unsigned)getpid());

	int fd = open_log("crash.log");
	for (int k = 1; k <= KILLS; k++) {
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0)
			worker(run, fd, 4, 300, 5);
		fx_sleep_ms(2 + rand() % 25);
		/* Random points inside a transaction, not only between them. */
		struct timespec jitter = {0, (long)(rand() % 1000) * 1000L};
		nanosleep(&jitter, NULL);
		kill(pid, SIGKILL);
		int rc = wait_ok(pid);
		cr_assert(rc == 128 + SIGKILL || rc == 0, "iteration %d: child exit %d", k, rc);
		struct rec *log;
		size_t n = read_log("crash.log", &log);
		check_after_crash(log, n, k);
		free(log);
	}
	/* Let the dead workers' leases expire, then finish the run cleanly. */
	fx_sleep_ms(350);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		worker(run, fd, 16, 60000, 0);
	cr_assert_eq(wait_ok(pid), 0);
	close(fd);
	struct rec *log;
	size_t n = read_log("crash.log", &log);
	cr_assert_eq(check_after_crash(log, n, KILLS), GROUPS * GSIZE);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollouts WHERE status != 'done'"), 0);
	cr_assert_gt(fx_sql_int(path, "SELECT count(*) FROM rollouts WHERE attempts > 1"), 0,
	             "no kill ever hit a claimed item: the test did not test anything");
	/* A group taken before a crash is never handed out again. */
	db = fx_open(path);
	struct swerve_db_batch b = {0};
	cr_assert_eq(swerve_db_groups_take(&b, db, run, GROUPS), 0);
	long long consumed_before = fx_sql_int(
	        path, "SELECT count(*) FROM rollout_groups WHERE consumed_ms IS NOT NULL");
	cr_assert_eq(consumed_before, GROUPS);
	for (size_t g = 0; g < b.n; g++)
		for (size_t i = 0; i < n; i++)
			cr_assert(!(log[i].kind == 'G' && log[i].id == b.groups[g].id));
	swerve_db_batch_free(&b);
	free(log);
	swerve_db_close(db);
}

/* Two workers complete while two trainers take: every group reaches exactly
 * one trainer, and only with all of its samples. */
static void trainer(int64_t run, int log_fd, int groups_total)
{
	struct swerve_db *db;
	if (swerve_db_open(&db, path, NULL))
		child_die("open");
	for (int polls = 0; polls < 20000; polls++) {
		struct swerve_db_batch b = {0};
		struct swerve_db_stats s;
		if (swerve_db_groups_take(&b, db, run, 5))
			child_die("take");
		for (size_t g = 0; g < b.n; g++) {
			struct swerve_db_group *gr = &b.groups[g];
			if (gr->size != 8)
				_exit(93);
			for (int i = 0; i < gr->size; i++)
				if (gr->samples[i].sample != i || !gr->samples[i].has_reward ||
				    gr->samples[i].n_response_tokens != 4)
					_exit(94);
			log_rec(log_fd, 'G', gr->id);
		}
		size_t got = b.n;
		swerve_db_batch_free(&b);
		if (swerve_db_stats(&s, db, run))
			child_die("stats");
		if (s.groups_consumed == groups_total)
			break;
		if (!got)
			usleep(500);
	}
	swerve_db_close(db);
	_exit(0);
}

Test(stress, concurrent_trainers_take_each_complete_group_once)
{
	enum { GROUPS = 250, GSIZE = 8 };
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	fx_fill(db, run, GROUPS, GSIZE);
	swerve_db_close(db);
	int wfd = open_log("work.log"), tfd = open_log("take.log");
	pid_t pids[4];
	for (int p = 0; p < 4; p++) {
		pids[p] = fork();
		cr_assert_geq(pids[p], 0);
		if (pids[p] == 0) {
			if (p < 2)
				worker(run, wfd, 4, 60000, 0);
			trainer(run, tfd, GROUPS);
		}
	}
	for (int p = 0; p < 4; p++)
		cr_assert_eq(wait_ok(pids[p]), 0, "process %d failed", p);
	struct rec *log;
	size_t n = read_log("take.log", &log);
	cr_assert_eq(n, GROUPS);
	static unsigned char seen[GROUPS + 1];
	for (size_t i = 0; i < n; i++) {
		cr_assert(log[i].id >= 1 && log[i].id <= GROUPS);
		cr_assert_eq(seen[log[i].id], 0, "group %lld taken twice", (long long)log[i].id);
		seen[log[i].id] = 1;
	}
	free(log);
	close(wfd);
	close(tfd);
}
