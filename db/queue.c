/* queue.c - the rollout queue: enqueue, claim with a lease, heartbeat,
 * complete, fail with backoff, and listing results.
 *
 * A rollout's life (column rollouts.status):
 *
 *   pending --claim--> running --complete--> done            (terminal)
 *      ^                  |  \--fail, attempts < max--> pending (after backoff)
 *      |                  |   \-fail, attempts = max--> infra_error
 *      +--lease expired---+   (expired at attempts = max: infra_error)
 *   infra_error --swerve_db_requeue_infra--> pending (attempts reset)
 *
 * Invariants (tests/db/ checks each):
 *   1. status = 'done' iff a results row exists for the rollout; both are
 *      written in the same transaction.
 *   2. The lease is (rollout id, attempts): claim increments attempts, so a
 *      worker whose lease expired and was re-claimed holds a stale attempt
 *      number and every write it tries is refused (SWERVE_ETIMEOUT).
 *   3. rollout_groups.n_done / n_infra_error equal the counts of their
 *      rollouts in those states (trigger rollouts_status).
 *   4. An infra_error rollout has no result and no reward. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token blobs are stored in host order, documented as little-endian"
#endif

static int bind_array(sqlite3_stmt *st, int i, const void *p, size_t n, size_t elem)
{
	if (!p || n == 0)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_blob64(st, i, p, (sqlite3_uint64)(n * elem), SQLITE_STATIC);
}

int swerve_db_enqueue(int64_t *out_rollout, int *out_created, struct swerve_db *db,
                      const struct swerve_db_rollout *r)
{
	char sha[65], what[96];
	sqlite3_stmt *st;
	int64_t gid = 0, id = 0;
	int err, rc, created = 0;

	snprintf(what, sizeof(what), "run %lld group %lld sample %d", (long long)r->run,
	         (long long)r->group, r->sample);
	if (r->run <= 0 || r->task <= 0)
		return swerve_error_set(SWERVE_EINVAL, "enqueue %s: %s id %lld is not valid", what,
		                        r->run <= 0 ? "run" : "task",
		                        (long long)(r->run <= 0 ? r->run : r->task));
	if (!r->patch)
		return swerve_error_set(SWERVE_EINVAL,
		                        "enqueue %s: patch is NULL (use \"\" for an "
		                        "empty patch)",
		                        what);
	if (r->group_size < 1 || r->sample < 0 || r->sample >= r->group_size)
		return swerve_error_set(SWERVE_EINVAL,
		                        "enqueue %s: sample index must be in 0..group_size-1 "
		                        "(group_size %d)",
		                        what, r->group_size);
	if ((r->n_prompt_tokens && !r->prompt_tokens) ||
	    (r->n_response_tokens && !r->response_tokens) || (r->n_logprobs && !r->logprobs))
		return swerve_error_set(SWERVE_EINVAL, "enqueue %s: token count without data",
		                        what);
	if (r->n_logprobs && r->n_response_tokens && r->n_logprobs != r->n_response_tokens)
		return swerve_error_set(SWERVE_EINVAL,
		                        "enqueue %s: %zu logprobs for %zu response tokens", what,
		                        r->n_logprobs, r->n_response_tokens);
	swerve_sha256_hex(sha, r->patch, strlen(r->patch));

	if ((err = db_tx_begin(db, "enqueue")))
		return err;
	/* The group: created by its first sample; later samples must agree. */
	if (!(st = db_stmt(db, ST_GROUP_FIND)))
		goto fail;
	sqlite3_bind_int64(st, 1, r->run);
	sqlite3_bind_int64(st, 2, r->group);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		gid = sqlite3_column_int64(st, 0);
		int64_t task = sqlite3_column_int64(st, 1);
		int size = sqlite3_column_int(st, 2);
		sqlite3_reset(st);
		if (task != r->task || size != r->group_size) {
			swerve_error_set(SWERVE_EEXIST,
			                 "enqueue %s: the group holds task %lld with %d samples, "
			                 "not task %lld with %d",
			                 what, (long long)task, size, (long long)r->task,
			                 r->group_size);
			goto fail;
		}
	} else if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		if (!(st = db_stmt(db, ST_GROUP_INSERT)))
			goto fail;
		sqlite3_bind_int64(st, 1, r->run);
		sqlite3_bind_int64(st, 2, r->group);
		sqlite3_bind_int64(st, 3, r->task);
		sqlite3_bind_int(st, 4, r->group_size);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
			swerve_error_set(SWERVE_ENOTFOUND,
			                 "enqueue %s: run %lld or task %lld does "
			                 "not exist",
			                 what, (long long)r->run, (long long)r->task);
			goto fail;
		}
		if (rc != SQLITE_DONE) {
			db_fail(db, rc, "enqueue");
			goto fail;
		}
		gid = sqlite3_last_insert_rowid(db->sql);
	} else {
		sqlite3_reset(st);
		db_fail(db, rc, "enqueue");
		goto fail;
	}

	/* The slot: the same patch again is the same rollout (idempotent). */
	if (!(st = db_stmt(db, ST_SLOT_FIND)))
		goto fail;
	sqlite3_bind_int64(st, 1, gid);
	sqlite3_bind_int(st, 2, r->sample);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		id = sqlite3_column_int64(st, 0);
		int same = strcmp((const char *)sqlite3_column_text(st, 1), sha) == 0;
		sqlite3_reset(st);
		if (!same) {
			swerve_error_set(SWERVE_EEXIST,
			                 "enqueue %s: the slot already holds rollout %lld with a "
			                 "different patch",
			                 what, (long long)id);
			goto fail;
		}
	} else if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		if (!(st = db_stmt(db, ST_ROLLOUT_INSERT)))
			goto fail;
		sqlite3_bind_int64(st, 1, r->run);
		sqlite3_bind_int64(st, 2, gid);
		sqlite3_bind_int(st, 3, r->sample);
		sqlite3_bind_int64(st, 4, r->policy_version);
		sqlite3_bind_text(st, 5, sha, 64, SQLITE_STATIC);
		sqlite3_bind_int64(st, 6, (sqlite3_int64)strlen(r->patch));
		sqlite3_bind_int64(st, 7, db_now_ms());
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE) {
			db_fail(db, rc, "enqueue");
			goto fail;
		}
		id = sqlite3_last_insert_rowid(db->sql);
		if (!(st = db_stmt(db, ST_DATA_INSERT)))
			goto fail;
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_text(st, 2, r->patch, -1, SQLITE_STATIC);
		bind_array(st, 3, r->prompt_tokens, r->n_prompt_tokens, sizeof(int32_t));
		bind_array(st, 4, r->response_tokens, r->n_response_tokens, sizeof(int32_t));
		bind_array(st, 5, r->logprobs, r->n_logprobs, sizeof(float));
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE) {
			db_fail(db, rc, "enqueue");
			goto fail;
		}
		id = sqlite3_last_insert_rowid(db->sql);
		created = 1;
	} else {
		sqlite3_reset(st);
		db_fail(db, rc, "enqueue");
		goto fail;
	}
	if ((err = db_tx_end(db, 0, "enqueue")))
		return err;
	*out_rollout = id;
	if (out_created)
		*out_created = created;
	return 0;
fail:
	return db_tx_end(db, swerve_error_code() ? swerve_error_code() : SWERVE_ERROR, "enqueue");
}

/* ---- claim ------------------------------------------------------------------- */

void swerve_db_claims_free(struct swerve_db_claim *claims, size_t n)
{
	if (!claims)
		return;
	for (size_t i = 0; i < n; i++) {
		free(claims[i].instance_id);
		free(claims[i].repo);
		free(claims[i].base_commit);
		free(claims[i].task_json);
		free(claims[i].patch);
	}
	free(claims);
}

static char *dup_col(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return strdup(t ? (const char *)t : "");
}

static int claim_cmp(const void *a, const void *b)
{
	int64_t x = ((const struct swerve_db_claim *)a)->rollout;
	int64_t y = ((const struct swerve_db_claim *)b)->rollout;
	return (x > y) - (x < y);
}

int swerve_db_claim(struct swerve_db_claim **out, size_t *out_n, struct swerve_db *db, int64_t run,
                    const char *worker, size_t max, int lease_ms)
{
	struct swerve_db_claim *c = NULL;
	int64_t *gids = NULL;
	size_t n = 0;
	sqlite3_stmt *st;
	int64_t now = db_now_ms();
	int err, rc;

	if (run <= 0)
		return swerve_error_set(SWERVE_EINVAL, "claim: run id %lld is not valid",
		                        (long long)run);
	if (lease_ms <= 0)
		return swerve_error_set(SWERVE_EINVAL, "claim: lease of %d ms", lease_ms);
	if (max > 65536)
		return swerve_error_set(SWERVE_EINVAL, "claim: %zu items at once (at most 65536)",
		                        max);
	if (max == 0) {
		*out = NULL;
		*out_n = 0;
		return 0;
	}
	if (!(c = calloc(max, sizeof(*c))) || !(gids = calloc(max, sizeof(*gids)))) {
		free(c);
		return swerve_error_set(SWERVE_ENOMEM, "claim: out of memory for %zu items", max);
	}
	if ((err = db_tx_begin(db, "claim")))
		goto done;
	if (!(st = db_stmt(db, ST_EXPIRE)))
		goto fail;
	sqlite3_bind_int64(st, 1, run);
	sqlite3_bind_int64(st, 2, now);
	if (db_step_done(db, st, "return expired leases"))
		goto fail;

	if (!(st = db_stmt(db, ST_CLAIM)))
		goto fail;
	sqlite3_bind_int64(st, 1, run);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_text(st, 3, worker ? worker : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now + lease_ms);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < max) {
		struct swerve_db_claim *x = &c[n];
		x->rollout = sqlite3_column_int64(st, 0);
		x->attempt = sqlite3_column_int(st, 1);
		gids[n] = sqlite3_column_int64(st, 2);
		x->sample = sqlite3_column_int(st, 3);
		x->policy_version = sqlite3_column_int64(st, 4);
		snprintf(x->patch_sha256, sizeof(x->patch_sha256), "%s",
		         (const char *)sqlite3_column_text(st, 5));
		x->run = run;
		n++;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		db_fail(db, rc, "claim");
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		if (!(st = db_stmt(db, ST_CLAIM_TASK)))
			goto fail;
		sqlite3_bind_int64(st, 1, gids[i]);
		sqlite3_bind_int64(st, 2, c[i].rollout);
		rc = sqlite3_step(st);
		if (rc != SQLITE_ROW) {
			sqlite3_reset(st);
			db_fail(db, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "claim: read task");
			goto fail;
		}
		c[i].group = sqlite3_column_int64(st, 0);
		c[i].instance_id = dup_col(st, 1);
		c[i].repo = dup_col(st, 2);
		c[i].base_commit = dup_col(st, 3);
		c[i].task_json = dup_col(st, 4);
		c[i].patch = dup_col(st, 5);
		sqlite3_reset(st);
		if (!c[i].instance_id || !c[i].repo || !c[i].base_commit || !c[i].task_json ||
		    !c[i].patch) {
			swerve_error_set(SWERVE_ENOMEM, "claim: out of memory");
			goto fail;
		}
	}
	/* RETURNING gives rows in no set order: hand them out oldest first. */
	qsort(c, n, sizeof(*c), claim_cmp);
	if ((err = db_tx_end(db, 0, "claim")))
		goto done;
	*out = n ? c : NULL;
	*out_n = n;
	if (!n)
		free(c);
	c = NULL;
	goto done;
fail:
	err = db_tx_end(db, swerve_error_code() ? swerve_error_code() : SWERVE_ERROR, "claim");
done:
	swerve_db_claims_free(c, n);
	free(gids);
	return err;
}

/* Explains why (rollout, attempt) does not hold a lease. */
static int lease_lost(struct swerve_db *db, int64_t rollout, int attempt, const char *what)
{
	sqlite3_stmt *st = db_stmt(db, ST_LEASE_STATE);
	int rc;
	if (!st)
		return swerve_error_code();
	sqlite3_bind_int64(st, 1, rollout);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return swerve_error_set(SWERVE_ENOTFOUND, "%s rollout %lld: no such rollout", what,
		                        (long long)rollout);
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return db_fail(db, rc, what);
	}
	char status[16], owner[64];
	snprintf(status, sizeof(status), "%s", (const char *)sqlite3_column_text(st, 0));
	int now_attempt = sqlite3_column_int(st, 1);
	snprintf(owner, sizeof(owner), "%s", (const char *)sqlite3_column_text(st, 2));
	sqlite3_reset(st);
	if (strcmp(status, "done") == 0 && now_attempt == attempt)
		return swerve_error_set(SWERVE_EEXIST, "%s rollout %lld: already completed", what,
		                        (long long)rollout);
	return swerve_error_set(
	        SWERVE_ETIMEOUT,
	        "%s rollout %lld: lease of attempt %d lost (now %s, attempt %d%s%s)", what,
	        (long long)rollout, attempt, status, now_attempt, *owner ? ", worker " : "", owner);
}

int swerve_db_heartbeat(struct swerve_db *db, int64_t rollout, int attempt, int lease_ms)
{
	sqlite3_stmt *st;
	int err;
	if (lease_ms <= 0)
		return swerve_error_set(SWERVE_EINVAL, "heartbeat: lease of %d ms", lease_ms);
	if (!(st = db_stmt(db, ST_HEARTBEAT)))
		return swerve_error_code();
	sqlite3_bind_int64(st, 1, rollout);
	sqlite3_bind_int(st, 2, attempt);
	sqlite3_bind_int64(st, 3, db_now_ms() + lease_ms);
	if ((err = db_step_done(db, st, "heartbeat")))
		return err;
	if (sqlite3_changes(db->sql) == 0)
		return lease_lost(db, rollout, attempt, "heartbeat");
	return 0;
}

/* ---- complete ---------------------------------------------------------------- */

static int one_of(const char *s, const char *const *set)
{
	for (; s && *set; set++)
		if (strcmp(s, *set) == 0)
			return 1;
	return 0;
}

static const char *const resolved_names[] = {"FULL", "PARTIAL", "NO", NULL};
static const char *const status_names[] = {"PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL", NULL};
static const char *const category_names[] = {"FAIL_TO_PASS", "PASS_TO_PASS", "FAIL_TO_FAIL",
                                             "PASS_TO_FAIL", "OTHER",        NULL};

static int check_result(int64_t rollout, const struct swerve_db_result *r)
{
	const struct swerve_db_counts *c[] = {&r->f2p, &r->p2p, &r->f2f, &r->p2f};
	size_t vlen = r->verdict ? strlen(r->verdict) : 0;

#define BAD(...) swerve_error_set(SWERVE_EINVAL, __VA_ARGS__)
	if (vlen == 0 || vlen > 8 || strspn(r->verdict, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != vlen)
		return BAD("result of rollout %lld: field verdict: '%s' is not a verdict code",
		           (long long)rollout, r->verdict ? r->verdict : "(null)");
	if (!one_of(r->resolved, resolved_names))
		return BAD("result of rollout %lld: field resolved: '%s' is not FULL, PARTIAL or "
		           "NO",
		           (long long)rollout, r->resolved ? r->resolved : "(null)");
	if (r->has_reward && !isfinite(r->reward))
		return BAD("result of rollout %lld: field reward: not a finite number",
		           (long long)rollout);
	for (int i = 0; i < 4; i++)
		if (c[i]->success < 0 || c[i]->failure < 0)
			return BAD("result of rollout %lld: negative test count",
			           (long long)rollout);
	if (r->workspace_ms < 0 || r->apply_ms < 0 || r->test_ms < 0 || r->total_ms < 0 ||
	    r->max_rss_kb < 0)
		return BAD("result of rollout %lld: negative timing or max RSS",
		           (long long)rollout);
	if (r->n_tests && !r->tests)
		return BAD("result of rollout %lld: %zu tests without data", (long long)rollout,
		           r->n_tests);
	for (size_t i = 0; i < r->n_tests; i++) {
		const struct swerve_db_test_status *t = &r->tests[i];
		if (!t->test_id || !*t->test_id)
			return BAD("result of rollout %lld: test %zu: empty test id",
			           (long long)rollout, i);
		if (!one_of(t->status, status_names))
			return BAD("result of rollout %lld: test %s: status '%s' is not a "
			           "SWE-bench status",
			           (long long)rollout, t->test_id,
			           t->status ? t->status : "(null)");
		if (!one_of(t->category, category_names))
			return BAD(
			        "result of rollout %lld: test %s: category '%s' is not "
			        "FAIL_TO_PASS, PASS_TO_PASS, FAIL_TO_FAIL, PASS_TO_FAIL or OTHER",
			        (long long)rollout, t->test_id,
			        t->category ? t->category : "(null)");
	}
#undef BAD
	return 0;
}

int swerve_db_complete(struct swerve_db *db, int64_t rollout, int attempt, const char *worker,
                       const struct swerve_db_result *r)
{
	sqlite3_stmt *st;
	int err, rc, k = 1;

	if (!r)
		return swerve_error_set(SWERVE_EINVAL, "complete rollout %lld: no result",
		                        (long long)rollout);
	if ((err = check_result(rollout, r)))
		return err;
	if ((err = db_tx_begin(db, "complete")))
		return err;
	/* The lease check and the state change are one statement. */
	if (!(st = db_stmt(db, ST_DONE)))
		goto fail;
	sqlite3_bind_int64(st, 1, rollout);
	sqlite3_bind_int(st, 2, attempt);
	if (db_step_done(db, st, "complete"))
		goto fail;
	if (sqlite3_changes(db->sql) == 0) {
		lease_lost(db, rollout, attempt, "complete");
		goto fail;
	}

	if (!(st = db_stmt(db, ST_RESULT_INSERT)))
		goto fail;
	sqlite3_bind_int64(st, k++, rollout);
	sqlite3_bind_int(st, k++, attempt);
	if (worker)
		sqlite3_bind_text(st, k, worker, -1, SQLITE_STATIC);
	k++;
	sqlite3_bind_text(st, k++, r->verdict, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, k++, r->resolved, -1, SQLITE_STATIC);
	if (r->has_reward)
		sqlite3_bind_double(st, k, r->reward);
	k++;
	sqlite3_bind_int(st, k++, !!r->empty_patch);
	sqlite3_bind_int(st, k++, !!r->patch_applied);
	if (r->apply_method)
		sqlite3_bind_text(st, k, r->apply_method, -1, SQLITE_STATIC);
	k++;
	const struct swerve_db_counts *c[] = {&r->f2p, &r->p2p, &r->f2f, &r->p2f};
	for (int i = 0; i < 4; i++) {
		sqlite3_bind_int(st, k++, c[i]->success);
		sqlite3_bind_int(st, k++, c[i]->failure);
	}
	sqlite3_bind_int64(st, k++, r->workspace_ms);
	sqlite3_bind_int64(st, k++, r->apply_ms);
	sqlite3_bind_int64(st, k++, r->test_ms);
	sqlite3_bind_int64(st, k++, r->total_ms);
	sqlite3_bind_int64(st, k++, r->max_rss_kb);
	sqlite3_bind_int(st, k++, r->exit_code);
	if (r->output)
		sqlite3_bind_text(st, k, r->output, -1, SQLITE_STATIC);
	k++;
	sqlite3_bind_int(st, k++, !!r->output_truncated);
	sqlite3_bind_int64(st, k++, db_now_ms());
	if (db_step_done(db, st, "record result"))
		goto fail;

	for (size_t i = 0; i < r->n_tests; i++) {
		const struct swerve_db_test_status *t = &r->tests[i];
		if (!(st = db_stmt(db, ST_TEST_INSERT)))
			goto fail;
		sqlite3_bind_int64(st, 1, rollout);
		sqlite3_bind_text(st, 2, t->test_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, t->status, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, t->category, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
			swerve_error_set(SWERVE_EINVAL,
			                 "result of rollout %lld: test %s: listed twice",
			                 (long long)rollout, t->test_id);
			goto fail;
		}
		if (rc != SQLITE_DONE) {
			db_fail(db, rc, "record test status");
			goto fail;
		}
	}
	return db_tx_end(db, 0, "complete");
fail:
	return db_tx_end(db, swerve_error_code() ? swerve_error_code() : SWERVE_ERROR, "complete");
}

/* ---- infrastructure failures -------------------------------------------------- */

int swerve_db_fail(int *out_gave_up, struct swerve_db *db, int64_t rollout, int attempt,
                   const char *reason)
{
	sqlite3_stmt *st;
	int rc, gave_up, err;

	if ((err = db_tx_begin(db, "fail")))
		return err;
	if (!(st = db_stmt(db, ST_FAIL_INFO)))
		goto fail;
	sqlite3_bind_int64(st, 1, rollout);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		if (rc == SQLITE_DONE)
			swerve_error_set(SWERVE_ENOTFOUND, "fail rollout %lld: no such rollout",
			                 (long long)rollout);
		else
			db_fail(db, rc, "fail");
		goto fail;
	}
	int running = strcmp((const char *)sqlite3_column_text(st, 0), "running") == 0;
	int attempts = sqlite3_column_int(st, 1);
	int max_attempts = sqlite3_column_int(st, 2);
	int64_t backoff = sqlite3_column_int64(st, 3);
	int64_t max_backoff = sqlite3_column_int64(st, 4);
	sqlite3_reset(st);
	if (!running || attempts != attempt) {
		lease_lost(db, rollout, attempt, "fail");
		goto fail;
	}
	gave_up = attempts >= max_attempts;
	if (gave_up) {
		char msg[512];
		snprintf(msg, sizeof(msg), "gave up after %d attempts: %s", attempts,
		         reason ? reason : "infrastructure error");
		if (!(st = db_stmt(db, ST_FAIL_GIVEUP)))
			goto fail;
		sqlite3_bind_int64(st, 1, rollout);
		sqlite3_bind_text(st, 2, msg, -1, SQLITE_TRANSIENT);
	} else {
		/* backoff * 2^(attempt-1), capped; the shift is bounded first. */
		int64_t delay = backoff;
		for (int i = 1; i < attempts && delay < max_backoff; i++)
			delay *= 2;
		if (delay > max_backoff)
			delay = max_backoff;
		if (!(st = db_stmt(db, ST_FAIL_RETRY)))
			goto fail;
		sqlite3_bind_int64(st, 1, rollout);
		sqlite3_bind_int64(st, 2, db_now_ms() + delay);
		sqlite3_bind_text(st, 3, reason ? reason : "infrastructure error", -1,
		                  SQLITE_STATIC);
	}
	if (db_step_done(db, st, "fail"))
		goto fail;
	if ((err = db_tx_end(db, 0, "fail")))
		return err;
	if (out_gave_up)
		*out_gave_up = gave_up;
	return 0;
fail:
	return db_tx_end(db, swerve_error_code() ? swerve_error_code() : SWERVE_ERROR, "fail");
}

int swerve_db_requeue_infra(size_t *out_n, struct swerve_db *db, int64_t run)
{
	sqlite3_stmt *st;
	int err;
	if ((err = db_tx_begin(db, "requeue")))
		return err;
	if (!(st = db_stmt(db, ST_REQUEUE)))
		return db_tx_end(db, swerve_error_code(), "requeue");
	sqlite3_bind_int64(st, 1, run);
	if ((err = db_step_done(db, st, "requeue")))
		return db_tx_end(db, err, "requeue");
	size_t n = (size_t)sqlite3_changes(db->sql);
	if ((err = db_tx_end(db, 0, "requeue")))
		return err;
	if (out_n)
		*out_n = n;
	return 0;
}

/* ---- listing ---------------------------------------------------------------------- */

static const char *text_or(sqlite3_stmt *st, int i, const char *dflt)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? (const char *)t : dflt;
}

int swerve_db_results_foreach(struct swerve_db *db, int64_t run,
                              int (*cb)(const struct swerve_db_row *row, void *payload),
                              void *payload)
{
	sqlite3_stmt *st;
	int rc, err = 0;

	if ((err = db_read_begin(db, "list results")))
		return err;
	if (!(st = db_stmt(db, ST_ROWS))) {
		db_read_end(db);
		return swerve_error_code();
	}
	sqlite3_bind_int64(st, 1, run);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct swerve_db_row row;
		struct swerve_db_result res;
		int k = 0;
		memset(&row, 0, sizeof(row));
		memset(&res, 0, sizeof(res));
		row.rollout = sqlite3_column_int64(st, k++);
		row.run = sqlite3_column_int64(st, k++);
		row.instance_id = text_or(st, k++, "");
		row.group = sqlite3_column_int64(st, k++);
		row.sample = sqlite3_column_int(st, k++);
		row.policy_version = sqlite3_column_int64(st, k++);
		row.status = text_or(st, k++, "");
		row.attempts = sqlite3_column_int(st, k++);
		row.last_error = text_or(st, k++, NULL);
		row.patch_sha256 = text_or(st, k++, "");
		row.patch_empty = sqlite3_column_int(st, k++);
		if (sqlite3_column_int(st, k++)) {
			res.verdict = text_or(st, k++, "");
			res.resolved = text_or(st, k++, "");
			res.has_reward = sqlite3_column_type(st, k) != SQLITE_NULL;
			res.reward = sqlite3_column_double(st, k++);
			res.empty_patch = sqlite3_column_int(st, k++);
			res.patch_applied = sqlite3_column_int(st, k++);
			res.apply_method = text_or(st, k++, NULL);
			struct swerve_db_counts *c[] = {&res.f2p, &res.p2p, &res.f2f, &res.p2f};
			for (int i = 0; i < 4; i++) {
				c[i]->success = sqlite3_column_int(st, k++);
				c[i]->failure = sqlite3_column_int(st, k++);
			}
			res.workspace_ms = sqlite3_column_int64(st, k++);
			res.apply_ms = sqlite3_column_int64(st, k++);
			res.test_ms = sqlite3_column_int64(st, k++);
			res.total_ms = sqlite3_column_int64(st, k++);
			res.max_rss_kb = sqlite3_column_int64(st, k++);
			res.exit_code = sqlite3_column_int(st, k++);
			res.output = text_or(st, k++, NULL);
			res.output_truncated = sqlite3_column_int(st, k++);
			row.result = &res;
		}
		if ((err = cb(&row, payload)) != 0)
			break;
	}
	if (!err && rc != SQLITE_DONE)
		err = db_fail(db, rc, "list results");
	sqlite3_reset(st);
	db_read_end(db);
	return err;
}

int swerve_db_tests_foreach(struct swerve_db *db, int64_t rollout,
                            int (*cb)(const struct swerve_db_test_status *t, void *payload),
                            void *payload)
{
	sqlite3_stmt *st = db_stmt(db, ST_TESTS);
	int rc, err = 0;
	if (!st)
		return swerve_error_code();
	sqlite3_bind_int64(st, 1, rollout);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct swerve_db_test_status t = {text_or(st, 0, ""), text_or(st, 1, ""),
		                                  text_or(st, 2, "")};
		if ((err = cb(&t, payload)) != 0)
			break;
	}
	if (!err && rc != SQLITE_DONE)
		err = db_fail(db, rc, "list test statuses");
	sqlite3_reset(st);
	return err;
}
