/* pool.c - worker processes serving the db queue (see pool.h).
 *
 * The parent forks the workers, watches them, replaces crashed ones (failing
 * the lease they held, which it reads from a shared slot), forwards
 * SIGINT/SIGTERM, and draws progress from the db. Each worker loops:
 * claim one rollout -> run the episode -> complete (one transaction) or fail
 * (infrastructure: retried with backoff). */
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db/db.h"
#include "envs/report.h"
#include "envs/clock.h"
#include "envs/reap.h"
#include "sandbox/error.h"

#define DEFAULT_TIMEOUT_MS (1800ull * 1000)

/* What a worker holds, visible to the parent (shared anonymous mapping). */
struct slot {
	volatile int64_t rollout;
	volatile int attempt;
	volatile pid_t pid;
};

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested++;
}

/* ---- episode result -> db result --------------------------------------- */

static const char *test_status(const struct swerve_testlog *log, const char *name)
{
	enum swerve_test_status st;
	if (log && swerve_testlog_get(&st, log, name) == 0)
		return swerve_test_status_name(st);
	return "FAILED"; /* missing from the log: SWE-bench counts it failed */
}

int swerve_pool_db_result(struct swerve_db_result *out, void **owned,
                          const struct swerve_episode_result *r)
{
	struct swerve_db_result d;
	struct swerve_db_counts *counts[] = {&d.f2p, &d.p2p, &d.f2f, &d.p2f};
	size_t n = 0, cap = 0;
	struct swerve_db_test_status *t = NULL;

	memset(&d, 0, sizeof(d));
	d.verdict = r->ran ? swerve_verdict_name(r->run.verdict) : "NOTRUN";
	d.resolved = r->graded && r->grade.trusted && r->has_outcome
	                     ? (r->grade.resolution == SWERVE_RESOLVED_FULL      ? "FULL"
	                        : r->grade.resolution == SWERVE_RESOLVED_PARTIAL ? "PARTIAL"
	                                                                         : "NO")
	                     : "NO";
	d.has_reward = r->has_outcome;
	d.reward = r->has_outcome ? r->reward : 0;
	d.empty_patch = r->empty_patch;
	d.patch_applied = r->patch.applied;
	d.apply_method = r->patch.applied ? swerve_patch_method_name(r->patch.method) : NULL;
	d.workspace_ms = r->workspace_ms;
	d.apply_ms = r->apply_ms;
	d.test_ms = r->test_ms;
	d.total_ms = r->total_ms;
	d.max_rss_kb = (int64_t)r->run.max_rss_kb;
	d.exit_code = r->ran ? r->run.exit_code : -1;
	d.output = r->log;
	d.output_truncated = r->log_truncated;
	if (r->graded) {
		for (int c = 0; c < SWERVE_CATEGORY_COUNT; c++) {
			counts[c]->success = (int)r->grade.n_success[c];
			counts[c]->failure = (int)r->grade.n_failure[c];
			cap += r->grade.n_success[c] + r->grade.n_failure[c];
		}
	}
	if (r->tests)
		cap += swerve_testlog_count(r->tests);
	/* one block: the test rows, then the output with the error line in front */
	size_t hdr = r->error[0] ? strlen(r->error) + 32 : 0;
	size_t olen = hdr + (r->log ? r->log_len : 0) + 1;
	char *block = malloc(cap * sizeof(*t) + olen);
	if (!block)
		return swerve_error_set(SWERVE_ENOMEM, "out of memory");
	t = (struct swerve_db_test_status *)block;
	if (hdr) {
		char *text = block + cap * sizeof(*t);
		int k = snprintf(text, olen, "swerve: %s: %s\n",
		                 swerve_episode_status_name(r->status), r->error);
		if (r->log)
			memcpy(text + k, r->log, r->log_len + 1);
		d.output = text;
	}
	/* expected tests with their category, then every other test the log named */
	if (r->graded) {
		for (int c = 0; c < SWERVE_CATEGORY_COUNT; c++) {
			const char *cat = swerve_test_category_name(c);
			for (size_t i = 0; i < r->grade.n_success[c]; i++)
				t[n++] = (struct swerve_db_test_status){
				        r->grade.success[c][i],
				        test_status(r->tests, r->grade.success[c][i]), cat};
			for (size_t i = 0; i < r->grade.n_failure[c]; i++)
				t[n++] = (struct swerve_db_test_status){
				        r->grade.failure[c][i],
				        test_status(r->tests, r->grade.failure[c][i]), cat};
		}
	}
	for (size_t i = 0; r->tests && i < swerve_testlog_count(r->tests); i++) {
		const struct swerve_test_result *tr = swerve_testlog_at(r->tests, i);
		int seen = 0;
		for (size_t j = 0; j < n && !seen; j++)
			seen = strcmp(t[j].test_id, tr->name) == 0;
		if (!seen && *tr->name && !tr->alias)
			t[n++] = (struct swerve_db_test_status){
			        tr->name, swerve_test_status_name(tr->status), "OTHER"};
	}
	d.tests = t;
	d.n_tests = n;
	*out = d;
	*owned = block;
	return 0;
}

/* ---- per-instance files -------------------------------------------------- */

static int write_text(const char *path, const char *data, size_t len)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "wb");
	if (!f)
		return swerve_error_set(SWERVE_EIO, "%s: %s", tmp, strerror(errno));
	size_t w = len ? fwrite(data, 1, len, f) : 0;
	if (fclose(f) != 0 || w != len || rename(tmp, path) != 0) {
		unlink(tmp);
		return swerve_error_set(SWERVE_EIO, "%s: write failed: %s", path, strerror(errno));
	}
	return 0;
}

static int safe_component(const char *s)
{
	return s && *s && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/') && strlen(s) < 200;
}

void swerve_pool_instance_report(struct swerve_instance_report *ir,
                                 const struct swerve_episode_result *r, const char *id,
                                 int patch_is_none)
{
	memset(ir, 0, sizeof(*ir));
	ir->instance_id = id;
	ir->patch_is_none = patch_is_none;
	ir->patch_exists = !r->empty_patch;
	ir->patch_applied = r->patch.applied;
	ir->grade = r->graded && r->grade.trusted ? &r->grade : NULL;
	ir->has_outcome = r->has_outcome;
	ir->outcome = r->outcome;
	ir->has_reward = r->has_outcome;
	ir->reward = r->reward;
	ir->verdict = r->ran ? swerve_verdict_name(r->run.verdict) : NULL;
	ir->apply_method = r->patch.applied ? swerve_patch_method_name(r->patch.method) : NULL;
	ir->log_parser = r->parser;
	ir->has_exit_code = r->ran && r->run.exit_code >= 0;
	ir->exit_code = r->run.exit_code;
	ir->log_incomplete = r->tests ? swerve_testlog_incomplete(r->tests) : 0;
	ir->error = r->error[0] ? r->error : NULL;
	ir->t_apply_s = (double)r->apply_ms / 1000.0;
	ir->t_test_s = (double)r->test_ms / 1000.0;
	ir->t_total_s = (double)r->total_ms / 1000.0;
}

int swerve_pool_write_instance(const char *dir, const struct swerve_task *task, const char *patch,
                               int patch_is_none, const struct swerve_episode_result *r)
{
	char path[PATH_MAX];
	struct swerve_instance_report ir;
	int rc;

	if (!safe_component(task->instance_id))
		return swerve_error_set(SWERVE_EINVAL,
		                        "instance %s: id cannot be used as a directory name",
		                        task->instance_id);
	snprintf(path, sizeof(path), "%s/%s", dir, task->instance_id);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return swerve_error_set(SWERVE_EIO, "%s: %s", path, strerror(errno));
	snprintf(path, sizeof(path), "%s/%s/patch.diff", dir, task->instance_id);
	if ((rc = write_text(path, patch ? patch : "", patch ? strlen(patch) : 0)) < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/%s/test_output.txt", dir, task->instance_id);
	if (r->log)
		rc = write_text(path, r->log, r->log_len);
	else if (r->error[0])
		rc = write_text(path, r->error, strlen(r->error));
	else if (r->status == SWERVE_EPISODE_PATCH_FAILED)
		rc = write_text(path, r->patch.reason, strlen(r->patch.reason));
	else if (r->status == SWERVE_EPISODE_EMPTY_PATCH)
		rc = write_text(path, "empty patch: tests not run\n", 27);
	else
		rc = write_text(path, "", 0);
	if (rc < 0)
		return rc;
	swerve_pool_instance_report(&ir, r, task->instance_id, patch_is_none);
	snprintf(path, sizeof(path), "%s/%s/report.json", dir, task->instance_id);
	return swerve_report_instance_write(path, &ir);
}

/* ---- the worker ------------------------------------------------------------ */

static void episode_line(const struct swerve_task *t, const struct swerve_episode_result *r, int rc)
{
	if (rc < 0)
		fprintf(stderr, "swerve: %s: infrastructure error (will retry): %s\n",
		        t->instance_id, r->error);
	else if (r->status == SWERVE_EPISODE_TASK_ERROR)
		fprintf(stderr, "swerve: %s: task error: %s\n", t->instance_id, r->error);
}

static int worker_main(const struct swerve_pool_opts *o, struct slot *slot, const char *name)
{
	struct swerve_db *db = NULL;
	struct swerve_db_opts dbo = SWERVE_DB_OPTS_INIT;
	struct swerve_repo_cache *cache = NULL;
	struct swerve_sandbox *sb = NULL;
	struct swerve_episode_env env;
	int rc, exit_code = 0;

	signal(SIGINT, SIG_IGN); /* the parent decides; SIGTERM = stop after this episode */
	signal(SIGTERM, on_stop);
	dbo.create = 0;
	dbo.busy_timeout_ms = 30000;
	if ((rc = swerve_db_open(&db, o->db_path, &dbo)) < 0 ||
	    (rc = swerve_repo_cache_open(&cache, o->home)) < 0 ||
	    (rc = swerve_sandbox_new(&sb, NULL)) < 0) {
		fprintf(stderr, "swerve: worker %s: %s\n", name, swerve_error_last());
		exit_code = 3;
		goto done;
	}
	memset(&env, 0, sizeof(env));
	env.cache = cache;
	env.sb = sb;
	env.reward = o->reward;
	env.ws_mode = o->ws_mode;
	env.default_timeout_ms = o->default_timeout_ms;
	env.memory_bytes = o->memory_bytes;
	env.max_patch_bytes = o->max_patch_bytes;

	while (!stop_requested) {
		struct swerve_db_claim *c = NULL;
		size_t n = 0;
		if (o->run > 0) {
			rc = swerve_db_claim(&c, &n, db, o->run, name, 1, o->lease_ms);
		} else {
			/* every run, oldest first */
			int64_t *runs = NULL;
			size_t nruns = 0;
			rc = swerve_db_run_list(&runs, &nruns, db);
			for (size_t i = 0; rc == 0 && n == 0 && i < nruns; i++)
				rc = swerve_db_claim(&c, &n, db, runs[i], name, 1, o->lease_ms);
			free(runs);
		}
		if (rc < 0) {
			if (rc == SWERVE_EBUSY) {
				swerve_sleep_ms(50);
				continue;
			}
			fprintf(stderr, "swerve: worker %s: claim: %s\n", name,
			        swerve_error_last());
			exit_code = 3;
			break;
		}
		if (n == 0) {
			struct swerve_db_stats st;
			if (!o->serve && swerve_db_stats(&st, db, o->run) == 0 && st.pending == 0 &&
			    st.running == 0)
				break;
			swerve_sleep_ms(o->serve ? 200 : 50);
			continue;
		}
		slot->attempt = c->attempt;
		slot->rollout = c->rollout;

		struct swerve_task_set *ts = NULL;
		char src[96];
		snprintf(src, sizeof(src), "rollout %lld task", (long long)c->rollout);
		if (swerve_tasks_load_buffer(&ts, src, c->task_json, strlen(c->task_json)) < 0 ||
		    ts->n != 1) {
			char why[600];
			snprintf(why, sizeof(why), "instance %s: stored task does not load: %s",
			         c->instance_id,
			         ts && ts->n_problems ? ts->problems[0] : swerve_error_last());
			fprintf(stderr, "swerve: %s\n", why);
			swerve_db_fail(NULL, db, c->rollout, c->attempt, why);
		} else {
			const struct swerve_task *task = &ts->tasks[0];
			const struct swerve_prediction *p =
			        o->preds ? swerve_prediction_set_find(o->preds, task->instance_id)
			                 : NULL;
			int none = p ? p->patch_is_none : (!c->patch || !*c->patch);
			struct swerve_episode_result r;
			rc = swerve_episode_run(&r, &env, task, c->patch, none);
			if (!o->quiet)
				episode_line(task, &r, rc);
			if (rc < 0) {
				int gave_up = 0;
				if (swerve_db_fail(&gave_up, db, c->rollout, c->attempt, r.error) ==
				            0 &&
				    gave_up)
					fprintf(stderr,
					        "swerve: %s: gave up after repeated infrastructure "
					        "errors: %s\n",
					        task->instance_id, r.error);
			} else {
				struct swerve_db_result dr;
				void *tests = NULL;
				int wrc = 0;
				if (o->out_dir)
					wrc = swerve_pool_write_instance(o->out_dir, task, c->patch,
					                                 none, &r);
				if (wrc ==
				    SWERVE_EINVAL) /* bad id: no files, the result still counts */
					fprintf(stderr,
					        "swerve: %s: per-instance files not written: %s\n",
					        task->instance_id, swerve_error_last());
				if (wrc < 0 && wrc != SWERVE_EINVAL) {
					/* disk full or the like: infrastructure, retried */
					fprintf(stderr, "swerve: %s: %s\n", task->instance_id,
					        swerve_error_last());
					swerve_db_fail(NULL, db, c->rollout, c->attempt,
					               swerve_error_last());
				} else if (swerve_pool_db_result(&dr, &tests, &r) < 0 ||
				           swerve_db_complete(db, c->rollout, c->attempt, name,
				                              &dr) < 0) {
					fprintf(stderr, "swerve: %s: storing the result: %s\n",
					        task->instance_id, swerve_error_last());
					if (swerve_error_code() != SWERVE_ETIMEOUT &&
					    swerve_error_code() != SWERVE_EEXIST)
						swerve_db_fail(NULL, db, c->rollout, c->attempt,
						               swerve_error_last());
				}
				free(tests);
			}
			swerve_episode_result_dispose(&r);
		}
		swerve_task_set_free(ts);
		slot->rollout = 0;
		swerve_db_claims_free(c, n);
	}
done:
	swerve_sandbox_free(sb);
	swerve_repo_cache_free(cache);
	swerve_db_close(db);
	return exit_code;
}

/* ---- the parent ------------------------------------------------------------ */

/* Worker names are "<host>/<pid>/w<index>": a restarted pool on the same
 * host can tell a dead worker's lease from a live one. */
static int worker_alive(const char *owner, void *payload)
{
	char host[256];
	(void)payload;
	if (gethostname(host, sizeof(host)) < 0)
		return 1;
	host[sizeof(host) - 1] = '\0';
	size_t hl = strlen(host);
	if (strncmp(owner, host, hl) != 0 || owner[hl] != '/')
		return 1; /* another host's worker: its lease decides */
	long pid = strtol(owner + hl + 1, NULL, 10);
	if (pid <= 0)
		return 1;
	/* gone, or a zombie nobody reaped yet (state Z/X in /proc/<pid>/stat) */
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *rp = strrchr(buf, ')');
	if (!rp || rp[1] != ' ')
		return 1;
	return rp[2] != 'Z' && rp[2] != 'X';
}

static pid_t spawn_worker(const struct swerve_pool_opts *o, struct slot *slot, int idx)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		char name[384], host[256];
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		snprintf(name, sizeof(name), "%s/%d/w%d", host, (int)getpid(), idx);
		_exit(worker_main(o, slot, name));
	}
	if (pid > 0) {
		slot->pid = pid;
		slot->rollout = 0;
	}
	return pid;
}

static void progress(const struct swerve_pool_opts *o, struct swerve_db *db, double t0,
                     int64_t start_done, int final)
{
	static double last_line;
	struct swerve_db_stats st;
	if (swerve_db_stats(&st, db, o->run) < 0)
		return;
	int64_t total = st.pending + st.running + st.done + st.infra_error;
	int64_t finished = st.done + st.infra_error;
	double el = swerve_now_s() - t0;
	double rate = el > 0 ? (double)(finished - start_done) / el : 0;
	double eta = rate > 0 ? (double)(total - finished) / rate : 0;
	if (o->progress_tty) {
		int width = 24, fill = total ? (int)(width * finished / total) : width;
		char bar[32];
		for (int i = 0; i < width; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[width] = '\0';
		fprintf(stderr,
		        "\r[%s] %lld/%lld  resolved %lld  errors %lld  %.2f/s  ETA %.0fs   ", bar,
		        (long long)finished, (long long)total, (long long)st.resolved,
		        (long long)st.infra_error, rate, eta);
		if (final)
			fputc('\n', stderr);
	} else if (final || swerve_now_s() - last_line >= 5.0) {
		last_line = swerve_now_s();
		fprintf(stderr,
		        "progress: %lld/%lld done, resolved %lld, errors %lld, %.2f/s, ETA %.0fs\n",
		        (long long)finished, (long long)total, (long long)st.resolved,
		        (long long)st.infra_error, rate, eta);
	}
}

/* While no worker has ended: pass a stop request on to the workers (SIGTERM:
 * finish the episode in hand; a second signal: SIGKILL), show progress. */
struct idle_ctx {
	const struct swerve_pool_opts *o;
	struct swerve_db *db;
	double t0;
	int64_t start_done;
	struct slot *slots;
	int forwarded;
};

static pid_t slot_pid(void *arg, int i)
{
	return ((struct idle_ctx *)arg)->slots[i].pid;
}

static void pool_idle(void *arg)
{
	struct idle_ctx *c = arg;
	if (stop_requested && c->forwarded < stop_requested) {
		for (int i = 0; i < c->o->workers; i++)
			if (c->slots[i].pid > 0)
				kill(c->slots[i].pid, stop_requested > 1 ? SIGKILL : SIGTERM);
		if (!c->forwarded)
			fprintf(stderr, "\nswerve: stopping: finishing the episodes in hand "
			                "(signal again to kill them)\n");
		c->forwarded = stop_requested;
	}
	progress(c->o, c->db, c->t0, c->start_done, 0);
}

int swerve_pool_run(struct swerve_pool_stats *out, const struct swerve_pool_opts *opts)
{
	struct swerve_pool_opts o = *opts;
	struct swerve_db *db = NULL;
	struct swerve_db_opts dbo = SWERVE_DB_OPTS_INIT;
	struct slot *slots;
	struct sigaction sa, old_int, old_term;
	struct swerve_pool_stats st = {0};
	double t0 = swerve_now_s();
	int64_t start_done = 0;
	int alive = 0, rc = 0, infra_start = 0;

	if (o.workers < 1)
		o.workers = 1;
	if (o.lease_ms <= 0) {
		uint64_t t = o.default_timeout_ms ? o.default_timeout_ms : DEFAULT_TIMEOUT_MS;
		o.lease_ms = (int)(t * 2 + 120000 > INT_MAX ? INT_MAX : t * 2 + 120000);
	}
	dbo.create = 0;
	dbo.busy_timeout_ms = 30000;
	if ((rc = swerve_db_open(&db, o.db_path, &dbo)) < 0)
		return rc;
	{
		struct swerve_db_stats s0;
		size_t reaped = 0;
		if (swerve_db_leases_reap(&reaped, db, o.run, worker_alive, NULL) < 0)
			fprintf(stderr, "swerve: %s\n", swerve_error_last());
		else if (reaped)
			fprintf(stderr,
			        "swerve: %zu rollouts held by workers that are gone "
			        "return to the queue\n",
			        reaped);
		if (swerve_db_stats(&s0, db, o.run) == 0)
			start_done = s0.done + s0.infra_error;
	}
	slots = mmap(NULL, sizeof(*slots) * (size_t)o.workers, PROT_READ | PROT_WRITE,
	             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (slots == MAP_FAILED) {
		swerve_db_close(db);
		return swerve_error_set(SWERVE_ENOMEM, "worker slots: %s", strerror(errno));
	}
	memset(slots, 0, sizeof(*slots) * (size_t)o.workers);

	stop_requested = 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	for (int i = 0; i < o.workers; i++) {
		if (spawn_worker(&o, &slots[i], i) < 0) {
			rc = swerve_error_set(SWERVE_ERROR, "fork: %s", strerror(errno));
			break;
		}
		alive++;
	}

	struct idle_ctx ic = {&o, db, t0, start_done, slots, 0};
	struct swerve_reap rp = {o.workers, slot_pid, pool_idle, &ic, 100};
	while (alive > 0) {
		int status, idx = swerve_reap_next(&rp, &status);
		if (idx < 0)
			break;
		alive--;
		slots[idx].pid = 0;
		int crashed =
		        WIFSIGNALED(status) ||
		        (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
			infra_start++;
		if (slots[idx].rollout > 0) {
			char why[128];
			swerve_worker_death(why, sizeof(why), status);
			if (!(stop_requested > 1)) {
				swerve_db_fail(NULL, db, slots[idx].rollout, slots[idx].attempt,
				               why);
				st.infra_fails++;
			}
			slots[idx].rollout = 0;
		}
		/* a worker killed between its claim and writing its slot: its lease
		 * would hold the rollout until it runs out; end it now */
		if (!(stop_requested > 1)) {
			size_t reaped = 0;
			if (swerve_db_leases_reap(&reaped, db, o.run, worker_alive, NULL) == 0)
				st.infra_fails += (int64_t)reaped;
		}
		if (crashed && !stop_requested) {
			st.crashes++;
			fprintf(stderr, "swerve: worker %d crashed (%s %d); starting a new one\n",
			        idx, WIFSIGNALED(status) ? "signal" : "status",
			        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
			if (spawn_worker(&o, &slots[idx], idx) > 0)
				alive++;
		}
	}
	progress(&o, db, t0, start_done, 1);
	{
		struct swerve_db_stats s1;
		if (swerve_db_stats(&s1, db, o.run) == 0) {
			st.episodes = s1.done + s1.infra_error - start_done;
			st.interrupted = (s1.pending + s1.running) > 0;
		}
	}
	if (infra_start == o.workers && rc == 0)
		rc = swerve_error_set(SWERVE_ERROR,
		                      "no worker could start (see the messages above)");
	st.wall_s = swerve_now_s() - t0;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	munmap(slots, sizeof(*slots) * (size_t)o.workers);
	swerve_db_close(db);
	if (out)
		*out = st;
	return rc;
}
