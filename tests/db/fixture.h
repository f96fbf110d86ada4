/* fixture.h - helpers shared by the db tests (static: each test file gets its
 * own copy). Setup failures abort through cr_assert: a test that cannot set
 * itself up must not pass. */
#ifndef SWERVE_TEST_DB_FIXTURE_H
#define SWERVE_TEST_DB_FIXTURE_H

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/db.h"
#include "tests/support/support.h"

#define FX_UNUSED __attribute__((unused))

FX_UNUSED static char *fx_path(const char *dir, const char *name)
{
	char *p;
	cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

FX_UNUSED static struct swerve_db *fx_open(const char *path)
{
	struct swerve_db *db = NULL;
	int rc = swerve_db_open(&db, path, NULL);
	cr_assert_eq(rc, 0, "open %s: %s", path, swerve_error_last());
	return db;
}

FX_UNUSED static int64_t fx_run(struct swerve_db *db, const char *name, int max_attempts,
                                int backoff_ms)
{
	struct swerve_db_run_opts o = SWERVE_DB_RUN_OPTS_INIT;
	int64_t run;
	o.max_attempts = max_attempts;
	o.backoff_ms = backoff_ms;
	cr_assert_eq(swerve_db_run_create(&run, db, name, &o), 0, "%s", swerve_error_last());
	return run;
}

FX_UNUSED static int64_t fx_task(struct swerve_db *db, int i)
{
	char iid[64], json[160];
	int64_t task;
	snprintf(iid, sizeof(iid), "owner__repo-%d", i);
	snprintf(json, sizeof(json),
	         "{\"instance_id\":\"%s\",\"repo\":\"owner/repo\",\"base_commit\":\"abc%d\"}", iid,
	         i);
	cr_assert_eq(swerve_db_task_upsert(&task, db, iid, "owner/repo", "abc123", json), 0, "%s",
	             swerve_error_last());
	return task;
}

/* Enqueues ngroups groups of gsize samples (one task per group) in one
 * transaction; sample s of group g has reward-worthy tokens [g, s, ...]. */
FX_UNUSED static void fx_fill(struct swerve_db *db, int64_t run, int ngroups, int gsize)
{
	cr_assert_eq(swerve_db_begin(db), 0, "%s", swerve_error_last());
	for (int g = 0; g < ngroups; g++) {
		int64_t task = fx_task(db, g);
		for (int s = 0; s < gsize; s++) {
			char patch[128];
			int32_t toks[4] = {g, s, 7, 8};
			float lp[4] = {-0.5f, -1.0f, -0.25f, -(float)s};
			struct swerve_db_rollout r = {0};
			int64_t id;
			snprintf(patch, sizeof(patch),
			         "--- a/f.py\n+++ b/f.py\n@@ -1 +1 @@\n-x = %d\n+x = %d\n", g, s);
			r.run = run;
			r.task = task;
			r.group = g;
			r.group_size = gsize;
			r.sample = s;
			r.policy_version = 1;
			r.patch = patch;
			r.prompt_tokens = toks;
			r.n_prompt_tokens = 2;
			r.response_tokens = toks;
			r.n_response_tokens = 4;
			r.logprobs = lp;
			r.n_logprobs = 4;
			cr_assert_eq(swerve_db_enqueue(&id, NULL, db, &r), 0, "%s",
			             swerve_error_last());
		}
	}
	cr_assert_eq(swerve_db_commit(db), 0, "%s", swerve_error_last());
}

static const struct swerve_db_test_status fx_tests[] = {
        {"tests/test_a.py::test_fixed", "PASSED", "FAIL_TO_PASS"},
        {"tests/test_a.py::test_kept", "PASSED", "PASS_TO_PASS"},
        {"tests/test_b.py::test_other", "FAILED", "OTHER"},
};

/* A plausible result; reward < 0 means "no reward" (NULL). */
FX_UNUSED static struct swerve_db_result fx_result(double reward)
{
	struct swerve_db_result r;
	memset(&r, 0, sizeof(r));
	r.verdict = "OK";
	r.resolved = reward > 0.5 ? "FULL" : "NO";
	r.has_reward = reward >= 0;
	r.reward = reward;
	r.patch_applied = 1;
	r.apply_method = "git_apply";
	r.f2p.success = 1;
	r.p2p.success = 1;
	r.workspace_ms = 3;
	r.apply_ms = 1;
	r.test_ms = 120;
	r.total_ms = 125;
	r.max_rss_kb = 40960;
	r.output = "===== 2 passed, 1 failed in 0.12s =====\n";
	r.tests = fx_tests;
	r.n_tests = sizeof(fx_tests) / sizeof(fx_tests[0]);
	return r;
}

/* One integer from a SQL query on a separate raw connection. */
FX_UNUSED static long long fx_sql_int(const char *path, const char *sql)
{
	sqlite3 *s;
	sqlite3_stmt *st;
	long long v = -1;
	cr_assert_eq(sqlite3_open_v2(path, &s, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(s, 5000);
	cr_assert_eq(sqlite3_prepare_v2(s, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
	             sqlite3_errmsg(s));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(s);
	return v;
}

FX_UNUSED static void fx_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

#endif
