/* test_db.c - the store in one process: schema and migrations, the queue's
 * state machine, the consumer API, the SQL views, and the faults (locked past
 * the timeout, disk full, corrupted file, newer schema). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
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

TestSuite(db, .init = setup, .fini = teardown);

/* ---- schema -------------------------------------------------------------- */

Test(db, open_creates_schema_with_wal_and_version)
{
	struct swerve_db *db = fx_open(path);
	cr_assert_eq(swerve_db_schema_version(db), SWERVE_DB_SCHEMA_VERSION);
	cr_assert_eq(swerve_db_check(db), 0, "%s", swerve_error_last());
	swerve_db_close(db);
	cr_assert_eq(fx_sql_int(path, "PRAGMA user_version"), SWERVE_DB_SCHEMA_VERSION);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM pragma_journal_mode WHERE "
	                              "journal_mode = 'wal'"),
	             1);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM sqlite_schema WHERE name IN ("
	                              "'trainer_groups', 'trainer_samples')"),
	             2);
	/* Re-opening an up-to-date file migrates nothing. */
	db = fx_open(path);
	cr_assert_eq(swerve_db_schema_version(db), SWERVE_DB_SCHEMA_VERSION);
	swerve_db_close(db);
}

Test(db, missing_file_without_create_is_not_found)
{
	struct swerve_db_opts o = SWERVE_DB_OPTS_INIT;
	struct swerve_db *db = NULL;
	o.create = 0;
	cr_assert_eq(swerve_db_open(&db, path, &o), SWERVE_ENOTFOUND);
	cr_assert_null(db);
	cr_assert(strstr(swerve_error_last(), path), "%s", swerve_error_last());
}

Test(db, newer_schema_is_a_clear_error)
{
	swerve_db_close(fx_open(path));
	fx_sql_int(path, "PRAGMA user_version = 99");
	struct swerve_db *db = NULL;
	cr_assert_eq(swerve_db_open(&db, path, NULL), SWERVE_EVERSION);
	cr_assert(strstr(swerve_error_last(), "schema version 99 is newer"), "%s",
	          swerve_error_last());
	struct swerve_db_opts ro = SWERVE_DB_OPTS_INIT;
	ro.readonly = 1;
	cr_assert_eq(swerve_db_open(&db, path, &ro), SWERVE_EVERSION);
	cr_assert_null(db);
}

Test(db, garbage_file_is_corrupt)
{
	char junk[8192];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 7 + 3);
	cr_assert_eq(ts_write_file(path, junk, sizeof(junk)), 0);
	struct swerve_db *db = NULL;
	cr_assert_eq(swerve_db_open(&db, path, NULL), SWERVE_ECORRUPT, "%s", swerve_error_last());
	cr_assert(strstr(swerve_error_last(), "corrupt"), "%s", swerve_error_last());
}

Test(db, other_programs_database_is_refused)
{
	sqlite3 *s;
	cr_assert_eq(sqlite3_open(path, &s), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(s, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(s);
	struct swerve_db *db = NULL;
	cr_assert_eq(swerve_db_open(&db, path, NULL), SWERVE_ECORRUPT);
	cr_assert(strstr(swerve_error_last(), "not a swerve database"), "%s", swerve_error_last());
}

Test(db, damaged_pages_fail_the_integrity_check)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	fx_fill(db, run, 200, 2);
	swerve_db_close(db);
	/* Checkpoint the WAL into the main file, then smash pages in the middle. */
	fx_sql_int(path, "PRAGMA wal_checkpoint(TRUNCATE)");
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_gt(sb.st_size, 16 * 4096);
	int fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0);
	char junk[4096];
	memset(junk, 0xA5, sizeof(junk));
	for (off_t off = 4096 * 3; off < sb.st_size - 4096; off += 4096 * 4)
		cr_assert_eq(pwrite(fd, junk, 1000, off + 100), 1000);
	close(fd);
	int rc = swerve_db_open(&db, path, NULL);
	if (rc == 0) {
		rc = swerve_db_check(db);
		swerve_db_close(db);
	}
	cr_assert_eq(rc, SWERVE_ECORRUPT, "%d %s", rc, swerve_error_last());
}

/* ---- runs, tasks, enqueue ------------------------------------------------ */

Test(db, runs_are_unique_by_name)
{
	struct swerve_db *db = fx_open(path);
	int64_t a = fx_run(db, "eval", 3, 10), b;
	cr_assert_eq(swerve_db_run_create(&b, db, "eval", NULL), SWERVE_EEXIST);
	cr_assert_eq(swerve_db_run_find(&b, db, "eval"), 0);
	cr_assert_eq(a, b);
	cr_assert_eq(swerve_db_run_find(&b, db, "nope"), SWERVE_ENOTFOUND);
	swerve_db_close(db);
}

Test(db, task_upsert_updates_in_place)
{
	struct swerve_db *db = fx_open(path);
	int64_t a, b;
	cr_assert_eq(swerve_db_task_upsert(&a, db, "x__y-1", "x/y", "c1", "{}"), 0);
	cr_assert_eq(swerve_db_task_upsert(&b, db, "x__y-1", "x/y", "c2", "{\"v\":2}"), 0);
	cr_assert_eq(a, b);
	swerve_db_close(db);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM tasks WHERE base_commit = 'c2'"), 1);
	db = fx_open(path);
	cr_assert_eq(swerve_db_task_upsert(&a, db, "x__y-2", "", "c1", "{}"), SWERVE_EINVAL);
	cr_assert(strstr(swerve_error_last(), "repo"), "%s", swerve_error_last());
	swerve_db_close(db);
}

Test(db, enqueue_is_idempotent_per_slot)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10), task = fx_task(db, 1), id1, id2;
	int created;
	struct swerve_db_rollout r = {.run = run,
	                              .task = task,
	                              .group = 7,
	                              .group_size = 2,
	                              .sample = 0,
	                              .patch = "diff --git a/x b/x\n"};
	cr_assert_eq(swerve_db_enqueue(&id1, &created, db, &r), 0, "%s", swerve_error_last());
	cr_assert_eq(created, 1);
	cr_assert_eq(swerve_db_enqueue(&id2, &created, db, &r), 0, "%s", swerve_error_last());
	cr_assert_eq(created, 0);
	cr_assert_eq(id1, id2);

	r.patch = "diff --git a/y b/y\n";
	cr_assert_eq(swerve_db_enqueue(&id2, NULL, db, &r), SWERVE_EEXIST);
	cr_assert(strstr(swerve_error_last(), "different patch"), "%s", swerve_error_last());
	r.sample = 1;
	r.group_size = 3;
	cr_assert_eq(swerve_db_enqueue(&id2, NULL, db, &r), SWERVE_EEXIST);
	r.group_size = 2;
	r.sample = 2;
	cr_assert_eq(swerve_db_enqueue(&id2, NULL, db, &r), SWERVE_EINVAL);
	r.sample = 1;
	r.task = 999;
	cr_assert_eq(swerve_db_enqueue(&id2, NULL, db, &r), SWERVE_EEXIST);
	r.group = 8;
	cr_assert_eq(swerve_db_enqueue(&id2, NULL, db, &r), SWERVE_ENOTFOUND, "%s",
	             swerve_error_last());
	r.task = task;
	r.response_tokens = (const int32_t[]){1, 2, 3};
	r.n_response_tokens = 3;
	r.logprobs = (const float[]){-1, -2};
	r.n_logprobs = 2;
	cr_assert_eq(swerve_db_enqueue(&id2, NULL, db, &r), SWERVE_EINVAL);
	swerve_db_close(db);
	/* Nothing from the refused calls was stored, the patch hash is SHA-256. */
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollouts"), 1);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollout_groups"), 1);
	char sha[65], q[200];
	swerve_sha256_hex(sha, "diff --git a/x b/x\n", 19);
	snprintf(q, sizeof(q), "SELECT count(*) FROM rollouts WHERE patch_sha256 = '%s'", sha);
	cr_assert_eq(fx_sql_int(path, q), 1);
}

/* ---- claim, heartbeat, complete, fail ------------------------------------- */

Test(db, claim_hands_each_item_out_once)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	struct swerve_db_claim *c1, *c2, *c3;
	size_t n1, n2, n3;
	fx_fill(db, run, 3, 1);
	cr_assert_eq(swerve_db_claim(&c1, &n1, db, run, "w1", 2, 60000), 0);
	cr_assert_eq(swerve_db_claim(&c2, &n2, db, run, "w2", 2, 60000), 0);
	cr_assert_eq(swerve_db_claim(&c3, &n3, db, run, "w3", 2, 60000), 0);
	cr_assert_eq(n1, 2);
	cr_assert_eq(n2, 1);
	cr_assert_eq(n3, 0);
	cr_assert_null(c3);
	cr_assert_neq(c2[0].rollout, c1[0].rollout);
	cr_assert_neq(c2[0].rollout, c1[1].rollout);
	cr_assert_eq(c1[0].attempt, 1);
	cr_assert_str_eq(c1[0].repo, "owner/repo");
	cr_assert(strstr(c1[0].task_json, c1[0].instance_id), "%s", c1[0].task_json);
	cr_assert(strstr(c1[0].patch, "+++ b/f.py"));
	cr_assert_eq(strlen(c1[0].patch_sha256), 64);
	cr_assert_eq(swerve_db_claim(&c3, &n3, db, 0, "w", 1, 1000), SWERVE_EINVAL);
	swerve_db_claims_free(c1, n1);
	swerve_db_claims_free(c2, n2);
	swerve_db_close(db);
}

Test(db, complete_records_everything_in_one_go)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	struct swerve_db_claim *c;
	size_t n;
	fx_fill(db, run, 1, 1);
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w1", 1, 60000), 0);
	struct swerve_db_result r = fx_result(1.0);
	cr_assert_eq(swerve_db_heartbeat(db, c[0].rollout, c[0].attempt, 60000), 0);
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, c[0].attempt, "w1", &r), 0, "%s",
	             swerve_error_last());
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, c[0].attempt, "w1", &r), SWERVE_EEXIST);
	cr_assert_eq(swerve_db_heartbeat(db, c[0].rollout, c[0].attempt, 1000), SWERVE_EEXIST);
	swerve_db_claims_free(c, n);
	swerve_db_close(db);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results WHERE resolved = 'FULL' AND "
	                              "reward = 1.0 AND worker = 'w1' AND test_ms = 120"),
	             1);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM test_results"), 3);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollouts WHERE status = 'done'"), 1);
	cr_assert_eq(fx_sql_int(path, "SELECT n_done FROM rollout_groups"), 1);
}

Test(db, bad_result_is_refused_and_records_nothing)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	struct swerve_db_claim *c;
	size_t n;
	fx_fill(db, run, 1, 1);
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w1", 1, 60000), 0);
	struct swerve_db_result r = fx_result(1.0);
	r.resolved = "YES";
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, 1, "w1", &r), SWERVE_EINVAL);
	cr_assert(strstr(swerve_error_last(), "field resolved"), "%s", swerve_error_last());
	/* A duplicate test id is caught by the database mid-transaction: the
	 * result row written before it must be rolled back. */
	struct swerve_db_test_status dup[] = {{"t::a", "PASSED", "FAIL_TO_PASS"},
	                                      {"t::a", "FAILED", "FAIL_TO_PASS"}};
	r = fx_result(1.0);
	r.tests = dup;
	r.n_tests = 2;
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, 1, "w1", &r), SWERVE_EINVAL);
	cr_assert(strstr(swerve_error_last(), "listed twice"), "%s", swerve_error_last());
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results"), 0);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM test_results"), 0);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollouts WHERE status = 'running'"), 1);
	r = fx_result(0.0);
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, 1, "w1", &r), 0, "%s",
	             swerve_error_last());
	swerve_db_claims_free(c, n);
	swerve_db_close(db);
}

Test(db, expired_lease_is_reclaimed_and_stale_worker_refused)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	struct swerve_db_claim *c1, *c2;
	size_t n1, n2;
	fx_fill(db, run, 1, 1);
	cr_assert_eq(swerve_db_claim(&c1, &n1, db, run, "slow", 1, 100), 0);
	cr_assert_eq(swerve_db_claim(&c2, &n2, db, run, "fast", 1, 60000), 0);
	cr_assert_eq(n2, 0);
	fx_sleep_ms(150);
	cr_assert_eq(swerve_db_claim(&c2, &n2, db, run, "fast", 1, 60000), 0);
	cr_assert_eq(n2, 1);
	cr_assert_eq(c2[0].rollout, c1[0].rollout);
	cr_assert_eq(c2[0].attempt, 2);
	struct swerve_db_result r = fx_result(1.0);
	cr_assert_eq(swerve_db_heartbeat(db, c1[0].rollout, 1, 1000), SWERVE_ETIMEOUT);
	cr_assert_eq(swerve_db_complete(db, c1[0].rollout, 1, "slow", &r), SWERVE_ETIMEOUT);
	cr_assert(strstr(swerve_error_last(), "lease of attempt 1 lost"), "%s",
	          swerve_error_last());
	cr_assert_eq(swerve_db_fail(NULL, db, c1[0].rollout, 1, "x"), SWERVE_ETIMEOUT);
	cr_assert_eq(swerve_db_complete(db, c2[0].rollout, 2, "fast", &r), 0);
	swerve_db_claims_free(c1, n1);
	swerve_db_claims_free(c2, n2);
	swerve_db_close(db);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results WHERE worker = 'fast' AND "
	                              "attempt = 2"),
	             1);
}

Test(db, infra_failures_back_off_then_give_up_without_reward)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 40);
	struct swerve_db_claim *c;
	size_t n;
	int gave_up = -1;
	fx_fill(db, run, 1, 2);
	/* Sample 0 succeeds, sample 1 keeps failing. */
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 2, 60000), 0);
	cr_assert_eq(n, 2);
	struct swerve_db_result r = fx_result(1.0);
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, 1, "w", &r), 0);
	int64_t bad = c[1].rollout;
	cr_assert_eq(swerve_db_fail(&gave_up, db, bad, 1, "sandbox: clone: EAGAIN"), 0);
	cr_assert_eq(gave_up, 0);
	swerve_db_claims_free(c, n);
	for (int attempt = 2; attempt <= 3; attempt++) {
		/* Backoff: not claimable at once, claimable after 40 * 2^(a-2) ms. */
		cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 1, 60000), 0);
		cr_assert_eq(n, 0, "attempt %d claimable during backoff", attempt);
		fx_sleep_ms(40 * (1 << (attempt - 2)) + 30);
		cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 1, 60000), 0);
		cr_assert_eq(n, 1);
		cr_assert_eq(c[0].attempt, attempt);
		cr_assert_eq(swerve_db_fail(&gave_up, db, bad, attempt, "disk full"), 0);
		cr_assert_eq(gave_up, attempt == 3);
		swerve_db_claims_free(c, n);
	}
	struct swerve_db_stats s;
	cr_assert_eq(swerve_db_stats(&s, db, run), 0);
	cr_assert_eq(s.infra_error, 1);
	cr_assert_eq(s.done, 1);
	cr_assert_eq(s.groups_blocked, 1);
	cr_assert_eq(s.groups_complete, 0);
	cr_assert_eq(s.rewarded, 1);
	/* The blocked group never reaches the trainer. */
	struct swerve_db_batch b = {0};
	cr_assert_eq(swerve_db_groups_fetch(&b, db, run, 10), 0);
	cr_assert_eq(b.n, 0);
	swerve_db_batch_free(&b);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM trainer_samples"), 0);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results"), 1);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollouts WHERE last_error LIKE "
	                              "'gave up after 3 attempts: disk full'"),
	             1);
	/* Once fixed, requeue: it runs and the group becomes complete. */
	size_t nre = 0;
	cr_assert_eq(swerve_db_requeue_infra(&nre, db, run), 0);
	cr_assert_eq(nre, 1);
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 1, 60000), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(swerve_db_complete(db, bad, c[0].attempt, "w", &r), 0);
	swerve_db_claims_free(c, n);
	cr_assert_eq(swerve_db_groups_fetch(&b, db, run, 10), 0);
	cr_assert_eq(b.n, 1);
	swerve_db_batch_free(&b);
	swerve_db_close(db);
}

Test(db, worker_dying_every_attempt_ends_as_infra_error)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 2, 10);
	struct swerve_db_claim *c;
	size_t n;
	fx_fill(db, run, 1, 1);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(swerve_db_claim(&c, &n, db, run, "doomed", 1, 30), 0);
		cr_assert_eq(n, 1);
		swerve_db_claims_free(c, n);
		fx_sleep_ms(50);
	}
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 1, 30), 0);
	cr_assert_eq(n, 0);
	swerve_db_close(db);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollouts WHERE status = 'infra_error'"
	                              " AND last_error LIKE 'lease of doomed expired%'"),
	             1);
	cr_assert_eq(fx_sql_int(path, "SELECT n_infra_error FROM rollout_groups"), 1);
}

/* ---- consumer ------------------------------------------------------------ */

static void complete_all(struct swerve_db *db, int64_t run, size_t max)
{
	struct swerve_db_claim *c;
	size_t n;
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", max, 60000), 0);
	for (size_t i = 0; i < n; i++) {
		struct swerve_db_result r = fx_result(c[i].sample % 2 ? 1.0 : 0.0);
		cr_assert_eq(swerve_db_complete(db, c[i].rollout, c[i].attempt, "w", &r), 0, "%s",
		             swerve_error_last());
	}
	swerve_db_claims_free(c, n);
}

Test(db, consumer_sees_a_group_once_and_only_when_complete)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	struct swerve_db_batch b = {0};
	fx_fill(db, run, 1, 4);
	complete_all(db, run, 3);
	cr_assert_eq(swerve_db_groups_fetch(&b, db, run, 10), 0);
	cr_assert_eq(b.n, 0, "a group with 3 of 4 samples was handed out");
	swerve_db_batch_free(&b);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM trainer_groups"), 0);
	int64_t gid = fx_sql_int(path, "SELECT id FROM rollout_groups");
	cr_assert_eq(swerve_db_groups_consume(db, &gid, 1), SWERVE_EINVAL);
	cr_assert(strstr(swerve_error_last(), "3 of 4"), "%s", swerve_error_last());

	complete_all(db, run, 1);
	cr_assert_eq(swerve_db_groups_fetch(&b, db, run, 10), 0);
	cr_assert_eq(b.n, 1);
	struct swerve_db_group *g = &b.groups[0];
	cr_assert_eq(g->size, 4);
	cr_assert_eq(g->key, 0);
	cr_assert_str_eq(g->instance_id, "owner__repo-0");
	for (int s = 0; s < 4; s++) {
		struct swerve_db_sample *x = &g->samples[s];
		cr_assert_eq(x->sample, s);
		cr_assert(x->has_reward);
		cr_assert_float_eq(x->reward, s % 2 ? 1.0 : 0.0, 1e-12);
		cr_assert_eq(x->n_prompt_tokens, 2);
		cr_assert_eq(x->n_response_tokens, 4);
		cr_assert_eq(x->response_tokens[1], s);
		cr_assert_eq(x->n_logprobs, 4);
		cr_assert_float_eq(x->logprobs[3], -(float)s, 1e-6);
	}
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM trainer_samples"), 4);
	cr_assert_eq(fx_sql_int(path, "SELECT sum(length(response_tokens)) FROM trainer_samples"),
	             4 * 16);
	cr_assert_eq(swerve_db_groups_consume(db, &g->id, 1), 0);
	cr_assert_eq(swerve_db_groups_consume(db, &g->id, 1), SWERVE_EEXIST);
	swerve_db_batch_free(&b);
	cr_assert_eq(swerve_db_groups_fetch(&b, db, run, 10), 0);
	cr_assert_eq(b.n, 0);
	swerve_db_batch_free(&b);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM trainer_groups"), 0);
	swerve_db_close(db);
}

Test(db, consume_is_all_or_nothing)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	struct swerve_db_batch b = {0};
	fx_fill(db, run, 3, 2);
	complete_all(db, run, 6);
	cr_assert_eq(swerve_db_groups_fetch(&b, db, run, 10), 0);
	cr_assert_eq(b.n, 3);
	int64_t ids[3] = {b.groups[0].id, b.groups[1].id, b.groups[1].id};
	/* The second mention of group 1 is "already consumed": nothing sticks. */
	cr_assert_eq(swerve_db_groups_consume(db, ids, 3), SWERVE_EEXIST);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollout_groups WHERE consumed_ms "
	                              "IS NOT NULL"),
	             0);
	swerve_db_batch_free(&b);
	cr_assert_eq(swerve_db_groups_take(&b, db, run, 2), 0);
	cr_assert_eq(b.n, 2);
	swerve_db_batch_free(&b);
	cr_assert_eq(swerve_db_groups_take(&b, db, run, 10), 0);
	cr_assert_eq(b.n, 1);
	swerve_db_batch_free(&b);
	struct swerve_db_stats s;
	cr_assert_eq(swerve_db_stats(&s, db, 0), 0);
	cr_assert_eq(s.groups_consumed, 3);
	cr_assert_eq(s.done, 6);
	cr_assert_eq(s.resolved, 3);
	cr_assert_float_eq(s.reward_sum, 3.0, 1e-9);
	swerve_db_close(db);
}

Test(db, null_reward_stays_null)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	struct swerve_db_claim *c;
	struct swerve_db_batch b = {0};
	size_t n;
	fx_fill(db, run, 1, 1);
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 1, 60000), 0);
	struct swerve_db_result r = fx_result(-1);
	r.empty_patch = 1;
	r.patch_applied = 0;
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, 1, "w", &r), 0);
	swerve_db_claims_free(c, n);
	cr_assert_eq(swerve_db_groups_take(&b, db, run, 1), 0);
	cr_assert_eq(b.n, 1);
	cr_assert_eq(b.groups[0].samples[0].has_reward, 0);
	swerve_db_batch_free(&b);
	swerve_db_close(db);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results WHERE reward IS NULL"), 1);
}

/* ---- listing, metrics ---------------------------------------------------- */

struct seen {
	int rows, with_result, tests;
	struct swerve_db *db;
};

static int count_test(const struct swerve_db_test_status *t, void *p)
{
	struct seen *s = p;
	cr_assert(strcmp(t->status, "PASSED") == 0 || strcmp(t->status, "FAILED") == 0);
	s->tests++;
	return 0;
}

static int count_row(const struct swerve_db_row *row, void *p)
{
	struct seen *s = p;
	s->rows++;
	if (row->result) {
		cr_assert_str_eq(row->status, "done");
		cr_assert_eq(row->result->p2p.success, 1);
		cr_assert_str_eq(row->result->apply_method, "git_apply");
		s->with_result++;
		cr_assert_eq(swerve_db_tests_foreach(s->db, row->rollout, count_test, s), 0);
	} else {
		cr_assert_str_eq(row->status, "pending");
	}
	return 0;
}

Test(db, results_listing_and_metrics)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	fx_fill(db, run, 2, 2);
	complete_all(db, run, 3);
	struct seen s = {0, 0, 0, db};
	cr_assert_eq(swerve_db_results_foreach(db, run, count_row, &s), 0);
	cr_assert_eq(s.rows, 4);
	cr_assert_eq(s.with_result, 3);
	cr_assert_eq(s.tests, 9);
	cr_assert_eq(swerve_db_metric_add(db, run, 1, "loss", 0.5), 0);
	cr_assert_eq(swerve_db_metric_add(db, run, 2, "loss", 0.25), 0);
	cr_assert_eq(swerve_db_metric_add(db, 999, 2, "loss", 0.25), SWERVE_ENOTFOUND);
	struct swerve_db_stats st;
	cr_assert_eq(swerve_db_stats(&st, db, run), 0);
	cr_assert_eq(st.metrics, 2);
	cr_assert_eq(st.pending, 1);
	cr_assert_eq(st.tasks, 2);
	swerve_db_close(db);
}

/* ---- faults -------------------------------------------------------------- */

Test(db, locked_past_timeout_is_ebusy_and_records_nothing)
{
	struct swerve_db_opts o = SWERVE_DB_OPTS_INIT;
	struct swerve_db *db;
	struct swerve_db_claim *c;
	size_t n;
	o.busy_timeout_ms = 200;
	cr_assert_eq(swerve_db_open(&db, path, &o), 0);
	int64_t run = fx_run(db, "r", 3, 10);
	fx_fill(db, run, 1, 1);
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 1, 60000), 0);

	sqlite3 *other;
	cr_assert_eq(sqlite3_open(path, &other), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	struct swerve_db_result r = fx_result(1.0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, 1, "w", &r), SWERVE_EBUSY);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double waited = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	cr_assert(strstr(swerve_error_last(), "locked by another process for more than 200 ms"),
	          "%s", swerve_error_last());
	cr_assert(waited >= 190 && waited < 2000, "waited %.0f ms", waited);
	cr_assert_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);

	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results"), 0);
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, 1, "w", &r), 0, "%s",
	             swerve_error_last());
	swerve_db_claims_free(c, n);
	swerve_db_close(db);
}

/* A tiny tmpfs in a private mount namespace: the database fills it. */
Test(db, disk_full_is_eio_and_records_nothing_partial)
{
	if (unshare(CLONE_NEWNS) != 0)
		cr_skip_test("unshare(CLONE_NEWNS): %s (needs root or a user namespace)",
		             strerror(errno));
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", dir, "tmpfs", 0, "size=384k") != 0)
		cr_skip_test("mount tmpfs: %s", strerror(errno));
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	fx_fill(db, run, 40, 1);
	struct swerve_db_claim *c;
	size_t n;
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 40, 60000), 0);
	cr_assert_eq(n, 40);
	char *big = malloc(20000);
	memset(big, 'x', 19999);
	big[19999] = '\0';
	int ok = 0, rc = 0;
	size_t i;
	for (i = 0; i < n; i++) {
		struct swerve_db_result r = fx_result(1.0);
		r.output = big;
		rc = swerve_db_complete(db, c[i].rollout, 1, "w", &r);
		if (rc != 0)
			break;
		ok++;
	}
	cr_assert_eq(rc, SWERVE_EIO, "rc %d after %d results: %s", rc, ok, swerve_error_last());
	cr_assert(strstr(swerve_error_last(), "disk full"), "%s", swerve_error_last());
	cr_assert_gt(ok, 0);
	int64_t failed = c[i].rollout;
	swerve_db_claims_free(c, n);
	free(big);
	swerve_db_close(db);
	/* Every result is whole: as many results as done rollouts, the failed
	 * one still running without a result, and the file intact. */
	char q[160];
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results"), ok);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollouts WHERE status = 'done'"), ok);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM test_results"), 3 * ok);
	snprintf(q, sizeof(q),
	         "SELECT count(*) FROM rollouts WHERE id = %lld AND status = "
	         "'running'",
	         (long long)failed);
	cr_assert_eq(fx_sql_int(path, q), 1);
	db = fx_open(path);
	cr_assert_eq(swerve_db_check(db), 0, "%s", swerve_error_last());
	swerve_db_close(db);
	umount2(dir, MNT_DETACH); /* teardown then removes the directory itself */
}

Test(db, user_transaction_batches_and_rolls_back)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10), id;
	cr_assert_eq(swerve_db_begin(db), 0);
	cr_assert_eq(swerve_db_begin(db), SWERVE_EINVAL);
	struct swerve_db_rollout r = {
	        .run = run, .task = fx_task(db, 1), .group = 1, .group_size = 1, .patch = ""};
	cr_assert_eq(swerve_db_enqueue(&id, NULL, db, &r), 0);
	/* A failing call inside the transaction undoes only itself. */
	r.patch = "other";
	cr_assert_eq(swerve_db_enqueue(&id, NULL, db, &r), SWERVE_EEXIST);
	swerve_db_rollback(db);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM rollouts"), 0);
	cr_assert_eq(swerve_db_commit(db), SWERVE_EINVAL);
	swerve_db_close(db);
}

/* ---- the SQL views from Python ------------------------------------------- */

/* tests/db/take_groups.py (quoted in README) takes complete groups through
 * the views with the standard sqlite3 module; the C side agrees. */
Test(db, python_trainer_takes_groups_through_the_views)
{
	if (ts_sh(NULL, NULL, "python3 -c 'import sqlite3'") != 0)
		cr_skip_test("python3 with the sqlite3 module is not installed");
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "py", 3, 10);
	fx_fill(db, run, 3, 2);
	complete_all(db, run, 5); /* groups 0 and 1 complete, group 2 half */
	char *out = NULL, *err = NULL;
	int rc = ts_sh(&out, &err, "python3 tests/db/take_groups.py '%s' py 10", path);
	cr_assert_eq(rc, 0, "%s", err);
	int lines = 0;
	for (char *p = out; (p = strchr(p, '\n')); p++)
		lines++;
	cr_assert_eq(lines, 2, "%s", out);
	cr_assert(strstr(out, "\"response_tokens\": [0, 1, 7, 8]"), "%s", out);
	cr_assert(strstr(out, "\"logprobs\": [-0.5, -1.0, -0.25, -1.0]"), "%s", out);
	free(out);
	free(err);
	struct swerve_db_stats s;
	cr_assert_eq(swerve_db_stats(&s, db, run), 0);
	cr_assert_eq(s.groups_consumed, 2);
	/* Nothing left for either side until the last group completes. */
	cr_assert_eq(ts_sh(&out, NULL, "python3 tests/db/take_groups.py '%s' py 10", path), 0);
	cr_assert_str_eq(out, "");
	free(out);
	complete_all(db, run, 1);
	struct swerve_db_batch b = {0};
	cr_assert_eq(swerve_db_groups_take(&b, db, run, 10), 0);
	cr_assert_eq(b.n, 1);
	cr_assert_eq(b.groups[0].key, 2);
	swerve_db_batch_free(&b);
	swerve_db_close(db);
}

/* ---- the writer lock (db/wlock.c) ----------------------------------------- */

/* A child that holds the writer lock (mid-transaction) and then: stays
 * (mode 0) or is SIGKILLed by the caller. Returns its pid once it holds it. */
static pid_t hold_writer_lock(void)
{
	int ready[2];
	cr_assert_eq(pipe(ready), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct swerve_db *cdb;
		if (swerve_db_open(&cdb, path, NULL) || swerve_db_begin(cdb))
			_exit(91);
		if (write(ready[1], "x", 1) != 1)
			_exit(92);
		for (;;)
			pause();
	}
	char x;
	cr_assert_eq(read(ready[0], &x, 1), 1);
	close(ready[0]);
	close(ready[1]);
	return pid;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1e3 + (t1.tv_nsec - t0->tv_nsec) / 1e6;
}

Test(db, writer_lock_held_by_another_swerve_process_times_out)
{
	struct swerve_db_opts o = SWERVE_DB_OPTS_INIT;
	struct swerve_db *db;
	struct swerve_db_claim *c;
	size_t n;
	struct timespec t0;
	o.busy_timeout_ms = 200;
	cr_assert_eq(swerve_db_open(&db, path, &o), 0);
	int64_t run = fx_run(db, "r", 3, 10);
	fx_fill(db, run, 1, 1);
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 1, 60000), 0);
	pid_t pid = hold_writer_lock();
	struct swerve_db_result r = fx_result(1.0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, 1, "w", &r), SWERVE_EBUSY);
	double waited = ms_since(&t0);
	cr_assert(strstr(swerve_error_last(), "for more than 200 ms"), "%s", swerve_error_last());
	cr_assert(waited >= 190 && waited < 2000, "waited %.0f ms", waited);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_assert_eq(fx_sql_int(path, "SELECT count(*) FROM results"), 0);
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, 1, "w", &r), 0, "%s",
	             swerve_error_last());
	swerve_db_claims_free(c, n);
	swerve_db_close(db);
}

/* The holder dies mid-transaction: the next writer goes on at once (robust
 * mutex), and SQLite has rolled the dead transaction back. */
Test(db, writer_lock_of_a_killed_holder_is_recovered_at_once)
{
	struct swerve_db *db = fx_open(path);
	int64_t run = fx_run(db, "r", 3, 10);
	struct swerve_db_claim *c;
	size_t n;
	struct timespec t0;
	fx_fill(db, run, 1, 1);
	cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 1, 60000), 0);
	pid_t pid = hold_writer_lock();
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	struct swerve_db_result r = fx_result(1.0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(swerve_db_complete(db, c[0].rollout, 1, "w", &r), 0, "%s",
	             swerve_error_last());
	cr_assert_lt(ms_since(&t0), 1000);
	swerve_db_claims_free(c, n);
	cr_assert_eq(swerve_db_check(db), 0);
	swerve_db_close(db);
}

Test(db, two_handles_writing_in_one_thread_is_ebusy_not_a_hang)
{
	struct swerve_db *a = fx_open(path), *b = fx_open(path);
	int64_t run;
	cr_assert_eq(swerve_db_begin(a), 0);
	cr_assert_eq(swerve_db_run_create(&run, a, "x", NULL), 0);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(swerve_db_begin(b), SWERVE_EBUSY);
	cr_assert(strstr(swerve_error_last(), "another handle"), "%s", swerve_error_last());
	cr_assert_lt(ms_since(&t0), 1000);
	cr_assert_eq(swerve_db_commit(a), 0);
	cr_assert_eq(swerve_db_begin(b), 0);
	swerve_db_rollback(b);
	swerve_db_close(a);
	swerve_db_close(b);
}
