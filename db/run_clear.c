/* run_clear.c - listing runs, and emptying a run (for `swerve eval --redo`): every rollout of
 * the run, with its data, result, test statuses and group, is deleted in one
 * transaction; the run itself, its metrics and the tasks stay. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const clear_sql[] = {
        "DELETE FROM test_results WHERE rollout_id IN (SELECT id FROM rollouts WHERE run_id = ?1)",
        "DELETE FROM results WHERE rollout_id IN (SELECT id FROM rollouts WHERE run_id = ?1)",
        "DELETE FROM rollout_data WHERE rollout_id IN (SELECT id FROM rollouts WHERE run_id = ?1)",
        "DELETE FROM rollouts WHERE run_id = ?1",
        "DELETE FROM rollout_groups WHERE run_id = ?1",
};

int swerve_db_run_clear(size_t *out_n, struct swerve_db *db, int64_t run)
{
	size_t n = 0;
	int err;

	if (run <= 0)
		return swerve_error_set(SWERVE_EINVAL, "clear run: run id %lld is not valid",
		                        (long long)run);
	if ((err = db_tx_begin(db, "clear run")))
		return err;
	for (size_t i = 0; i < sizeof(clear_sql) / sizeof(clear_sql[0]); i++) {
		sqlite3_stmt *st = NULL;
		int rc = sqlite3_prepare_v2(db->sql, clear_sql[i], -1, &st, NULL);
		if (rc != SQLITE_OK)
			return db_tx_end(db, db_fail(db, rc, "clear run"), "clear run");
		sqlite3_bind_int64(st, 1, run);
		err = db_step_done(db, st, "clear run");
		if (i == 3)
			n = (size_t)sqlite3_changes(db->sql);
		sqlite3_finalize(st);
		if (err)
			return db_tx_end(db, err, "clear run");
	}
	if ((err = db_tx_end(db, 0, "clear run")))
		return err;
	if (out_n)
		*out_n = n;
	return 0;
}

int swerve_db_run_list(int64_t **out, size_t *out_n, struct swerve_db *db)
{
	sqlite3_stmt *st = NULL;
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc = sqlite3_prepare_v2(db->sql, "SELECT id FROM runs ORDER BY id", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(db, rc, "list runs");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			int64_t *grown = realloc(ids, cap * sizeof(*ids));
			if (!grown) {
				free(ids);
				sqlite3_finalize(st);
				return swerve_error_set(SWERVE_ENOMEM, "list runs: out of memory");
			}
			ids = grown;
		}
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(ids);
		return db_fail(db, rc, "list runs");
	}
	*out = ids;
	*out_n = n;
	return 0;
}

int swerve_db_leases_reap(size_t *out_n, struct swerve_db *db, int64_t run,
                          int (*alive)(const char *owner, void *payload), void *payload)
{
	static const char owners_sql[] =
	        "SELECT DISTINCT lease_owner FROM rollouts WHERE status = 'running'"
	        " AND lease_owner IS NOT NULL AND (?1 <= 0 OR run_id = ?1)";
	static const char expire_sql[] =
	        "UPDATE rollouts SET lease_expires_ms = 0 WHERE status = 'running'"
	        " AND lease_owner = ?2 AND (?1 <= 0 OR run_id = ?1)";
	sqlite3_stmt *st = NULL, *up = NULL;
	size_t n = 0;
	int err, rc;

	if ((err = db_tx_begin(db, "reap leases")))
		return err;
	rc = sqlite3_prepare_v2(db->sql, owners_sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db->sql, expire_sql, -1, &up, NULL);
	if (rc != SQLITE_OK) {
		err = db_fail(db, rc, "reap leases");
		goto done;
	}
	sqlite3_bind_int64(st, 1, run);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *owner = (const char *)sqlite3_column_text(st, 0);
		if (!owner || alive(owner, payload))
			continue;
		sqlite3_reset(up);
		sqlite3_bind_int64(up, 1, run);
		sqlite3_bind_text(up, 2, owner, -1, SQLITE_TRANSIENT);
		if ((err = db_step_done(db, up, "reap leases")))
			goto done;
		n += (size_t)sqlite3_changes(db->sql);
	}
	err = rc == SQLITE_DONE ? 0 : db_fail(db, rc, "reap leases");
done:
	sqlite3_finalize(st);
	sqlite3_finalize(up);
	err = db_tx_end(db, err, "reap leases");
	if (!err && out_n)
		*out_n = n;
	return err;
}
