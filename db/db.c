/* db.c - opening the store: pragmas, schema migrations, the statement cache,
 * transactions, error mapping; runs, tasks, metrics and stats.
 *
 * Does: everything that is not the queue (queue.c) or the consumer API
 * (consumer.c). Does not: parse task JSON (stored as text), or share a
 * handle between threads.
 *
 * Choices, each with its reason:
 *   - journal_mode=WAL: readers (the trainer, `swerve db stats`) never block
 *     the writer, and a commit is one append to the WAL.
 *   - synchronous=NORMAL (default): in WAL mode a committed transaction
 *     survives any crash of the process (SIGKILL, OOM kill, segfault): the
 *     WAL is in the OS page cache, which outlives the process. Only a power
 *     loss or kernel crash can drop the last few commits, and even then the
 *     file is consistent (a dropped result just means the rollout is claimed
 *     again). opts.sync_full = 1 gives FULL (fsync per commit) where that
 *     matters.
 *   - foreign_keys=ON: a result without a rollout, or a rollout without a
 *     task, cannot exist.
 *   - Our own busy handler (not sqlite3_busy_timeout): sleeps 50-1000 us with
 *     jitter instead of SQLite's 1..100 ms steps, which with 8 writers on 2
 *     cores left the lock idle most of the time; it gives up after
 *     busy_timeout_ms, which becomes SWERVE_EBUSY.
 *   - Write transactions are BEGIN IMMEDIATE: the write lock is taken up
 *     front, so a transaction never fails half-way on a read-to-write
 *     upgrade.
 *   - PRAGMA application_id marks the file as swerve's; PRAGMA user_version
 *     is the schema version; migrations run in one transaction. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SWERVE_DB_APPLICATION_ID 0x73777276 /* "swrv" */

/* ---- schema ---------------------------------------------------------------- */

/* migrations[v] takes the schema from version v to v + 1. Never edit a
 * released step: append a new one. */
static const char *const migrations[SWERVE_DB_SCHEMA_VERSION] = {
        /* 0 -> 1 */
        "CREATE TABLE runs ("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE,"
        "  max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),"
        "  backoff_ms INTEGER NOT NULL CHECK (backoff_ms >= 0),"
        "  max_backoff_ms INTEGER NOT NULL CHECK (max_backoff_ms >= 0),"
        "  config TEXT,"
        "  created_ms INTEGER NOT NULL);"
        "CREATE TABLE tasks ("
        "  id INTEGER PRIMARY KEY,"
        "  instance_id TEXT NOT NULL UNIQUE,"
        "  repo TEXT NOT NULL,"
        "  base_commit TEXT NOT NULL,"
        "  task_json TEXT NOT NULL,"
        "  updated_ms INTEGER NOT NULL);"
        /* n_done / n_infra_error are kept by the trigger below, so a group's
         * completeness is one row read. */
        "CREATE TABLE rollout_groups ("
        "  id INTEGER PRIMARY KEY,"
        "  run_id INTEGER NOT NULL REFERENCES runs(id),"
        "  key INTEGER NOT NULL,"
        "  task_id INTEGER NOT NULL REFERENCES tasks(id),"
        "  size INTEGER NOT NULL CHECK (size >= 1),"
        "  n_done INTEGER NOT NULL DEFAULT 0,"
        "  n_infra_error INTEGER NOT NULL DEFAULT 0,"
        "  consumed_ms INTEGER,"
        "  UNIQUE (run_id, key));"
        "CREATE INDEX rollout_groups_ready ON rollout_groups(run_id, id)"
        "  WHERE consumed_ms IS NULL AND n_done = size;"
        "CREATE TABLE rollouts ("
        "  id INTEGER PRIMARY KEY,"
        "  run_id INTEGER NOT NULL REFERENCES runs(id),"
        "  group_id INTEGER NOT NULL REFERENCES rollout_groups(id),"
        "  sample INTEGER NOT NULL CHECK (sample >= 0),"
        "  policy_version INTEGER NOT NULL,"
        "  patch_sha256 TEXT NOT NULL,"
        "  patch_bytes INTEGER NOT NULL,"
        "  status TEXT NOT NULL DEFAULT 'pending'"
        "    CHECK (status IN ('pending', 'running', 'done', 'infra_error')),"
        "  attempts INTEGER NOT NULL DEFAULT 0,"
        "  lease_owner TEXT,"
        "  lease_expires_ms INTEGER,"
        "  not_before_ms INTEGER NOT NULL DEFAULT 0,"
        "  last_error TEXT,"
        "  created_ms INTEGER NOT NULL,"
        "  UNIQUE (group_id, sample));"
        /* The large, immutable part of a rollout lives apart, so that the
         * queue's frequent status updates rewrite a small row (an UPDATE
         * rewrites the whole record, overflow pages included). */
        "CREATE TABLE rollout_data ("
        "  rollout_id INTEGER PRIMARY KEY REFERENCES rollouts(id),"
        "  patch TEXT NOT NULL,"
        "  prompt_tokens BLOB,"   /* int32 little-endian */
        "  response_tokens BLOB," /* int32 little-endian */
        "  logprobs BLOB);"       /* float32 little-endian, one per response token */
        "CREATE INDEX rollouts_pending ON rollouts(run_id, id) WHERE status = 'pending';"
        "CREATE INDEX rollouts_running ON rollouts(run_id, lease_expires_ms)"
        "  WHERE status = 'running';"
        "CREATE TRIGGER rollouts_status AFTER UPDATE OF status ON rollouts"
        "  WHEN OLD.status IS NOT NEW.status BEGIN"
        "  UPDATE rollout_groups SET"
        "    n_done = n_done + (NEW.status = 'done') - (OLD.status = 'done'),"
        "    n_infra_error = n_infra_error + (NEW.status = 'infra_error')"
        "                                  - (OLD.status = 'infra_error')"
        "  WHERE id = NEW.group_id;"
        "END;"
        "CREATE TABLE results ("
        "  rollout_id INTEGER PRIMARY KEY REFERENCES rollouts(id),"
        "  attempt INTEGER NOT NULL,"
        "  worker TEXT,"
        "  verdict TEXT NOT NULL,"
        "  resolved TEXT NOT NULL CHECK (resolved IN ('FULL', 'PARTIAL', 'NO')),"
        "  reward REAL,"
        "  empty_patch INTEGER NOT NULL CHECK (empty_patch IN (0, 1)),"
        "  patch_applied INTEGER NOT NULL CHECK (patch_applied IN (0, 1)),"
        "  apply_method TEXT,"
        "  f2p_success INTEGER NOT NULL, f2p_failure INTEGER NOT NULL,"
        "  p2p_success INTEGER NOT NULL, p2p_failure INTEGER NOT NULL,"
        "  f2f_success INTEGER NOT NULL, f2f_failure INTEGER NOT NULL,"
        "  p2f_success INTEGER NOT NULL, p2f_failure INTEGER NOT NULL,"
        "  workspace_ms INTEGER NOT NULL, apply_ms INTEGER NOT NULL,"
        "  test_ms INTEGER NOT NULL, total_ms INTEGER NOT NULL,"
        "  max_rss_kb INTEGER NOT NULL,"
        "  exit_code INTEGER NOT NULL,"
        "  output TEXT,"
        "  output_truncated INTEGER NOT NULL CHECK (output_truncated IN (0, 1)),"
        "  completed_ms INTEGER NOT NULL);"
        "CREATE TABLE test_results ("
        "  rollout_id INTEGER NOT NULL REFERENCES results(rollout_id),"
        "  test_id TEXT NOT NULL,"
        "  status TEXT NOT NULL"
        "    CHECK (status IN ('PASSED', 'FAILED', 'SKIPPED', 'ERROR', 'XFAIL')),"
        "  category TEXT NOT NULL CHECK (category IN ('FAIL_TO_PASS', 'PASS_TO_PASS',"
        "    'FAIL_TO_FAIL', 'PASS_TO_FAIL', 'OTHER')),"
        "  PRIMARY KEY (rollout_id, test_id)) WITHOUT ROWID;"
        "CREATE TABLE metrics ("
        "  id INTEGER PRIMARY KEY,"
        "  run_id INTEGER NOT NULL REFERENCES runs(id),"
        "  step INTEGER NOT NULL,"
        "  name TEXT NOT NULL,"
        "  value REAL,"
        "  time_ms INTEGER NOT NULL);"
        "CREATE INDEX metrics_run_name_step ON metrics(run_id, name, step);"
        /* The trainer's views (README: "The database and the trainer's
         * consumer API"). A group is ready when all of its samples are done;
         * n_done = size implies no infra_error sample. */
        "CREATE VIEW trainer_groups AS"
        "  SELECT g.id AS group_id, g.run_id, r.name AS run_name, g.key AS group_key,"
        "         t.instance_id, g.size"
        "  FROM rollout_groups g JOIN runs r ON r.id = g.run_id"
        "  JOIN tasks t ON t.id = g.task_id"
        "  WHERE g.consumed_ms IS NULL AND g.n_done = g.size;"
        "CREATE VIEW trainer_samples AS"
        "  SELECT tg.group_id, tg.run_id, tg.run_name, tg.group_key, tg.instance_id,"
        "         tg.size AS group_size, ro.id AS rollout_id, ro.sample,"
        "         ro.policy_version, res.reward, res.resolved, d.prompt_tokens,"
        "         d.response_tokens, d.logprobs"
        "  FROM trainer_groups tg JOIN rollouts ro ON ro.group_id = tg.group_id"
        "  JOIN results res ON res.rollout_id = ro.id"
        "  JOIN rollout_data d ON d.rollout_id = ro.id;",
};

/* ---- statements -------------------------------------------------------------- */

static const char *const stmt_sql[ST__COUNT] = {
        [ST_RUN_CREATE] = "INSERT INTO runs (name, max_attempts, backoff_ms, max_backoff_ms,"
                          " config, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        [ST_RUN_FIND] = "SELECT id FROM runs WHERE name = ?1",
        [ST_TASK_UPSERT] = "INSERT INTO tasks (instance_id, repo, base_commit, task_json,"
                           " updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)"
                           " ON CONFLICT (instance_id) DO UPDATE SET repo = excluded.repo,"
                           " base_commit = excluded.base_commit, task_json = excluded.task_json,"
                           " updated_ms = excluded.updated_ms RETURNING id",
        [ST_GROUP_FIND] = "SELECT id, task_id, size FROM rollout_groups WHERE run_id = ?1"
                          " AND key = ?2",
        [ST_GROUP_INSERT] = "INSERT INTO rollout_groups (run_id, key, task_id, size)"
                            " VALUES (?1, ?2, ?3, ?4)",
        [ST_SLOT_FIND] = "SELECT id, patch_sha256 FROM rollouts WHERE group_id = ?1"
                         " AND sample = ?2",
        [ST_ROLLOUT_INSERT] = "INSERT INTO rollouts (run_id, group_id, sample, policy_version,"
                              " patch_sha256, patch_bytes, created_ms)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [ST_DATA_INSERT] = "INSERT INTO rollout_data (rollout_id, patch, prompt_tokens,"
                           " response_tokens, logprobs) VALUES (?1, ?2, ?3, ?4, ?5)",
        /* Expired leases: back to the queue, or infra_error when the run's
         * attempts are used up (a worker that keeps dying on an item is an
         * infrastructure failure, never a reward). */
        [ST_EXPIRE] = "UPDATE rollouts SET status = CASE WHEN attempts >= (SELECT max_attempts"
                      " FROM runs WHERE runs.id = rollouts.run_id) THEN 'infra_error'"
                      " ELSE 'pending' END,"
                      " last_error = 'lease of ' || coalesce(lease_owner, '?')"
                      " || ' expired (attempt ' || attempts || ')',"
                      " lease_owner = NULL, lease_expires_ms = NULL, not_before_ms = 0"
                      " WHERE run_id = ?1 AND status = 'running' AND lease_expires_ms < ?2",
        [ST_CLAIM] = "UPDATE rollouts SET status = 'running', attempts = attempts + 1,"
                     " lease_owner = ?3, lease_expires_ms = ?4"
                     " WHERE id IN (SELECT id FROM rollouts WHERE run_id = ?1"
                     " AND status = 'pending' AND not_before_ms <= ?2 ORDER BY id LIMIT ?5)"
                     " RETURNING id, attempts, group_id, sample, policy_version, patch_sha256",
        [ST_CLAIM_TASK] = "SELECT g.key, t.instance_id, t.repo, t.base_commit, t.task_json,"
                          " d.patch FROM rollout_groups g JOIN tasks t ON t.id = g.task_id"
                          " JOIN rollout_data d ON d.rollout_id = ?2 WHERE g.id = ?1",
        [ST_HEARTBEAT] = "UPDATE rollouts SET lease_expires_ms = ?3 WHERE id = ?1"
                         " AND status = 'running' AND attempts = ?2",
        [ST_LEASE_STATE] = "SELECT status, attempts, coalesce(lease_owner, '') FROM rollouts"
                           " WHERE id = ?1",
        [ST_DONE] = "UPDATE rollouts SET status = 'done', lease_owner = NULL,"
                    " lease_expires_ms = NULL WHERE id = ?1 AND status = 'running'"
                    " AND attempts = ?2",
        [ST_RESULT_INSERT] =
                "INSERT INTO results (rollout_id, attempt, worker, verdict, resolved, reward,"
                " empty_patch, patch_applied, apply_method, f2p_success, f2p_failure, p2p_success,"
                " p2p_failure, f2f_success, f2f_failure, p2f_success, p2f_failure, workspace_ms,"
                " apply_ms, test_ms, total_ms, max_rss_kb, exit_code, output, output_truncated,"
                " completed_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,"
                " ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)",
        [ST_TEST_INSERT] = "INSERT INTO test_results (rollout_id, test_id, status, category)"
                           " VALUES (?1, ?2, ?3, ?4)",
        [ST_FAIL_INFO] = "SELECT r.status, r.attempts, u.max_attempts, u.backoff_ms,"
                         " u.max_backoff_ms FROM rollouts r JOIN runs u ON u.id = r.run_id"
                         " WHERE r.id = ?1",
        [ST_FAIL_RETRY] = "UPDATE rollouts SET status = 'pending', lease_owner = NULL,"
                          " lease_expires_ms = NULL, not_before_ms = ?2, last_error = ?3"
                          " WHERE id = ?1",
        [ST_FAIL_GIVEUP] = "UPDATE rollouts SET status = 'infra_error', lease_owner = NULL,"
                           " lease_expires_ms = NULL, last_error = ?2 WHERE id = ?1",
        [ST_REQUEUE] = "UPDATE rollouts SET status = 'pending', attempts = 0, not_before_ms = 0"
                       " WHERE status = 'infra_error' AND (?1 <= 0 OR run_id = ?1)",
        [ST_ROWS] = "SELECT ro.id, ro.run_id, t.instance_id, g.key, ro.sample, ro.policy_version,"
                    " ro.status, ro.attempts, ro.last_error, ro.patch_sha256, ro.patch_bytes = 0,"
                    " res.rollout_id IS NOT NULL, res.verdict, res.resolved, res.reward,"
                    " res.empty_patch, res.patch_applied, res.apply_method, res.f2p_success,"
                    " res.f2p_failure, res.p2p_success, res.p2p_failure, res.f2f_success,"
                    " res.f2f_failure, res.p2f_success, res.p2f_failure, res.workspace_ms,"
                    " res.apply_ms, res.test_ms, res.total_ms, res.max_rss_kb, res.exit_code,"
                    " res.output, res.output_truncated"
                    " FROM rollouts ro JOIN rollout_groups g ON g.id = ro.group_id"
                    " JOIN tasks t ON t.id = g.task_id"
                    " LEFT JOIN results res ON res.rollout_id = ro.id"
                    " WHERE ro.run_id = ?1 ORDER BY t.instance_id, g.key, ro.sample",
        [ST_TESTS] = "SELECT test_id, status, category FROM test_results WHERE rollout_id = ?1"
                     " ORDER BY test_id",
        [ST_GROUPS_READY] = "SELECT g.id, g.run_id, g.key, t.instance_id, g.size"
                            " FROM rollout_groups g JOIN tasks t ON t.id = g.task_id"
                            " WHERE g.run_id = ?1 AND g.consumed_ms IS NULL AND g.n_done = g.size"
                            " ORDER BY g.id LIMIT ?2",
        [ST_GROUPS_READY_ANY] = "SELECT g.id, g.run_id, g.key, t.instance_id, g.size"
                                " FROM rollout_groups g JOIN tasks t ON t.id = g.task_id"
                                " WHERE g.consumed_ms IS NULL AND g.n_done = g.size"
                                " ORDER BY g.id LIMIT ?2",
        [ST_GROUP_SAMPLES] = "SELECT ro.id, ro.sample, ro.policy_version, res.reward,"
                             " res.resolved, d.prompt_tokens, d.response_tokens, d.logprobs"
                             " FROM rollouts ro JOIN results res ON res.rollout_id = ro.id"
                             " JOIN rollout_data d ON d.rollout_id = ro.id"
                             " WHERE ro.group_id = ?1 ORDER BY ro.sample",
        [ST_GROUP_CONSUME] = "UPDATE rollout_groups SET consumed_ms = ?2 WHERE id = ?1"
                             " AND consumed_ms IS NULL AND n_done = size",
        [ST_GROUP_STATE] = "SELECT size, n_done, n_infra_error, consumed_ms IS NOT NULL"
                           " FROM rollout_groups WHERE id = ?1",
        [ST_METRIC_ADD] = "INSERT INTO metrics (run_id, step, name, value, time_ms)"
                          " VALUES (?1, ?2, ?3, ?4, ?5)",
};

int64_t db_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int db_fail(struct swerve_db *db, int rc, const char *what)
{
	const char *msg = db && db->sql ? sqlite3_errmsg(db->sql) : sqlite3_errstr(rc);
	const char *path = db && db->path ? db->path : "?";
	int code;

	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return swerve_error_set(SWERVE_EBUSY,
		                        "database %s: %s: locked by another process for more "
		                        "than %d ms (%s)",
		                        path, what, db ? db->busy_timeout_ms : 0, msg);
	case SQLITE_FULL:
		return swerve_error_set(SWERVE_EIO, "database %s: %s: disk full (%s)", path, what,
		                        msg);
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return swerve_error_set(SWERVE_ECORRUPT, "database %s: %s: corrupted file (%s)",
		                        path, what, msg);
	case SQLITE_NOMEM: code = SWERVE_ENOMEM; break;
	case SQLITE_IOERR:
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
	case SQLITE_PROTOCOL: code = SWERVE_EIO; break;
	case SQLITE_CONSTRAINT:
	case SQLITE_TOOBIG:
	case SQLITE_RANGE:
	case SQLITE_MISMATCH: code = SWERVE_EINVAL; break;
	default: code = SWERVE_ERROR;
	}
	return swerve_error_set(code, "database %s: %s: %s", path, what, msg);
}

sqlite3_stmt *db_stmt(struct swerve_db *db, enum db_stmt which)
{
	sqlite3_stmt *st = db->stmt[which];
	if (!st) {
		int rc = sqlite3_prepare_v3(db->sql, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
		                            &st, NULL);
		if (rc != SQLITE_OK) {
			db_fail(db, rc, "prepare");
			return NULL;
		}
		db->stmt[which] = st;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

int db_step_done(struct swerve_db *db, sqlite3_stmt *st, const char *what)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE) {
		int err = db_fail(db, rc, what);
		sqlite3_reset(st);
		return err;
	}
	sqlite3_reset(st);
	return 0;
}

static int exec(struct swerve_db *db, const char *sql, const char *what)
{
	int rc = sqlite3_exec(db->sql, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_fail(db, rc, what);
}

int db_tx_begin(struct swerve_db *db, const char *what)
{
	int err;
	if (db->user_tx)
		return exec(db, "SAVEPOINT swerve_op", what);
	if ((err = db_wlock_acquire(db, what)))
		return err;
	if ((err = exec(db, "BEGIN IMMEDIATE", what)))
		db_wlock_release(db);
	return err;
}

int db_tx_end(struct swerve_db *db, int ok, const char *what)
{
	int nested = db->user_tx;
	if (ok == 0) {
		int rc = exec(db, nested ? "RELEASE swerve_op" : "COMMIT", what);
		if (rc == 0) {
			if (!nested)
				db_wlock_release(db);
			return 0;
		}
		ok = rc;
	}
	/* Keep the first error's message: the rollback must not mask it. */
	if (!sqlite3_get_autocommit(db->sql))
		sqlite3_exec(db->sql,
		             nested ? "ROLLBACK TO swerve_op; RELEASE swerve_op" : "ROLLBACK", NULL,
		             NULL, NULL);
	if (!nested)
		db_wlock_release(db);
	return ok;
}

int db_read_begin(struct swerve_db *db, const char *what)
{
	if (!sqlite3_get_autocommit(db->sql))
		return 0;
	return exec(db, "BEGIN", what);
}

void db_read_end(struct swerve_db *db)
{
	if (!db->user_tx && !sqlite3_get_autocommit(db->sql))
		sqlite3_exec(db->sql, "COMMIT", NULL, NULL, NULL);
}

int swerve_db_begin(struct swerve_db *db)
{
	if (db->user_tx)
		return swerve_error_set(SWERVE_EINVAL,
		                        "database %s: begin: already inside a "
		                        "transaction",
		                        db->path);
	int rc = db_wlock_acquire(db, "begin");
	if (rc)
		return rc;
	rc = exec(db, "BEGIN IMMEDIATE", "begin");
	if (rc == 0)
		db->user_tx = 1;
	else
		db_wlock_release(db);
	return rc;
}

int swerve_db_commit(struct swerve_db *db)
{
	if (!db->user_tx)
		return swerve_error_set(SWERVE_EINVAL, "database %s: commit: no transaction",
		                        db->path);
	int rc = exec(db, "COMMIT", "commit");
	if (rc != 0)
		sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
	db->user_tx = 0;
	db_wlock_release(db);
	return rc;
}

void swerve_db_rollback(struct swerve_db *db)
{
	if (db->user_tx && !sqlite3_get_autocommit(db->sql))
		sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
	db->user_tx = 0;
	db_wlock_release(db);
}

/* ---- opening ---------------------------------------------------------------- */

/* Short sleeps with jitter: waiters retry soon after the writer commits
 * (a result transaction takes well under a millisecond). */
static int busy_handler(void *arg, int count)
{
	struct swerve_db *db = arg;
	long long now = mono_us();
	if (count == 0)
		db->busy_start_us = now;
	if (now - db->busy_start_us >= (long long)db->busy_timeout_ms * 1000)
		return 0;
	db->rng = db->rng * 1103515245u + 12345u;
	long long cap = count < 4 ? 200 : count < 16 ? 500 : 1000;
	usleep((useconds_t)(50 + (db->rng >> 8) % (unsigned)cap));
	return 1;
}

static int pragma_int(struct swerve_db *db, const char *sql, int *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(db, rc, "read schema version");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return db_fail(db, rc, "read schema version");
	return 0;
}

/* Checks the file is ours and not from a newer swerve; with migrate, brings
 * an older schema up to date in one transaction. */
static int check_schema(struct swerve_db *db, int migrate)
{
	int version = 0, app = 0, tables = 0, err;

	if ((err = pragma_int(db, "PRAGMA user_version", &version)) ||
	    (err = pragma_int(db, "PRAGMA application_id", &app)))
		return err;
	if (version == SWERVE_DB_SCHEMA_VERSION && app == SWERVE_DB_APPLICATION_ID) {
		db->schema_version = version;
		return 0;
	}
	if (!migrate) {
		if (version > SWERVE_DB_SCHEMA_VERSION)
			goto newer;
		if (version == 0 && app == 0)
			return swerve_error_set(SWERVE_ENOTFOUND,
			                        "database %s: not initialised (run `swerve db init "
			                        "%s`)",
			                        db->path, db->path);
		if (app != SWERVE_DB_APPLICATION_ID)
			goto foreign;
		return swerve_error_set(SWERVE_EVERSION,
		                        "database %s: schema version %d is older than this "
		                        "swerve's %d; open it read-write once to migrate",
		                        db->path, version, SWERVE_DB_SCHEMA_VERSION);
	}
	if ((err = exec(db, "BEGIN IMMEDIATE", "migrate")))
		return err;
	/* Re-read under the write lock: another process may have migrated. */
	if ((err = pragma_int(db, "PRAGMA user_version", &version)) ||
	    (err = pragma_int(db, "PRAGMA application_id", &app)) ||
	    (err = pragma_int(db, "SELECT count(*) FROM sqlite_schema", &tables)))
		goto rollback;
	if (version > SWERVE_DB_SCHEMA_VERSION) {
		sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
		goto newer;
	}
	if (app != SWERVE_DB_APPLICATION_ID && (app != 0 || version != 0 || tables != 0)) {
		sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
		goto foreign;
	}
	for (int v = version; v < SWERVE_DB_SCHEMA_VERSION; v++)
		if ((err = exec(db, migrations[v], "migrate")))
			goto rollback;
	char sql[128];
	snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; PRAGMA user_version = %d",
	         SWERVE_DB_APPLICATION_ID, SWERVE_DB_SCHEMA_VERSION);
	if ((err = exec(db, sql, "migrate")) || (err = exec(db, "COMMIT", "migrate")))
		goto rollback;
	db->schema_version = SWERVE_DB_SCHEMA_VERSION;
	return 0;
rollback:
	sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
	return err;
newer:
	return swerve_error_set(SWERVE_EVERSION,
	                        "database %s: schema version %d is newer than this swerve's %d "
	                        "(written by a newer swerve; upgrade swerve)",
	                        db->path, version, SWERVE_DB_SCHEMA_VERSION);
foreign:
	return swerve_error_set(SWERVE_ECORRUPT,
	                        "database %s: not a swerve database (application_id 0x%x, "
	                        "user_version %d)",
	                        db->path, (unsigned)app, version);
}

int swerve_db_open(struct swerve_db **out, const char *path, const struct swerve_db_opts *opts)
{
	struct swerve_db_opts def = SWERVE_DB_OPTS_INIT;
	struct swerve_db *db = NULL;
	struct stat sb;
	int err, rc, flags;
	char journal[16] = "";

	if (!opts)
		opts = &def;
	if (!path || !*path)
		return swerve_error_set(SWERVE_EINVAL, "database: empty path");
	if (opts->version != SWERVE_DB_OPTS_VERSION)
		return swerve_error_set(SWERVE_EINVAL,
		                        "database %s: options version %d, expected %d", path,
		                        opts->version, SWERVE_DB_OPTS_VERSION);
	if ((!opts->create || opts->readonly) && stat(path, &sb) != 0)
		return swerve_error_set(errno == ENOENT ? SWERVE_ENOTFOUND : SWERVE_EIO,
		                        "database %s: %s", path, strerror(errno));
	db = calloc(1, sizeof(*db));
	if (!db || !(db->path = strdup(path))) {
		free(db);
		return swerve_error_set(SWERVE_ENOMEM, "database %s: out of memory", path);
	}
	db->busy_timeout_ms = opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 5000;
	db->wlock_fd = -1;
	db->rng = (unsigned)getpid() ^ (unsigned)mono_us();
	flags = SQLITE_OPEN_NOMUTEX |
	        (opts->readonly ? SQLITE_OPEN_READONLY
	                        : SQLITE_OPEN_READWRITE | (opts->create ? SQLITE_OPEN_CREATE : 0));
	rc = sqlite3_open_v2(path, &db->sql, flags, NULL);
	if (rc != SQLITE_OK) {
		err = db_fail(db, rc, "open");
		goto fail;
	}
	sqlite3_extended_result_codes(db->sql, 1);
	sqlite3_busy_handler(db->sql, busy_handler, db);

	/* The first statement reads the header: a file that is not a database
	 * fails here with SQLITE_NOTADB. */
	if (!opts->readonly) {
		sqlite3_stmt *st;
		rc = sqlite3_prepare_v2(db->sql, "PRAGMA journal_mode = WAL", -1, &st, NULL);
		if (rc == SQLITE_OK) {
			rc = sqlite3_step(st);
			if (rc == SQLITE_ROW) {
				snprintf(journal, sizeof(journal), "%s",
				         (const char *)sqlite3_column_text(st, 0));
				rc = SQLITE_OK;
			}
			sqlite3_finalize(st);
		}
		if (rc != SQLITE_OK) {
			err = db_fail(db, rc, "set WAL mode");
			goto fail;
		}
		if (strcmp(journal, "wal") != 0) {
			err = swerve_error_set(SWERVE_EUNSUPPORTED,
			                       "database %s: WAL mode refused (journal_mode %s); "
			                       "the file system must support shared memory",
			                       path, journal);
			goto fail;
		}
	}
	if ((err = exec(db,
	                opts->sync_full ? "PRAGMA synchronous = FULL"
	                                : "PRAGMA synchronous = NORMAL",
	                "set synchronous")) ||
	    (err = exec(db, "PRAGMA foreign_keys = ON", "enable foreign keys")))
		goto fail;
	/* Reads of token blobs dominate the trainer's side: a 64 MiB cache and
	 * memory-mapped reads (no pread copy) took it from ~60k to ~90k+
	 * rollouts/s of 10 KiB each (tests/bench/RESULTS.md). */
	char pragmas[128];
	snprintf(pragmas, sizeof(pragmas), "PRAGMA cache_size = -%d; PRAGMA mmap_size = %lld",
	         (opts->cache_mb > 0 ? opts->cache_mb : 64) * 1024,
	         opts->mmap_mb < 0 ? 0LL : (long long)(opts->mmap_mb ? opts->mmap_mb : 1024) << 20);
	if ((err = exec(db, pragmas, "set cache")))
		goto fail;
	if ((err = check_schema(db, !opts->readonly)))
		goto fail;
	if (!opts->readonly && (err = db_wlock_open(db)))
		goto fail;
	*out = db;
	return 0;
fail:
	swerve_db_close(db);
	return err;
}

void swerve_db_close(struct swerve_db *db)
{
	if (!db)
		return;
	if (db->user_tx)
		swerve_db_rollback(db);
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(db->stmt[i]);
	sqlite3_close(db->sql);
	db_wlock_close(db);
	free(db->path);
	free(db);
}

int swerve_db_schema_version(const struct swerve_db *db)
{
	return db->schema_version;
}

int swerve_db_check(struct swerve_db *db)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db->sql, "PRAGMA integrity_check(1)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(db, rc, "integrity check");
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		int err = db_fail(db, rc, "integrity check");
		sqlite3_finalize(st);
		return err;
	}
	const char *res = (const char *)sqlite3_column_text(st, 0);
	if (!res || strcmp(res, "ok") != 0) {
		swerve_error_set(SWERVE_ECORRUPT, "database %s: integrity check: %s", db->path,
		                 res ? res : "(null)");
		sqlite3_finalize(st);
		return SWERVE_ECORRUPT;
	}
	sqlite3_finalize(st);
	return 0;
}

/* ---- runs, tasks, metrics ---------------------------------------------------- */

int swerve_db_run_create(int64_t *out_run, struct swerve_db *db, const char *name,
                         const struct swerve_db_run_opts *opts)
{
	struct swerve_db_run_opts def = SWERVE_DB_RUN_OPTS_INIT;
	sqlite3_stmt *st;
	int rc;

	if (!opts)
		opts = &def;
	if (!name || !*name)
		return swerve_error_set(SWERVE_EINVAL, "run: empty name");
	if (opts->version != SWERVE_DB_RUN_OPTS_VERSION)
		return swerve_error_set(SWERVE_EINVAL, "run %s: options version %d, expected %d",
		                        name, opts->version, SWERVE_DB_RUN_OPTS_VERSION);
	if (opts->max_attempts < 0 || opts->backoff_ms < 0 || opts->max_backoff_ms < 0)
		return swerve_error_set(SWERVE_EINVAL, "run %s: negative attempts or backoff",
		                        name);
	if (!(st = db_stmt(db, ST_RUN_CREATE)))
		return swerve_error_code();
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, opts->max_attempts ? opts->max_attempts : 3);
	sqlite3_bind_int(st, 3, opts->backoff_ms ? opts->backoff_ms : 1000);
	sqlite3_bind_int(st, 4, opts->max_backoff_ms ? opts->max_backoff_ms : 60000);
	if (opts->config)
		sqlite3_bind_text(st, 5, opts->config, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, db_now_ms());
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_CONSTRAINT_UNIQUE)
		return swerve_error_set(SWERVE_EEXIST, "run %s: already exists", name);
	if (rc != SQLITE_DONE)
		return db_fail(db, rc, "create run");
	*out_run = sqlite3_last_insert_rowid(db->sql);
	return 0;
}

int swerve_db_run_find(int64_t *out_run, struct swerve_db *db, const char *name)
{
	sqlite3_stmt *st = db_stmt(db, ST_RUN_FIND);
	int rc;
	if (!st)
		return swerve_error_code();
	sqlite3_bind_text(st, 1, name ? name : "", -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out_run = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
		return 0;
	}
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return swerve_error_set(SWERVE_ENOTFOUND, "run %s: not found in %s",
		                        name ? name : "", db->path);
	return db_fail(db, rc, "find run");
}

int swerve_db_task_upsert(int64_t *out_task, struct swerve_db *db, const char *instance_id,
                          const char *repo, const char *base_commit, const char *task_json)
{
	sqlite3_stmt *st;
	int rc;
	if (!instance_id || !*instance_id)
		return swerve_error_set(SWERVE_EINVAL, "task: empty instance_id");
	if (!repo || !*repo || !base_commit || !*base_commit || !task_json)
		return swerve_error_set(SWERVE_EINVAL, "task %s: missing %s", instance_id,
		                        !repo || !*repo                 ? "repo"
		                        : !base_commit || !*base_commit ? "base_commit"
		                                                        : "task JSON");
	if (!(st = db_stmt(db, ST_TASK_UPSERT)))
		return swerve_error_code();
	sqlite3_bind_text(st, 1, instance_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, repo, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, base_commit, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, task_json, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, db_now_ms());
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return db_fail(db, rc, "upsert task");
	}
	int64_t id = sqlite3_column_int64(st, 0);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(db, rc, "upsert task");
	*out_task = id;
	return 0;
}

int swerve_db_metric_add(struct swerve_db *db, int64_t run, int64_t step, const char *name,
                         double value)
{
	sqlite3_stmt *st;
	int rc;
	if (!name || !*name)
		return swerve_error_set(SWERVE_EINVAL, "metric: empty name");
	if (!(st = db_stmt(db, ST_METRIC_ADD)))
		return swerve_error_code();
	sqlite3_bind_int64(st, 1, run);
	sqlite3_bind_int64(st, 2, step);
	sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 4, value);
	sqlite3_bind_int64(st, 5, db_now_ms());
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return swerve_error_set(SWERVE_ENOTFOUND, "metric %s: run %lld does not exist",
		                        name, (long long)run);
	if (rc != SQLITE_DONE)
		return db_fail(db, rc, "add metric");
	return 0;
}

/* ---- stats -------------------------------------------------------------------- */

static int count(struct swerve_db *db, const char *sql, int64_t run, int64_t *out, double *sum)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(db, rc, "stats");
	sqlite3_bind_int64(st, 1, run);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		if (sum)
			*sum = sqlite3_column_double(st, 1);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? 0 : db_fail(db, rc, "stats");
}

int swerve_db_stats(struct swerve_db_stats *out, struct swerve_db *db, int64_t run)
{
	struct swerve_db_stats s;
	int err;
	memset(&s, 0, sizeof(s));
	if ((err = db_read_begin(db, "stats")))
		return err;
#define RUN(col) " WHERE (?1 <= 0 OR " col " = ?1)"
	struct {
		const char *sql;
		int64_t *out;
		double *sum;
	} q[] = {
	        {"SELECT count(*) FROM tasks WHERE ?1 <= 0 OR id IN (SELECT task_id FROM "
	         "rollout_groups WHERE run_id = ?1)",
	         &s.tasks, NULL},
	        {"SELECT count(*) FROM runs" RUN("id"), &s.runs, NULL},
	        {"SELECT count(*) FROM rollouts" RUN("run_id") " AND status = 'pending'",
	         &s.pending, NULL},
	        {"SELECT count(*) FROM rollouts" RUN("run_id") " AND status = 'running'",
	         &s.running, NULL},
	        {"SELECT count(*) FROM rollouts" RUN("run_id") " AND status = 'done'", &s.done,
	         NULL},
	        {"SELECT count(*) FROM rollouts" RUN("run_id") " AND status = 'infra_error'",
	         &s.infra_error, NULL},
	        {"SELECT count(*) FROM rollout_groups" RUN("run_id"), &s.groups, NULL},
	        {"SELECT count(*) FROM rollout_groups" RUN("run_id") " AND n_done = size",
	         &s.groups_complete, NULL},
	        {"SELECT count(*) FROM rollout_groups" RUN("run_id") " AND consumed_ms IS NOT NULL",
	         &s.groups_consumed, NULL},
	        {"SELECT count(*) FROM rollout_groups" RUN("run_id") " AND n_infra_error > 0",
	         &s.groups_blocked, NULL},
	        {"SELECT count(*) FROM results res JOIN rollouts ro ON ro.id = res.rollout_id" RUN(
	                 "ro.run_id") " AND res.resolved = 'FULL'",
	         &s.resolved, NULL},
	        {"SELECT count(res.reward), coalesce(sum(res.reward), 0) FROM results res JOIN "
	         "rollouts ro ON ro.id = res.rollout_id" RUN("ro.run_id"),
	         &s.rewarded, &s.reward_sum},
	        {"SELECT count(*) FROM metrics" RUN("run_id"), &s.metrics, NULL},
	};
#undef RUN
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++)
		if ((err = count(db, q[i].sql, run, q[i].out, q[i].sum)))
			break;
	db_read_end(db);
	if (err)
		return err;
	*out = s;
	return 0;
}
