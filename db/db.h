/* db.h - swerve's SQLite store: runs, tasks, a crash-safe rollout queue with
 * leases, results, and the trainer's consumer API. The folder's one public
 * header.
 *
 * SQLite is where the runner and the trainer meet; they never call each
 * other. The store must never lose or duplicate a reward, whatever crashes:
 *
 *   1. A rollout's result and its per-test statuses are written in ONE
 *      transaction together with the rollout's move to `done`; a crash
 *      before COMMIT leaves no trace, a crash after leaves all of it.
 *   2. Only the holder of the current lease (rollout id + attempt number, as
 *      claim returned it) can complete, fail or heartbeat a rollout; a worker
 *      whose lease expired and was re-claimed by another gets an error, never
 *      a second result.
 *   3. Infrastructure failures are retried with exponential backoff; after the
 *      run's max_attempts they become status `infra_error`, which carries no
 *      reward. A group with an `infra_error` sample is "blocked": it is never
 *      handed to the trainer (no fake 0 reward); swerve_db_requeue_infra()
 *      puts such samples back in the queue once the cause is fixed.
 *   4. A group is complete when all of its `size` samples are `done`; the
 *      trainer sees a complete group once: swerve_db_groups_consume() marks
 *      groups consumed all-or-nothing.
 *
 * Each process (or thread) opens its own handle; a handle is not shared
 * between threads. Every function returns 0, a named negative SWERVE_E* code
 * (sandbox/error.h) or -1, with a one-line message in swerve_error_last():
 * SWERVE_EBUSY (locked past the busy timeout), SWERVE_EIO (disk full, I/O),
 * SWERVE_ECORRUPT (corrupted file), SWERVE_EVERSION (schema from a newer
 * swerve), SWERVE_EINVAL (bad input, naming the field), SWERVE_ENOTFOUND,
 * SWERVE_EEXIST (conflicting duplicate), SWERVE_ETIMEOUT (lease lost). On any
 * error no partial change is recorded. Out-params are set only on success. */
#ifndef SWERVE_DB_H
#define SWERVE_DB_H

#include <stddef.h>
#include <stdint.h>

#include "sandbox/error.h"

/* The schema version this build writes (PRAGMA user_version). */
#define SWERVE_DB_SCHEMA_VERSION 1

struct swerve_db;

/* ---- opening --------------------------------------------------------------- */

#define SWERVE_DB_OPTS_VERSION 1
struct swerve_db_opts {
	int version;         /* SWERVE_DB_OPTS_VERSION */
	int create;          /* create the file if missing (else SWERVE_ENOTFOUND) */
	int busy_timeout_ms; /* wait this long for a lock, then SWERVE_EBUSY; 0: 5000 */
	int sync_full;       /* synchronous=FULL (survive power loss); default NORMAL */
	int readonly;        /* no writes, no migration (stats/export on a live db) */
	int cache_mb;        /* page cache per handle, MiB (0: 64) */
	int mmap_mb;         /* memory-map up to this many MiB for reads (0: 1024; < 0: off) */
};
#define SWERVE_DB_OPTS_INIT                                                                        \
	{                                                                                          \
		SWERVE_DB_OPTS_VERSION, 1, 5000, 0, 0, 64, 1024                                    \
	}

/* Opens (and with opts->create, creates) the database at path (beside it:
 * path-wal, path-shm, and path-wlock, swerve's writer lock), enables WAL,
 * foreign keys and the busy timeout, and migrates an older schema to
 * SWERVE_DB_SCHEMA_VERSION. opts may be NULL (defaults). Errors:
 * SWERVE_EVERSION for a newer schema, SWERVE_ECORRUPT for a file that is not
 * a database or another program's database, SWERVE_ENOTFOUND. */
int swerve_db_open(struct swerve_db **out, const char *path, const struct swerve_db_opts *opts);

/* Closes the handle (finalizes cached statements). NULL is a no-op. */
void swerve_db_close(struct swerve_db *db);

/* The schema version stored in the open file. Cannot fail. */
int swerve_db_schema_version(const struct swerve_db *db);

/* PRAGMA integrity_check: 0 when "ok", else SWERVE_ECORRUPT naming the first
 * problem. */
int swerve_db_check(struct swerve_db *db);

/* ---- runs and tasks ------------------------------------------------------- */

#define SWERVE_DB_RUN_OPTS_VERSION 1
struct swerve_db_run_opts {
	int version;        /* SWERVE_DB_RUN_OPTS_VERSION */
	int max_attempts;   /* infra attempts before infra_error (0: 3) */
	int backoff_ms;     /* first retry delay, doubled per attempt (0: 1000) */
	int max_backoff_ms; /* cap on the delay (0: 60000) */
	const char *config; /* free-form JSON recorded with the run, or NULL */
};
#define SWERVE_DB_RUN_OPTS_INIT                                                                    \
	{                                                                                          \
		SWERVE_DB_RUN_OPTS_VERSION, 3, 1000, 60000, NULL                                   \
	}

/* Creates a run named name. SWERVE_EEXIST if the name is taken. */
int swerve_db_run_create(int64_t *out_run, struct swerve_db *db, const char *name,
                         const struct swerve_db_run_opts *opts);

/* Finds a run by name; SWERVE_ENOTFOUND if absent. */
int swerve_db_run_find(int64_t *out_run, struct swerve_db *db, const char *name);

/* Inserts or updates a task by instance_id (the newest fields win). task_json
 * is the whole SWE-bench instance as JSON text (stored, not parsed). */
int swerve_db_task_upsert(int64_t *out_task, struct swerve_db *db, const char *instance_id,
                          const char *repo, const char *base_commit, const char *task_json);

/* ---- the queue ------------------------------------------------------------ */

/* One sample to evaluate. Token arrays are optional (NULL, 0); when both
 * response tokens and logprobs are given their counts must match. */
struct swerve_db_rollout {
	int64_t run;
	int64_t task;
	int64_t group;          /* caller's group key, unique within the run */
	int group_size;         /* G: samples in the group (same for every sample) */
	int sample;             /* 0 .. group_size-1 */
	int64_t policy_version; /* policy that produced the patch */
	const char *patch;      /* unified diff; "" is an empty patch */
	const int32_t *prompt_tokens;
	size_t n_prompt_tokens;
	const int32_t *response_tokens;
	size_t n_response_tokens;
	const float *logprobs; /* per response token */
	size_t n_logprobs;
};

/* Enqueues a rollout as `pending`. Idempotent: the same task and patch hash
 * in the same (run, group, sample) slot is stored once (*out_created 0, the
 * existing id returned); a different task or patch in a taken slot is
 * SWERVE_EEXIST. out_created may be NULL. */
int swerve_db_enqueue(int64_t *out_rollout, int *out_created, struct swerve_db *db,
                      const struct swerve_db_rollout *r);

/* A claimed rollout: what a worker needs to run one episode. Strings are
 * owned by the claim array (swerve_db_claims_free). */
struct swerve_db_claim {
	int64_t rollout;
	int attempt; /* the lease: pass (rollout, attempt) back */
	int64_t run;
	int64_t group;
	int sample;
	int64_t policy_version;
	char *instance_id;
	char *repo;
	char *base_commit;
	char *task_json;
	char *patch;
	char patch_sha256[65];
};

/* Claims up to max (<= 65536) pending rollouts of run (> 0) for worker,
 * oldest first, leased for lease_ms (> 0). Expired leases first return to the queue (or become
 * infra_error when their attempts are used up). *out_n may be 0 (nothing
 * ready); *out is then NULL. */
int swerve_db_claim(struct swerve_db_claim **out, size_t *out_n, struct swerve_db *db, int64_t run,
                    const char *worker, size_t max, int lease_ms);
void swerve_db_claims_free(struct swerve_db_claim *claims, size_t n);

/* Extends the lease of (rollout, attempt) to now + lease_ms. SWERVE_ETIMEOUT
 * if the lease was lost (expired and re-claimed, or completed). */
int swerve_db_heartbeat(struct swerve_db *db, int64_t rollout, int attempt, int lease_ms);

/* Test status categories and statuses are SWE-bench's names. */
struct swerve_db_test_status {
	const char *test_id;
	const char *status;   /* PASSED FAILED SKIPPED ERROR XFAIL */
	const char *category; /* FAIL_TO_PASS PASS_TO_PASS FAIL_TO_FAIL PASS_TO_FAIL OTHER */
};

struct swerve_db_counts {
	int success, failure;
};

/* A finished episode. Every string is borrowed for the call. */
struct swerve_db_result {
	const char *verdict;  /* sandbox verdict: OK RE SG TO ML OL SV XX */
	const char *resolved; /* FULL PARTIAL NO */
	int has_reward;       /* 0: reward is NULL (e.g. not scored) */
	double reward;
	int empty_patch;
	int patch_applied;
	const char *apply_method; /* e.g. "git_apply", "fuzzy"; NULL if none */
	struct swerve_db_counts f2p, p2p, f2f, p2f;
	int64_t workspace_ms, apply_ms, test_ms, total_ms;
	int64_t max_rss_kb;
	int exit_code;
	const char *output; /* captured output (already capped), or NULL */
	int output_truncated;
	const struct swerve_db_test_status *tests;
	size_t n_tests;
};

/* Records result and its test statuses and marks the rollout `done`, in one
 * transaction, if (rollout, attempt) still holds the lease (an expired lease
 * that nobody has re-claimed yet still does). SWERVE_ETIMEOUT
 * if the lease was lost; SWERVE_EEXIST if already done; SWERVE_EINVAL naming
 * the bad field (nothing recorded). */
int swerve_db_complete(struct swerve_db *db, int64_t rollout, int attempt, const char *worker,
                       const struct swerve_db_result *result);

/* An infrastructure failure of (rollout, attempt): back to `pending` after
 * backoff_ms * 2^(attempt-1) (capped), or `infra_error` once the run's
 * max_attempts are used. *out_gave_up (may be NULL) says which. Never a
 * reward. SWERVE_ETIMEOUT if the lease was lost. */
int swerve_db_fail(int *out_gave_up, struct swerve_db *db, int64_t rollout, int attempt,
                   const char *reason);

/* Returns every infra_error rollout of run (<= 0: all runs) to `pending`
 * with its attempts reset; *out_n (may be NULL) gets how many. */
int swerve_db_requeue_infra(size_t *out_n, struct swerve_db *db, int64_t run);

/* Deletes every rollout of run (<= 0 is SWERVE_EINVAL) with its data,
 * result, test statuses and group, in one transaction; the run, its metrics
 * and the tasks stay. For re-evaluating a run from scratch (eval --redo).
 * *out_n (may be NULL) gets the number of rollouts deleted. */
int swerve_db_run_clear(size_t *out_n, struct swerve_db *db, int64_t run);

/* The ids of every run, oldest first (*out malloc'd; free it). */
int swerve_db_run_list(int64_t **out, size_t *out_n, struct swerve_db *db);

/* Ends at once the leases of run's (<= 0: every run's) running rollouts
 * whose owner (the worker name given to swerve_db_claim) alive() says is
 * gone, so the next claim returns them to the queue (counting the attempt)
 * instead of waiting for the lease to run out. For a pool restarted after a
 * crash. *out_n (may be NULL) gets the number of leases ended. */
int swerve_db_leases_reap(size_t *out_n, struct swerve_db *db, int64_t run,
                          int (*alive)(const char *owner, void *payload), void *payload);

/* Groups several calls (e.g. thousands of enqueues) into one transaction:
 * calls made in between join it (as savepoints) instead of committing each.
 * begin takes the write lock at once (BEGIN IMMEDIATE). */
int swerve_db_begin(struct swerve_db *db);
int swerve_db_commit(struct swerve_db *db);
void swerve_db_rollback(struct swerve_db *db);

/* ---- listing results (run reports, export) --------------------------------- */

/* One rollout and, when status is "done", its result (else result NULL).
 * Everything is borrowed for the duration of the callback. tests/n_tests are
 * not filled here (see swerve_db_tests_foreach). */
struct swerve_db_row {
	int64_t rollout;
	int64_t run;
	const char *instance_id;
	int64_t group;
	int sample;
	int64_t policy_version;
	const char *status; /* pending running done infra_error */
	int attempts;
	const char *last_error;
	const char *patch_sha256;
	int patch_empty;
	const struct swerve_db_result *result;
};

/* Calls cb for every rollout of run in (instance_id, group, sample) order; a
 * non-zero return from cb stops the walk and is returned. */
int swerve_db_results_foreach(struct swerve_db *db, int64_t run,
                              int (*cb)(const struct swerve_db_row *row, void *payload),
                              void *payload);

/* Calls cb for each per-test status of rollout, in test id order. */
int swerve_db_tests_foreach(struct swerve_db *db, int64_t rollout,
                            int (*cb)(const struct swerve_db_test_status *t, void *payload),
                            void *payload);

/* ---- the trainer's consumer API ------------------------------------------- */

/* One sample of a complete group. Pointers are owned by the batch. */
struct swerve_db_sample {
	int64_t rollout;
	int sample;
	int64_t policy_version;
	int has_reward;
	double reward;
	const char *resolved;
	const int32_t *prompt_tokens;
	size_t n_prompt_tokens;
	const int32_t *response_tokens;
	size_t n_response_tokens;
	const float *logprobs;
	size_t n_logprobs;
};

struct swerve_db_group {
	int64_t id; /* the group's row id: pass it to swerve_db_groups_consume */
	int64_t run;
	int64_t key; /* the caller's group key (swerve_db_rollout.group) */
	const char *instance_id;
	int size;
	struct swerve_db_sample *samples; /* size entries, by sample index */
};

/* A batch of groups. Start from a zeroed one (struct swerve_db_batch b = {0});
 * fetch and take refill it, reusing its memory; swerve_db_batch_free releases
 * it. Everything the groups point to lives until the next refill or free. */
struct swerve_db_batch {
	struct swerve_db_group *groups;
	size_t n;
	size_t cap_;  /* private */
	void *arena_; /* private */
};

/* Fetches up to max complete, unconsumed, unblocked groups of run (<= 0: any
 * run), oldest first, with rewards and token data, into out (emptied first,
 * also on error). Reading does not consume: call swerve_db_groups_consume (or
 * use swerve_db_groups_take). */
int swerve_db_groups_fetch(struct swerve_db_batch *out, struct swerve_db *db, int64_t run,
                           size_t max);

/* Marks groups consumed, all-or-nothing: if any is unknown, incomplete or
 * already consumed, nothing changes and SWERVE_EEXIST (or ENOTFOUND/EINVAL)
 * names it. */
int swerve_db_groups_consume(struct swerve_db *db, const int64_t *groups, size_t n);

/* Fetch + consume in one transaction: each group goes to exactly one caller
 * even with several trainer processes. */
int swerve_db_groups_take(struct swerve_db_batch *out, struct swerve_db *db, int64_t run,
                          size_t max);

void swerve_db_batch_free(struct swerve_db_batch *batch);

/* Records one training metric (step, name, value, now). */
int swerve_db_metric_add(struct swerve_db *db, int64_t run, int64_t step, const char *name,
                         double value);

struct swerve_db_stats {
	int64_t tasks, runs;
	int64_t pending, running, done, infra_error; /* rollouts by status */
	int64_t groups, groups_complete, groups_consumed, groups_blocked;
	int64_t resolved; /* results with resolved = FULL */
	int64_t rewarded; /* results with a non-NULL reward */
	double reward_sum;
	int64_t metrics;
};

/* Counts for run (<= 0: the whole database). */
int swerve_db_stats(struct swerve_db_stats *out, struct swerve_db *db, int64_t run);

/* ---- helpers -------------------------------------------------------------- */

/* SHA-256 of len bytes as 64 lowercase hex digits + NUL. Cannot fail. */
void swerve_sha256_hex(char out[65], const void *data, size_t len);

#endif
