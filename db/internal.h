/* internal.h - what the db/ sources share and nothing else sees: the handle, the
 * statement cache, transactions and SQLite error mapping. Not installed. */
#ifndef SWERVE_DB_INTERNAL_H
#define SWERVE_DB_INTERNAL_H

#include <sqlite3.h>

#include "db.h"

/* Every SQL statement the library runs more than once: prepared on first use
 * and cached per handle (sqlite3_prepare_v3 with SQLITE_PREPARE_PERSISTENT). */
enum db_stmt {
	ST_RUN_CREATE,
	ST_RUN_FIND,
	ST_TASK_UPSERT,
	ST_GROUP_FIND,
	ST_GROUP_INSERT,
	ST_SLOT_FIND,
	ST_ROLLOUT_INSERT,
	ST_DATA_INSERT,
	ST_EXPIRE,
	ST_CLAIM,
	ST_CLAIM_TASK,
	ST_HEARTBEAT,
	ST_LEASE_STATE,
	ST_DONE,
	ST_RESULT_INSERT,
	ST_TEST_INSERT,
	ST_FAIL_INFO,
	ST_FAIL_RETRY,
	ST_FAIL_GIVEUP,
	ST_REQUEUE,
	ST_ROWS,
	ST_TESTS,
	ST_GROUPS_READY,
	ST_GROUPS_READY_ANY,
	ST_GROUP_SAMPLES,
	ST_GROUP_CONSUME,
	ST_GROUP_STATE,
	ST_METRIC_ADD,
	ST__COUNT
};

struct swerve_db {
	sqlite3 *sql;
	char *path;
	int busy_timeout_ms;
	int schema_version;
	int user_tx;             /* inside swerve_db_begin() */
	long long busy_start_us; /* first busy callback of the current wait */
	unsigned rng;            /* jitter for the busy handler */
	sqlite3_stmt *stmt[ST__COUNT];
	struct wlock_page *wlock; /* wlock.c; NULL for read-only handles */
	int wlock_fd;
	int wlock_held;
};

/* Milliseconds since the epoch (CLOCK_REALTIME): leases are compared across
 * processes, so a wall clock shared by all of them. */
int64_t db_now_ms(void);

/* The cached statement, reset and with bindings cleared; NULL with the
 * message set when preparation fails. */
sqlite3_stmt *db_stmt(struct swerve_db *db, enum db_stmt which);

/* Maps a SQLite result code to a SWERVE_E* code and sets the message
 * "database <path>: <what>: <reason>". */
int db_fail(struct swerve_db *db, int rc, const char *what);

/* A write transaction: BEGIN IMMEDIATE, or a SAVEPOINT inside a user
 * transaction. db_tx_end commits when ok == 0 and rolls back otherwise;
 * it returns ok, or the commit's error. */
int db_tx_begin(struct swerve_db *db, const char *what);
int db_tx_end(struct swerve_db *db, int ok, const char *what);

/* A read transaction (BEGIN DEFERRED: one consistent snapshot), or nothing
 * inside a user transaction. */
int db_read_begin(struct swerve_db *db, const char *what);
void db_read_end(struct swerve_db *db);

/* The writer lock (wlock.c) every swerve write transaction takes before
 * BEGIN IMMEDIATE: blocking, robust against holders that die. acquire is a
 * no-op when already held or when the handle has none. */
int db_wlock_open(struct swerve_db *db);
void db_wlock_close(struct swerve_db *db);
int db_wlock_acquire(struct swerve_db *db, const char *what);
void db_wlock_release(struct swerve_db *db);

/* Runs a statement to completion, expecting no rows. */
int db_step_done(struct swerve_db *db, sqlite3_stmt *st, const char *what);

#endif
