/* validate.c - dataset QA (see validate.h).
 *
 * Does: lay the episodes out as jobs (task x side x repetition), run them in
 * forked workers that take jobs from a shared counter and write one compact
 * record per job into a shared mapping (status, error line, one byte per
 * expected test), run again the jobs whose worker died, and judge each task
 * from its records. Does not: touch the db (validation writes files only) or
 * decide how a test log is parsed and graded (the episode does).
 *
 * Rounds: round 1 runs every job; a job whose worker died mid-episode is
 * left undone and the next round runs it again, up to max_attempts tries
 * (the record counts them); an infrastructure error inside the episode is
 * retried at once by the same worker, on the same count. */
#include "validate.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "envs/repo.h"
#include "envs/clock.h"
#include "envs/reap.h"
#include "sandbox/error.h"
#include "sandbox/sandbox.h"

#define DEFAULT_RUNS     2
#define DEFAULT_ATTEMPTS 3

const char *swerve_validate_status_name(enum swerve_validate_status s)
{
	switch (s) {
	case SWERVE_VALIDATE_KEPT: return "kept";
	case SWERVE_VALIDATE_REJECTED: return "rejected";
	case SWERVE_VALIDATE_ERROR: return "error";
	}
	return "?";
}

/* ---- the judge (pure) ------------------------------------------------------ */

struct reasons {
	char **v;
	size_t n, more;
	int oom, cap_off;
};

static void add_reason(struct reasons *rs, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void add_reason(struct reasons *rs, const char *fmt, ...)
{
	char line[700];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	for (size_t i = 0; i < rs->n; i++)
		if (strcmp(rs->v[i], line) == 0)
			return;
	if (rs->n >= SWERVE_VALIDATE_MAX_REASONS && !rs->cap_off) {
		rs->more++;
		return;
	}
	char **v = realloc(rs->v, (rs->n + 2) * sizeof(*v));
	char *s = strdup(line);
	if (!v || !s) {
		free(s);
		if (v)
			rs->v = v;
		rs->oom = 1;
		return;
	}
	rs->v = v;
	rs->v[rs->n++] = s;
}

static const char *side_name(int gold)
{
	return gold ? "with the gold patch" : "without the patch";
}

static const char *test_status_str(int s)
{
	return s < 0 ? "missing" : swerve_test_status_name((enum swerve_test_status)s);
}

static int passes(int s)
{
	return s == SWERVE_TEST_PASSED || s == SWERVE_TEST_XFAIL;
}

/* "patch did not apply: x" -> "x" (the reason's own prefix, said once) */
static const char *strip_prefix(const char *s)
{
	static const char pfx[] = "patch did not apply: ";
	return strncmp(s, pfx, sizeof(pfx) - 1) == 0 ? s + sizeof(pfx) - 1 : s;
}

/* Everything one side (no patch / gold) showed. by_run[r] is the
 * observation of repetition r (1-based), or NULL. */
static void judge_side(struct reasons *rs, int *infra, const struct swerve_task *task, int gold,
                       const struct swerve_validate_obs *const *by_run, int max_run)
{
	const struct swerve_str_list *lists[2] = {&task->tests[SWERVE_FAIL_TO_PASS],
	                                          &task->tests[SWERVE_PASS_TO_PASS]};
	const char *side = side_name(gold);
	int n_runs = 0, count[SWERVE_EPISODE_INFRA_ERROR + 1] = {0};
	const char *first_error[SWERVE_EPISODE_INFRA_ERROR + 1] = {0};

	for (int r = 1; r <= max_run; r++) {
		const struct swerve_validate_obs *ob = by_run[r];
		if (!ob)
			continue;
		n_runs++;
		int st = ob->status;
		if (st < 0 || st > SWERVE_EPISODE_INFRA_ERROR)
			st = SWERVE_EPISODE_INFRA_ERROR;
		count[st]++;
		if (!first_error[st] && ob->error && *ob->error)
			first_error[st] = ob->error;
		const char *err = ob->error && *ob->error ? ob->error : "(no message)";
		switch ((enum swerve_episode_status)st) {
		case SWERVE_EPISODE_GRADED:
			/* graded with a message: the gold patch broke the test run */
			if (ob->error && *ob->error)
				add_reason(rs, "%s: %s", gold ? "gold patch" : "without the patch",
				           err);
			break;
		case SWERVE_EPISODE_PATCH_FAILED:
			add_reason(rs, "gold patch does not apply: %s", strip_prefix(err));
			break;
		case SWERVE_EPISODE_TASK_ERROR:
			add_reason(rs, "task error %s: %s", side, err);
			break;
		case SWERVE_EPISODE_EMPTY_PATCH:
			add_reason(rs, "the tests did not run %s (empty patch)", side);
			break;
		default: break;
		}
	}
	if (count[SWERVE_EPISODE_TIMEOUT])
		add_reason(rs, "tests time out %s (%d of %d runs)", side,
		           count[SWERVE_EPISODE_TIMEOUT], n_runs);
	if (count[SWERVE_EPISODE_VIOLATION])
		add_reason(rs, "sandbox violation %s (%d of %d runs): %s", side,
		           count[SWERVE_EPISODE_VIOLATION], n_runs,
		           first_error[SWERVE_EPISODE_VIOLATION]
		                   ? first_error[SWERVE_EPISODE_VIOLATION]
		                   : "a forbidden system call");
	if (count[SWERVE_EPISODE_INFRA_ERROR]) {
		*infra = 1;
		add_reason(rs, "infrastructure error %s (%d of %d runs): %s", side,
		           count[SWERVE_EPISODE_INFRA_ERROR], n_runs,
		           first_error[SWERVE_EPISODE_INFRA_ERROR]
		                   ? first_error[SWERVE_EPISODE_INFRA_ERROR]
		                   : "(no message)");
	}

	/* per expected test, over the graded runs in order */
	size_t off = 0;
	for (int c = 0; c < 2; c++) {
		const char *cat = c == 0 ? "FAIL_TO_PASS" : "PASS_TO_PASS";
		int want_pass = !(c == 0 && !gold);
		for (size_t i = 0; i < lists[c]->n; i++, off++) {
			const char *name = lists[c]->items[i];
			int first = -2, first_run = 0, flaky = 0;
			for (int r = 1; r <= max_run && !flaky; r++) {
				const struct swerve_validate_obs *ob = by_run[r];
				if (!ob || ob->status != SWERVE_EPISODE_GRADED || !ob->tests)
					continue;
				int s = ob->tests[off];
				if (first == -2) {
					first = s;
					first_run = r;
				} else if (passes(s) != passes(first)) {
					add_reason(rs, "flaky: %s %s in run %d, %s in run %d (%s)",
					           name, test_status_str(first), first_run,
					           test_status_str(s), r, side);
					flaky = 1;
				}
			}
			if (flaky || first == -2 || passes(first) == want_pass)
				continue;
			if (c == 0 && !gold)
				add_reason(rs, "FAIL_TO_PASS %s passes without the patch", name);
			else if (first < 0)
				add_reason(rs, "%s %s is not in the test log %s", cat, name, side);
			else
				add_reason(rs, "%s %s %s %s (%s)", cat, name,
				           c == 0 ? "does not pass" : "fails", side,
				           test_status_str(first));
		}
	}
}

void swerve_validate_task_dispose(struct swerve_validate_task *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_reasons; i++)
		free(t->reasons[i]);
	free(t->reasons);
	t->reasons = NULL;
	t->n_reasons = 0;
}

int swerve_validate_judge(struct swerve_validate_task *out, const struct swerve_task *task,
                          const struct swerve_validate_obs *obs, size_t n_obs)
{
	struct reasons rs = {0};
	int max_run = 0, infra = 0;
	const struct swerve_validate_obs **by_run[2] = {NULL, NULL};

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n_obs; i++)
		if (obs[i].run > max_run)
			max_run = obs[i].run;
	by_run[0] = calloc((size_t)max_run + 1, sizeof(*by_run[0]));
	by_run[1] = calloc((size_t)max_run + 1, sizeof(*by_run[1]));
	if (!by_run[0] || !by_run[1])
		goto oom;
	for (size_t i = 0; i < n_obs; i++)
		if (obs[i].run >= 1)
			by_run[obs[i].gold ? 1 : 0][obs[i].run] = &obs[i];

	if (!task->patch || !*task->patch)
		add_reason(&rs, "the task has no gold patch");
	if (task->tests[SWERVE_FAIL_TO_PASS].n == 0)
		add_reason(&rs, "FAIL_TO_PASS is empty: no test shows the bug");
	if (n_obs == 0 && rs.n == 0)
		add_reason(&rs, "not run");
	judge_side(&rs, &infra, task, 0, by_run[0], max_run);
	judge_side(&rs, &infra, task, 1, by_run[1], max_run);
	if (rs.more) {
		size_t more = rs.more;
		rs.more = 0;
		rs.cap_off = 1; /* the summary line goes past the cap */
		add_reason(&rs, "... and %zu more", more);
	}
	if (rs.oom)
		goto oom;
	free(by_run[0]);
	free(by_run[1]);
	out->reasons = rs.v;
	out->n_reasons = rs.n;
	/* a task is rejected only for what it showed; an undecided task is an error */
	size_t n_infra = 0;
	for (size_t i = 0; i < rs.n; i++)
		n_infra += strncmp(rs.v[i], "infrastructure error", 20) == 0 ||
		           strncmp(rs.v[i], "not run", 7) == 0;
	out->status = rs.n == 0                                  ? SWERVE_VALIDATE_KEPT
	              : (infra || n_obs == 0) && n_infra == rs.n ? SWERVE_VALIDATE_ERROR
	                                                         : SWERVE_VALIDATE_REJECTED;
	return 0;
oom:
	free(by_run[0]);
	free(by_run[1]);
	for (size_t i = 0; i < rs.n; i++)
		free(rs.v[i]);
	free(rs.v);
	return swerve_error_set(SWERVE_ENOMEM, "validate %s: out of memory", task->instance_id);
}

/* ---- running the episodes ------------------------------------------------ */

struct rec {
	volatile int done;
	volatile int attempts;
	int status;
	char error[512];
};

struct slot {
	volatile int job; /* -1: between jobs */
	volatile pid_t pid;
};

struct job {
	size_t task;
	int gold, run;
	size_t test_off; /* into the shared test bytes */
};

struct ctx {
	const struct swerve_task_set *tasks;
	struct swerve_validate_opts o;
	struct job *jobs;
	size_t n_jobs;
	int *round; /* job indices of this round */
	size_t n_round;
	/* the shared mapping */
	void *map;
	size_t map_len;
	volatile int *next;
	struct rec *recs;
	signed char *tests;
	struct slot *slots;
};

static void run_job(struct ctx *c, const struct swerve_episode_env *env, int j)
{
	const struct job *jb = &c->jobs[j];
	const struct swerve_task *task = &c->tasks->tasks[jb->task];
	struct rec *rec = &c->recs[j];
	const char *patch = jb->gold ? task->patch : NULL;

	for (;;) {
		struct swerve_episode_result r;
		rec->attempts++;
		int rc = swerve_episode_run(&r, env, task, patch, 0);
		if (rc < 0 && rec->attempts < c->o.max_attempts) {
			snprintf(rec->error, sizeof(rec->error), "%s", r.error);
			swerve_episode_result_dispose(&r);
			swerve_sleep_ms(100 * rec->attempts);
			continue;
		}
		rec->status = rc < 0 ? SWERVE_EPISODE_INFRA_ERROR : (int)r.status;
		const char *err = r.error;
		if (rc >= 0 && r.status == SWERVE_EPISODE_PATCH_FAILED && !*err)
			err = r.patch.reason;
		snprintf(rec->error, sizeof(rec->error), "%s", err);
		if (rc >= 0 && r.status == SWERVE_EPISODE_GRADED) {
			size_t k = jb->test_off;
			for (int cat = 0; cat < 2; cat++) {
				const struct swerve_str_list *l =
				        &task->tests[cat == 0 ? SWERVE_FAIL_TO_PASS
				                              : SWERVE_PASS_TO_PASS];
				for (size_t i = 0; i < l->n; i++) {
					enum swerve_test_status st;
					c->tests[k++] =
					        r.tests && swerve_testlog_get(&st, r.tests,
					                                      l->items[i]) == 0
					                ? (signed char)st
					                : -1;
				}
			}
		}
		swerve_episode_result_dispose(&r);
		__sync_synchronize();
		rec->done = 1;
		return;
	}
}

static int worker_main(struct ctx *c, int idx)
{
	struct swerve_repo_cache *cache = NULL;
	struct swerve_sandbox *sb = NULL;
	struct swerve_episode_env env;
	int code = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (swerve_repo_cache_open(&cache, c->o.home) < 0 || swerve_sandbox_new(&sb, NULL) < 0) {
		fprintf(stderr, "swerve validate: worker %d: %s\n", idx, swerve_error_last());
		code = 3;
		goto done;
	}
	memset(&env, 0, sizeof(env));
	env.cache = cache;
	env.sb = sb;
	swerve_reward_spec_default(&env.reward);
	env.ws_mode = c->o.ws_mode;
	env.default_timeout_ms = c->o.default_timeout_ms;
	env.memory_bytes = c->o.memory_bytes;
	env.run_without_patch = 1;
	for (;;) {
		int k = __atomic_fetch_add(c->next, 1, __ATOMIC_SEQ_CST);
		if (k < 0 || (size_t)k >= c->n_round)
			break;
		int j = c->round[k];
		c->slots[idx].job = j;
		__sync_synchronize();
		run_job(c, &env, j);
		c->slots[idx].job = -1;
	}
done:
	swerve_sandbox_free(sb);
	swerve_repo_cache_free(cache);
	return code;
}

static pid_t spawn(struct ctx *c, int idx)
{
	fflush(NULL);
	c->slots[idx].job = -1;
	pid_t pid = fork();
	if (pid == 0)
		_exit(worker_main(c, idx));
	if (pid > 0)
		c->slots[idx].pid = pid;
	return pid;
}

static size_t count_done(const struct ctx *c)
{
	size_t n = 0;
	for (size_t j = 0; j < c->n_jobs; j++)
		n += c->recs[j].done != 0;
	return n;
}

struct round_idle {
	struct ctx *c;
	double t0, *last_progress;
};

static pid_t slot_pid(void *arg, int i)
{
	return ((struct round_idle *)arg)->c->slots[i].pid;
}

/* while no worker has ended: a progress line every 5 s */
static void round_progress(void *arg)
{
	struct round_idle *ri = arg;
	struct ctx *c = ri->c;
	if (c->o.progress && swerve_now_s() - *ri->last_progress >= 5.0) {
		*ri->last_progress = swerve_now_s();
		size_t d = count_done(c);
		double el = swerve_now_s() - ri->t0;
		fprintf(stderr, "validate: %zu/%zu episodes, %.2f/s\n", d, c->n_jobs,
		        el > 0 ? (double)d / el : 0.0);
	}
}

/* One round: workers take the round's jobs until none is left. */
static void run_round(struct ctx *c, double t0, double *last_progress)
{
	int nw = c->o.workers < (int)c->n_round ? c->o.workers : (int)c->n_round;
	int alive = 0;

	*c->next = 0;
	for (int i = 0; i < nw; i++)
		if (spawn(c, i) > 0)
			alive++;
	struct round_idle ri = {c, t0, last_progress};
	struct swerve_reap rp = {nw, slot_pid, round_progress, &ri, 20};
	while (alive > 0) {
		int status, idx = swerve_reap_next(&rp, &status);
		if (idx < 0)
			break;
		alive--;
		c->slots[idx].pid = 0;
		int j = c->slots[idx].job;
		int clean =
		        WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 3);
		if (j >= 0 && !c->recs[j].done) {
			/* died mid-episode: the next round runs it again (attempts counted) */
			swerve_worker_death(c->recs[j].error, sizeof(c->recs[j].error), status);
			fprintf(stderr, "swerve validate: %s: %s\n",
			        c->tasks->tasks[c->jobs[j].task].instance_id, c->recs[j].error);
		}
		if (!clean && (size_t)*c->next < c->n_round && spawn(c, idx) > 0)
			alive++;
	}
}

void swerve_validate_result_free(struct swerve_validate_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		swerve_validate_task_dispose(&r->tasks[i]);
	free(r->tasks);
	free(r);
}

static int set_one(struct swerve_validate_task *t, enum swerve_validate_status st, const char *fmt,
                   const char *a, const char *b) __attribute__((format(printf, 3, 0)));

static int set_one(struct swerve_validate_task *t, enum swerve_validate_status st, const char *fmt,
                   const char *a, const char *b)
{
	char line[700];
	snprintf(line, sizeof(line), fmt, a, b);
	t->reasons = calloc(1, sizeof(*t->reasons));
	if (!t->reasons || !(t->reasons[0] = strdup(line)))
		return swerve_error_set(SWERVE_ENOMEM, "validate: out of memory");
	t->n_reasons = 1;
	t->status = st;
	return 0;
}

int swerve_validate_run(struct swerve_validate_result **out, const struct swerve_task_set *tasks,
                        const struct swerve_validate_opts *opts)
{
	struct ctx c;
	struct swerve_validate_result *res = NULL;
	struct swerve_repo_cache *cache = NULL;
	struct swerve_sandbox *sb = NULL;
	struct swerve_validate_obs *obs = NULL;
	double t0 = swerve_now_s(), last_progress = t0;
	int rc = 0, runs;

	memset(&c, 0, sizeof(c));
	c.tasks = tasks;
	c.o = *opts;
	if (c.o.runs <= 0)
		c.o.runs = DEFAULT_RUNS;
	if (c.o.workers <= 0)
		c.o.workers = 1;
	if (c.o.max_attempts <= 0)
		c.o.max_attempts = DEFAULT_ATTEMPTS;
	runs = c.o.runs;

	/* nothing can run without a cache and a working sandbox: say so once */
	if ((rc = swerve_repo_cache_open(&cache, c.o.home)) < 0)
		return rc;
	if ((rc = swerve_sandbox_new(&sb, NULL)) < 0) {
		swerve_repo_cache_free(cache);
		return swerve_error_wrap("validate: sandbox");
	}
	swerve_sandbox_free(sb);

	res = calloc(1, sizeof(*res));
	c.jobs = calloc(tasks->n * 2 * (size_t)runs + 1, sizeof(*c.jobs));
	c.round = calloc(tasks->n * 2 * (size_t)runs + 1, sizeof(*c.round));
	if (res)
		res->tasks = calloc(tasks->n + 1, sizeof(*res->tasks));
	if (!res || !res->tasks || !c.jobs || !c.round) {
		rc = swerve_error_set(SWERVE_ENOMEM, "validate: out of memory");
		goto done;
	}
	res->n = tasks->n;

	/* jobs: per runnable task, (no patch, gold) x runs; the rest is decided now */
	size_t n_test_bytes = 0;
	for (size_t i = 0; i < tasks->n; i++) {
		const struct swerve_task *t = &tasks->tasks[i];
		char *gd = NULL;
		if (swerve_repo_git_dir(&gd, cache, t->repo) < 0) {
			rc = set_one(
			        &res->tasks[i], SWERVE_VALIDATE_ERROR,
			        "infrastructure error: repository %s is not in the cache (add it: "
			        "swerve repo add %s SOURCE)",
			        t->repo, t->repo);
			if (rc < 0)
				goto done;
			continue;
		}
		free(gd);
		if (!*t->patch || t->tests[SWERVE_FAIL_TO_PASS].n == 0) {
			/* nothing to run: the judge says why */
			if ((rc = swerve_validate_judge(&res->tasks[i], t, NULL, 0)) < 0)
				goto done;
			continue;
		}
		size_t nt = t->tests[SWERVE_FAIL_TO_PASS].n + t->tests[SWERVE_PASS_TO_PASS].n;
		for (int r = 1; r <= runs; r++)
			for (int g = 0; g < 2; g++) {
				c.jobs[c.n_jobs] = (struct job){i, g, r, n_test_bytes};
				n_test_bytes += nt;
				c.n_jobs++;
			}
	}

	/* the shared mapping: next counter, slots, records, test bytes */
	size_t off_slots = 64, off_recs = off_slots + sizeof(struct slot) * (size_t)c.o.workers;
	off_recs = (off_recs + 63) & ~(size_t)63;
	size_t off_tests = off_recs + sizeof(struct rec) * c.n_jobs;
	c.map_len = off_tests + n_test_bytes + 1;
	c.map = mmap(NULL, c.map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (c.map == MAP_FAILED) {
		c.map = NULL;
		rc = swerve_error_set(SWERVE_ENOMEM, "validate: shared memory (%zu bytes): %s",
		                      c.map_len, strerror(errno));
		goto done;
	}
	c.next = (volatile int *)c.map;
	c.slots = (struct slot *)((char *)c.map + off_slots);
	c.recs = (struct rec *)((char *)c.map + off_recs);
	c.tests = (signed char *)c.map + off_tests;

	for (int round = 0; round < c.o.max_attempts; round++) {
		c.n_round = 0;
		for (size_t j = 0; j < c.n_jobs; j++)
			if (!c.recs[j].done && c.recs[j].attempts < c.o.max_attempts)
				c.round[c.n_round++] = (int)j;
		if (c.n_round == 0)
			break;
		run_round(&c, t0, &last_progress);
	}

	/* judge every task that ran, from its records */
	obs = calloc(2 * (size_t)runs + 1, sizeof(*obs));
	if (!obs) {
		rc = swerve_error_set(SWERVE_ENOMEM, "validate: out of memory");
		goto done;
	}
	for (size_t j = 0; j < c.n_jobs;) {
		size_t ti = c.jobs[j].task, n = 0;
		for (; j < c.n_jobs && c.jobs[j].task == ti; j++, n++) {
			struct rec *rec = &c.recs[j];
			res->episodes += (size_t)rec->attempts;
			obs[n].gold = c.jobs[j].gold;
			obs[n].run = c.jobs[j].run;
			obs[n].status = rec->done ? (enum swerve_episode_status)rec->status
			                          : SWERVE_EPISODE_INFRA_ERROR;
			if (!rec->done && !rec->error[0])
				snprintf(rec->error, sizeof(rec->error),
				         "not run: no worker could start");
			obs[n].error = rec->error;
			obs[n].tests = c.tests + c.jobs[j].test_off;
		}
		if ((rc = swerve_validate_judge(&res->tasks[ti], &tasks->tasks[ti], obs, n)) < 0)
			goto done;
	}
	for (size_t i = 0; i < res->n; i++) {
		switch (res->tasks[i].status) {
		case SWERVE_VALIDATE_KEPT: res->kept++; break;
		case SWERVE_VALIDATE_REJECTED: res->rejected++; break;
		case SWERVE_VALIDATE_ERROR: res->errors++; break;
		}
	}
	res->wall_s = swerve_now_s() - t0;
done:
	free(obs);
	if (c.map)
		munmap(c.map, c.map_len);
	free(c.jobs);
	free(c.round);
	swerve_repo_cache_free(cache);
	if (rc < 0) {
		swerve_validate_result_free(res);
		return rc;
	}
	*out = res;
	return 0;
}

/* ---- output files ---------------------------------------------------------- */

static int write_atomic(const char *path, const char *data, size_t len)
{
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return swerve_error_set(SWERVE_EINVAL, "%s: path too long", path);
	FILE *f = fopen(tmp, "wb");
	if (!f)
		return swerve_error_set(SWERVE_EIO, "%s: %s", tmp, strerror(errno));
	size_t w = len ? fwrite(data, 1, len, f) : 0;
	if (fclose(f) != 0 || w != len || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		return swerve_error_set(SWERVE_EIO, "%s: write failed: %s", path, strerror(e));
	}
	return 0;
}

/* Appends s + '\n' to the growing buffer. */
static int append(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t n = strlen(s);
	if (*len + n + 2 > *cap) {
		size_t nc = (*cap ? *cap * 2 : 4096) + n + 2;
		char *b = realloc(*buf, nc);
		if (!b)
			return swerve_error_set(SWERVE_ENOMEM, "validate: out of memory");
		*buf = b;
		*cap = nc;
	}
	memcpy(*buf + *len, s, n);
	(*buf)[*len + n] = '\n';
	*len += n + 1;
	(*buf)[*len] = '\0';
	return 0;
}

static int rejected_line(char **buf, size_t *len, size_t *cap, const char *id, const char *repo,
                         const char *status, char *const *reasons, size_t n)
{
	json_t *a = json_array(), *o;
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_string(reasons[i]))) {
			json_decref(a);
			a = NULL;
		}
	o = a ? json_pack("{s:o,s:o,s:s,s:o}", "instance_id", id ? json_string(id) : json_null(),
	                  "repo", repo ? json_string(repo) : json_null(), "status", status,
	                  "reasons", a)
	      : NULL;
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	if (!s)
		return swerve_error_set(SWERVE_ENOMEM, "validate: out of memory");
	int rc = append(buf, len, cap, s);
	free(s);
	return rc;
}

int swerve_validate_write(const struct swerve_validate_result *r,
                          const struct swerve_task_set *tasks, const char *kept_path,
                          const char *rejected_path)
{
	char *kb = NULL, *rb = NULL;
	size_t kl = 0, kc = 0, rl = 0, rcap = 0;
	int rc = 0;

	if (r->n != tasks->n)
		return swerve_error_set(SWERVE_EINVAL, "validate: result of %zu tasks, set of %zu",
		                        r->n, tasks->n);
	for (size_t i = 0; i < tasks->n && rc == 0; i++) {
		const struct swerve_task *t = &tasks->tasks[i];
		const struct swerve_validate_task *v = &r->tasks[i];
		if (v->status == SWERVE_VALIDATE_KEPT)
			rc = append(&kb, &kl, &kc, t->json);
		else
			rc = rejected_line(&rb, &rl, &rcap, t->instance_id, t->repo,
			                   swerve_validate_status_name(v->status), v->reasons,
			                   v->n_reasons);
	}
	for (size_t i = 0; i < tasks->n_problems && rc == 0; i++)
		rc = rejected_line(&rb, &rl, &rcap, NULL, NULL, "rejected", &tasks->problems[i], 1);
	if (rc == 0 && kept_path)
		rc = write_atomic(kept_path, kb ? kb : "", kl);
	if (rc == 0 && rejected_path)
		rc = write_atomic(rejected_path, rb ? rb : "", rl);
	free(kb);
	free(rb);
	return rc;
}
