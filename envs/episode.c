/* episode.c - one episode as an explicit state machine.
 *
 *   START ──> WORKSPACE ──> PATCH ──> TEST_PATCH ──> RUN ──> PARSE ──> GRADE ──> DONE
 *     │           │          │  │         │           │                  │
 *     │           │          │  │         │           ├─ TO ──> DONE (timeout)
 *     │           │          │  │         │           ├─ SV ──> DONE (sandbox_violation)
 *     │           │          │  │         │           └─ untrusted log ──> baseline run
 *     │           │          │  │         │                 (test_patch only, no model patch):
 *     │           │          │  │         │                 trusted ──> DONE (the patch broke
 *     │           │          │  │         │                 the test run: unresolved), else
 *     │           │          │  │         │                 DONE (task_error)
 *     │           │          │  │         └─ test_patch refused ──> DONE (task_error)
 *     │           │          │  └─ refused ──> DONE (patch_failed)
 *     │           │          └─ empty ──> DONE (empty_patch; tests not run)
 *     └───────────┴──── any infrastructure failure (sandbox XX, I/O, missing repo) ──> INFRA
 *
 * Invariants:
 *  1. Only DONE carries an outcome and a reward; INFRA never does (the caller
 *     retries it), and a task_error never does.
 *  2. The model's patch is applied before the test files are restored and the
 *     test_patch applied, so whatever the patch did to the test files is gone
 *     before the tests run.
 *  3. Model-controlled input (the patch, the test run) is handled only inside
 *     the sandbox (workspace.c applies patches there).
 *  4. Every transition is recorded with its time (out->transitions); the
 *     result is complete whatever the ending.
 *  5. The workspace is removed before swerve_episode_run returns. */
#include "episode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envs/clock.h"
#include "envs/layer.h"
#include "sandbox/error.h"

#define DEFAULT_TIMEOUT_MS (1800ull * 1000)

const char *swerve_episode_state_name(enum swerve_episode_state s)
{
	static const char *const names[] = {"start", "workspace", "patch", "test_patch", "run",
	                                    "parse", "grade",     "done",  "infra"};
	return (unsigned)s < SWERVE_EP_STATE_COUNT ? names[s] : "?";
}

const char *swerve_episode_status_name(enum swerve_episode_status s)
{
	switch (s) {
	case SWERVE_EPISODE_GRADED: return "graded";
	case SWERVE_EPISODE_EMPTY_PATCH: return "empty_patch";
	case SWERVE_EPISODE_PATCH_FAILED: return "patch_failed";
	case SWERVE_EPISODE_TIMEOUT: return "timeout";
	case SWERVE_EPISODE_VIOLATION: return "sandbox_violation";
	case SWERVE_EPISODE_TASK_ERROR: return "task_error";
	case SWERVE_EPISODE_INFRA_ERROR: return "infra_error";
	}
	return "?";
}

const char *swerve_episode_resolution(const struct swerve_episode_result *r)
{
	if (r->graded && r->grade.trusted)
		return swerve_resolution_name(r->grade.resolution);
	return swerve_resolution_name(SWERVE_RESOLVED_NO);
}

struct ep {
	struct swerve_episode_result *out;
	const struct swerve_episode_env *env;
	const struct swerve_task *task;
	uint64_t t0;
	struct swerve_workspace *ws;
	struct swerve_layer layer;
	int have_layer;
	/* NULL-terminated copies of the task's lists, and its read-only binds */
	const char **setup, **vars;
	struct swerve_sandbox_bind *binds;
	size_t n_binds;
};

static void enter(struct ep *e, enum swerve_episode_state s)
{
	struct swerve_episode_result *o = e->out;
	if (o->n_transitions < SWERVE_EPISODE_MAX_TRANSITIONS) {
		o->transitions[o->n_transitions].state = s;
		o->transitions[o->n_transitions].at_us = swerve_now_us() - e->t0;
		o->n_transitions++;
	}
}

static int infra(struct ep *e, int rc)
{
	if (rc >= 0)
		rc = SWERVE_ERROR;
	snprintf(e->out->error, sizeof(e->out->error), "%s", swerve_error_last());
	e->out->status = SWERVE_EPISODE_INFRA_ERROR;
	e->out->has_outcome = 0;
	enter(e, SWERVE_EP_INFRA);
	return rc;
}

static int task_error(struct ep *e, const char *fmt, const char *detail)
{
	snprintf(e->out->error, sizeof(e->out->error), fmt, detail);
	e->out->status = SWERVE_EPISODE_TASK_ERROR;
	e->out->has_outcome = 0;
	enter(e, SWERVE_EP_DONE);
	return 0;
}

static int finish(struct ep *e, enum swerve_episode_status st, enum swerve_outcome oc,
                  double f2p_fraction)
{
	e->out->status = st;
	e->out->has_outcome = 1;
	e->out->outcome = oc;
	e->out->reward = swerve_reward(&e->env->reward, oc, f2p_fraction);
	enter(e, SWERVE_EP_DONE);
	return 0;
}

static const char **nul_list(const struct swerve_str_list *l)
{
	const char **v = calloc(l->n + 1, sizeof(*v));
	for (size_t i = 0; v && i < l->n; i++)
		v[i] = l->items[i];
	return v;
}

static int make_workspace(struct ep *e)
{
	const struct swerve_task *t = e->task;
	struct swerve_ws_opts wo = SWERVE_WS_OPTS_INIT;
	int rc;

	e->setup = nul_list(&t->setup);
	e->vars = nul_list(&t->env_vars);
	e->n_binds = t->env_ro_paths.n;
	e->binds = calloc(e->n_binds + 1, sizeof(*e->binds));
	if (!e->setup || !e->vars || !e->binds)
		return swerve_error_set(SWERVE_ENOMEM, "episode %s: out of memory", t->instance_id);
	for (size_t i = 0; i < t->env_ro_paths.n; i++)
		e->binds[i].src = e->binds[i].dst = t->env_ro_paths.items[i];

	if (t->setup.n > 0) {
		struct swerve_sandbox_probe probe;
		struct swerve_layer_spec spec = {0};
		swerve_sandbox_probe(&probe);
		spec.commands = e->setup;
		spec.env = e->vars;
		spec.ro_binds = e->binds;
		spec.n_ro_binds = e->n_binds;
		spec.wall_ms =
		        e->env->setup_timeout_ms ? e->env->setup_timeout_ms : DEFAULT_TIMEOUT_MS;
		int overlay = e->env->ws_mode == SWERVE_WS_COPY ? 0 : probe.overlay_userns;
		rc = swerve_layer_get(&e->layer, e->env->cache, e->env->sb, t->repo, t->base_commit,
		                      &spec, overlay);
		if (rc < 0)
			return swerve_error_wrap("instance %s: environment setup", t->instance_id);
		e->have_layer = 1;
		wo.layer = &e->layer;
	}
	wo.mode = e->env->ws_mode;
	wo.scratch_root = e->env->scratch_root;
	rc = swerve_workspace_new(&e->ws, e->env->cache, t->repo, t->base_commit, &wo);
	if (rc < 0)
		return swerve_error_wrap("instance %s: workspace", t->instance_id);
	e->out->ws_mode = swerve_ws_mode_name(e->ws->mode);
	return 0;
}

/* Runs the task's test command in the workspace; fills out->run and the log.
 * With step, the same sandbox start first applies the patches (the step's
 * fn) and execs the tests only when they applied: out->patch / test_patch
 * get the outcomes, and out->ran says whether the tests ran. *tests_us gets
 * the (monotonic) time the test command started: the step's marker, or the
 * start of the run. < 0: the sandbox could not run it (infrastructure). */
static int run_tests(uint64_t *tests_us, struct ep *e, struct swerve_ws_patch_step *step)
{
	struct swerve_episode_result *o = e->out;
	struct swerve_sandbox_opts so = SWERVE_SANDBOX_OPTS_INIT;
	const char *argv[] = {"/bin/sh", "-c", e->task->test_cmd, NULL};
	size_t tests_at = 0;
	uint64_t marker_ns = 0;
	int rc;

	*tests_us = swerve_now_us();

	swerve_sandbox_result_dispose(&o->run);
	free(o->log);
	o->log = NULL;
	o->ran = 0;
	swerve_workspace_sandbox_opts(e->ws, &so);
	/* the task's read-only paths (toolchains, a virtualenv) */
	so.ro_binds = e->binds;
	so.n_ro_binds = e->task->env_ro_paths.n;
	so.argv = argv;
	so.env = e->vars;
	so.limits.wall_ms = e->task->timeout_s > 0       ? (uint64_t)(e->task->timeout_s * 1000.0)
	                    : e->env->default_timeout_ms ? e->env->default_timeout_ms
	                                                 : DEFAULT_TIMEOUT_MS;
	if (e->env->memory_bytes)
		so.limits.memory_bytes = e->env->memory_bytes;
	if (step)
		swerve_workspace_patch_step_opts(step, &so);

	rc = swerve_sandbox_run(&o->run, e->env->sb, &so);
	if (rc < 0)
		return swerve_error_wrap("instance %s: test run", e->task->instance_id);
	if (step) {
		rc = swerve_workspace_patch_step_result(&o->patch, &o->test_patch, &tests_at,
		                                        &marker_ns, step, e->ws, &o->run);
		if (rc < 0)
			return swerve_error_wrap("instance %s: patch step", e->task->instance_id);
		if (!tests_at)
			return 0; /* a patch did not apply: the tests did not run */
		if (marker_ns / 1000 > *tests_us)
			*tests_us = marker_ns / 1000;
	}
	o->ran = 1;
	size_t out_len = o->run.out.len > tests_at ? o->run.out.len - tests_at : 0;
	o->log_len = out_len + o->run.err.len;
	o->log = malloc(o->log_len + 1);
	if (!o->log)
		return swerve_error_set(SWERVE_ENOMEM, "instance %s: out of memory",
		                        e->task->instance_id);
	memcpy(o->log, o->run.out.data ? o->run.out.data + tests_at : "", out_len);
	memcpy(o->log + out_len, o->run.err.data ? o->run.err.data : "", o->run.err.len);
	o->log[o->log_len] = '\0';
	o->log_truncated = o->run.out.truncated || o->run.err.truncated;
	return 0;
}

/* Parses the log and grades it into out->tests / out->grade. Can fail only
 * for lack of memory. */
static int parse_and_grade(struct ep *e)
{
	struct swerve_episode_result *o = e->out;
	struct swerve_grade_input gi;
	int rc, exit_code;

	if (o->graded)
		swerve_grade_dispose(&o->grade);
	o->graded = 0;
	swerve_testlog_free(o->tests);
	o->tests = NULL;
	rc = swerve_log_parse(&o->tests, e->task->log_parser, o->log, o->log_len,
	                      o->log_truncated ? SWERVE_LOG_TRUNCATED : 0);
	if (rc < 0) {
		/* nothing recognisable in the log: grade an empty one (no test ran) */
		if (swerve_testlog_new(&o->tests) < 0)
			return -1;
	}
	o->parser = swerve_testlog_parser(o->tests);
	if (!o->parser)
		o->parser = e->task->log_parser;
	enter(e, SWERVE_EP_PARSE);

	exit_code = o->run.verdict == SWERVE_VERDICT_OK || o->run.verdict == SWERVE_VERDICT_RE
	                    ? o->run.exit_code
	                    : SWERVE_EXIT_CODE_UNKNOWN;
	swerve_task_grade_input(&gi, e->task);
	if (swerve_grade_compute(&o->grade, &gi, o->tests, exit_code) < 0)
		return -1;
	o->graded = 1;
	return 0;
}

/* The model run's log cannot be trusted. Was it the patch, or the task?
 * Run the tests once more on the base commit with only the test_patch: if
 * that run is trustworthy, the model's patch broke the test run (a model
 * result: its F2P/P2P tests did not pass); if not, the task is broken. */
static int judge_untrusted(struct ep *e)
{
	struct swerve_episode_result *o = e->out;
	char reason[sizeof(o->grade.untrusted_reason)];
	struct swerve_patch_outcome tp;
	int rc;

	snprintf(reason, sizeof(reason), "%s", o->grade.untrusted_reason);
	if (o->empty_patch || !o->patch.applied)
		return task_error(e, "test log not trusted: %.400s", reason);
	if ((rc = swerve_workspace_reset(e->ws)) < 0)
		return infra(e, rc);
	if ((rc = swerve_workspace_apply_test_patch(&tp, e->ws, e->env->sb, e->task->test_patch,
	                                            strlen(e->task->test_patch))) < 0)
		return infra(e, rc);
	struct swerve_sandbox_result saved = o->run;
	char *saved_log = o->log;
	size_t saved_len = o->log_len;
	int saved_trunc = o->log_truncated;
	memset(&o->run, 0, sizeof(o->run));
	o->log = NULL;
	uint64_t unused;
	rc = run_tests(&unused, e, NULL);
	int baseline_ok = 0;
	if (rc == 0 && parse_and_grade(e) == 0)
		baseline_ok = o->grade.trusted;
	/* restore the model run's log and grade it again for the report */
	swerve_sandbox_result_dispose(&o->run);
	free(o->log);
	o->run = saved;
	o->log = saved_log;
	o->log_len = saved_len;
	o->log_truncated = saved_trunc;
	if (rc < 0)
		return infra(e, rc);
	if (parse_and_grade(e) < 0)
		return infra(e, -1);
	if (!baseline_ok)
		return task_error(e, "test log not trusted, even without the model's patch: %.400s",
		                  reason);
	/* The patch broke the run: every expected test that did not pass failed. */
	enum swerve_outcome oc = o->grade.n_failure[SWERVE_PASS_TO_PASS] > 0
	                                 ? SWERVE_OUTCOME_REGRESSION
	                                 : SWERVE_OUTCOME_UNRESOLVED;
	if (o->grade.n_failure[SWERVE_FAIL_TO_PASS] == 0 && oc != SWERVE_OUTCOME_REGRESSION)
		oc = SWERVE_OUTCOME_UNRESOLVED; /* an inconsistent run is never "resolved" */
	snprintf(o->error, sizeof(o->error), "the model's patch broke the test run: %.400s",
	         reason);
	return finish(e, SWERVE_EPISODE_GRADED, oc, o->grade.fraction[SWERVE_FAIL_TO_PASS]);
}

static int episode(struct ep *e, const char *patch, int patch_is_none)
{
	struct swerve_episode_result *o = e->out;
	const struct swerve_task *t = e->task;
	struct swerve_patch_opts po = SWERVE_PATCH_OPTS_INIT;
	uint64_t t1;
	int rc;

	if ((rc = make_workspace(e)) < 0)
		return infra(e, rc);
	t1 = swerve_now_us();
	o->workspace_ms = (int64_t)((t1 - e->t0) / 1000);
	enter(e, SWERVE_EP_WORKSPACE);

	o->patch_is_none = patch_is_none;
	o->empty_patch = !patch || !*patch;
	if (o->empty_patch && !e->env->run_without_patch) {
		enter(e, SWERVE_EP_PATCH);
		return finish(e, SWERVE_EPISODE_EMPTY_PATCH, SWERVE_OUTCOME_EMPTY_PATCH, 0);
	}
	int have_tp = t->test_patch && *t->test_patch;
	const char *tp = have_tp ? t->test_patch : NULL;
	size_t tlen = have_tp ? strlen(t->test_patch) : 0;
	uint64_t t_tests = 0;
	if (!o->empty_patch) {
		/* fast path: patch, test files + test_patch, tests: one sandbox start */
		struct swerve_ws_patch_step *step = NULL;
		po.max_bytes = e->env->max_patch_bytes;
		rc = swerve_workspace_patch_step_new(&step, &o->patch, &o->test_patch, e->ws, patch,
		                                     strlen(patch), tp, tlen, &po);
		if (rc < 0)
			return infra(e, rc);
		if (!step) {
			enter(e, SWERVE_EP_PATCH);
			if (o->patch.reason[0]) /* refused by the checks */
				return finish(e, SWERVE_EPISODE_PATCH_FAILED,
				              SWERVE_OUTCOME_PATCH_FAILED, 0);
			return task_error(e, "the task's test_patch does not apply: %.400s",
			                  o->test_patch.reason);
		}
		rc = run_tests(&t_tests, e, step);
		swerve_workspace_patch_step_free(step);
		if (rc < 0)
			return infra(e, rc);
		if (!o->patch.applied && !po.no_fuzz) {
			/* libgit2 refused: GNU patch with fuzz on a clean tree (own runs) */
			if ((rc = swerve_workspace_reset(e->ws)) < 0)
				return infra(e, rc);
			rc = swerve_workspace_apply_patches(&o->patch, &o->test_patch, e->ws,
			                                    e->env->sb, patch, strlen(patch), tp,
			                                    tlen, &po);
			if (rc < 0)
				return infra(e, rc);
		}
		enter(e, SWERVE_EP_PATCH);
		if (!o->patch.applied) {
			o->apply_ms = (int64_t)((swerve_now_us() - t1) / 1000);
			return finish(e, SWERVE_EPISODE_PATCH_FAILED, SWERVE_OUTCOME_PATCH_FAILED,
			              0);
		}
		if (have_tp && !o->test_patch.applied)
			return task_error(e, "the task's test_patch does not apply: %.400s",
			                  o->test_patch.reason);
		enter(e, SWERVE_EP_TEST_PATCH);
		/* applied by the fallback: the tests still have to run */
		if (!o->ran && (rc = run_tests(&t_tests, e, NULL)) < 0)
			return infra(e, rc);
	} else {
		enter(e, SWERVE_EP_PATCH);
		if (have_tp) {
			rc = swerve_workspace_apply_test_patch(&o->test_patch, e->ws, e->env->sb,
			                                       tp, tlen);
			if (rc < 0)
				return infra(e, rc);
			if (!o->test_patch.applied)
				return task_error(e, "the task's test_patch does not apply: %.400s",
				                  o->test_patch.reason);
		}
		enter(e, SWERVE_EP_TEST_PATCH);
		if ((rc = run_tests(&t_tests, e, NULL)) < 0)
			return infra(e, rc);
	}
	/* apply: up to the moment the test command started; test: from then on */
	o->apply_ms = (int64_t)((t_tests - t1) / 1000);
	o->test_ms = (int64_t)((swerve_now_us() - t_tests) / 1000);
	enter(e, SWERVE_EP_RUN);

	if (o->run.verdict == SWERVE_VERDICT_TO)
		return finish(e, SWERVE_EPISODE_TIMEOUT, SWERVE_OUTCOME_TIMEOUT, 0);
	if (o->run.verdict == SWERVE_VERDICT_SV)
		return finish(e, SWERVE_EPISODE_VIOLATION, SWERVE_OUTCOME_SANDBOX_VIOLATION, 0);

	if (parse_and_grade(e) < 0)
		return infra(e,
		             swerve_error_set(SWERVE_ENOMEM, "instance %s: grading: out of memory",
		                              t->instance_id));
	enter(e, SWERVE_EP_GRADE);
	if (!o->grade.trusted)
		return judge_untrusted(e);
	enum swerve_outcome oc;
	if (swerve_outcome_from_grade(&oc, &o->grade) < 0)
		return task_error(e, "%s", swerve_error_last());
	return finish(e, SWERVE_EPISODE_GRADED, oc, o->grade.fraction[SWERVE_FAIL_TO_PASS]);
}

int swerve_episode_run(struct swerve_episode_result *out, const struct swerve_episode_env *env,
                       const struct swerve_task *task, const char *patch, int patch_is_none)
{
	struct ep e = {0};
	int rc;

	memset(out, 0, sizeof(*out));
	out->run.verdict = SWERVE_VERDICT_XX;
	out->ws_mode = "none";
	e.out = out;
	e.env = env;
	e.task = task;
	e.t0 = swerve_now_us();
	enter(&e, SWERVE_EP_START);
	swerve_error_clear();

	rc = episode(&e, patch, patch_is_none);

	out->total_ms = (int64_t)((swerve_now_us() - e.t0) / 1000);
	swerve_workspace_free(e.ws);
	if (e.have_layer)
		swerve_layer_dispose(&e.layer);
	free(e.setup);
	free(e.vars);
	free(e.binds);
	return rc;
}

void swerve_episode_result_dispose(struct swerve_episode_result *r)
{
	if (!r)
		return;
	swerve_sandbox_result_dispose(&r->run);
	free(r->log);
	r->log = NULL;
	swerve_testlog_free(r->tests);
	r->tests = NULL;
	if (r->graded)
		swerve_grade_dispose(&r->grade);
	r->graded = 0;
}
