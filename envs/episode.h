/* episode.h - one episode: a task, a patch, a verdict, a reward.
 *
 * The episode is the unit of work of `swerve eval` and `swerve work`: make
 * the workspace, apply the model's patch, restore and apply the task's
 * test_patch, run the test command in the sandbox, parse the log, grade,
 * and compute the reward. Storing the result (db, report files) is the
 * caller's step (envs/pool.c). The state machine is drawn at the top of
 * episode.c.
 *
 * Three kinds of ending, never confused:
 *   - a model result (status SWERVE_EPISODE_GRADED, or EMPTY_PATCH,
 *     PATCH_FAILED, TIMEOUT, VIOLATION): has an outcome and a reward;
 *   - a task error (SWERVE_EPISODE_TASK_ERROR): the task itself is broken
 *     (its test_patch does not apply, its log cannot be trusted, its test
 *     command cannot be derived): reported as an error, no reward;
 *   - an infrastructure error: swerve_episode_run() returns < 0 (the
 *     sandbox could not start, the disk is full, the repository is missing):
 *     the caller retries; it never becomes a reward.
 *
 * The patch step runs as the sandbox's in-process entry point (a clone of
 * the caller): call swerve_episode_run from a single-threaded process, as
 * the worker processes of envs/pool.c and envs/validate.c do. */
#ifndef SWERVE_ENVS_EPISODE_H
#define SWERVE_ENVS_EPISODE_H

#include <stddef.h>
#include <stdint.h>

#include "envs/repo.h"
#include "envs/task.h"
#include "envs/workspace.h"
#include "rewards/rewards.h"
#include "sandbox/sandbox.h"

enum swerve_episode_state {
	SWERVE_EP_START = 0,
	SWERVE_EP_WORKSPACE,  /* environment layer + workspace ready */
	SWERVE_EP_PATCH,      /* model patch applied (or refused, or empty) */
	SWERVE_EP_TEST_PATCH, /* test files restored, test_patch applied */
	SWERVE_EP_RUN,        /* test command ran in the sandbox */
	SWERVE_EP_PARSE,      /* log parsed into test statuses */
	SWERVE_EP_GRADE,      /* graded, outcome and reward decided */
	SWERVE_EP_DONE,       /* a model result or a task error */
	SWERVE_EP_INFRA,      /* infrastructure error (retry) */
	SWERVE_EP_STATE_COUNT,
};

const char *swerve_episode_state_name(enum swerve_episode_state s);

enum swerve_episode_status {
	SWERVE_EPISODE_GRADED = 0, /* tests ran and were graded: resolved/unresolved/regression */
	SWERVE_EPISODE_EMPTY_PATCH,
	SWERVE_EPISODE_PATCH_FAILED,
	SWERVE_EPISODE_TIMEOUT,
	SWERVE_EPISODE_VIOLATION,
	SWERVE_EPISODE_TASK_ERROR,
	SWERVE_EPISODE_INFRA_ERROR,
};

/* "graded", "empty_patch", "patch_failed", "timeout", "sandbox_violation",
 * "task_error", "infra_error". */
const char *swerve_episode_status_name(enum swerve_episode_status s);

/* The per-worker context: what an episode needs that outlives it. Borrowed
 * pointers; the caller owns them. */
struct swerve_episode_env {
	struct swerve_repo_cache *cache;
	struct swerve_sandbox *sb;
	struct swerve_reward_spec reward;
	enum swerve_ws_mode ws_mode; /* AUTO by default */
	const char *scratch_root;    /* NULL: <cache>/work */
	uint64_t default_timeout_ms; /* test run deadline when the task gives none; 0: 1800 s */
	uint64_t setup_timeout_ms;   /* environment layer deadline; 0: 1800 s */
	uint64_t memory_bytes;       /* sandbox memory limit; 0: the sandbox default */
	size_t max_patch_bytes;      /* 0: 1 MiB */
	int run_without_patch;       /* 1: an empty patch still runs the tests (validate) */
};

#define SWERVE_EPISODE_MAX_TRANSITIONS 16

struct swerve_episode_transition {
	enum swerve_episode_state state;
	uint64_t at_us; /* since the episode started */
};

struct swerve_episode_result {
	enum swerve_episode_status status;
	char error[512]; /* task or infrastructure error: one line; else "" */

	/* the model patch */
	int empty_patch;
	int patch_is_none;
	struct swerve_patch_outcome patch;
	struct swerve_patch_outcome test_patch;
	const char *ws_mode; /* "overlay" or "copy" */

	/* the test run */
	struct swerve_sandbox_result run; /* verdict XX until the tests ran */
	int ran;
	char *log; /* stdout then stderr of the test run, NUL-terminated (or NULL) */
	size_t log_len;
	int log_truncated;

	/* grading */
	struct swerve_testlog *tests; /* NULL until parsed */
	const char *parser;           /* the parser used */
	struct swerve_grade grade;
	int graded;
	int has_outcome;
	enum swerve_outcome outcome;
	double reward; /* valid when has_outcome */

	/* timings, ms */
	int64_t workspace_ms, apply_ms, test_ms, total_ms;

	struct swerve_episode_transition transitions[SWERVE_EPISODE_MAX_TRANSITIONS];
	size_t n_transitions;
};

/* Runs one episode of task with patch (NULL or "" = empty patch;
 * patch_is_none says it was null/absent rather than ""). Fills *out (always:
 * dispose it). Returns 0 for a model result or a task error (out->status
 * says which), < 0 for an infrastructure error (out->status INFRA_ERROR,
 * out->error and swerve_error_last() say why). */
int swerve_episode_run(struct swerve_episode_result *out, const struct swerve_episode_env *env,
                       const struct swerve_task *task, const char *patch, int patch_is_none);

void swerve_episode_result_dispose(struct swerve_episode_result *r);

/* The SWE-bench resolution string of a finished episode ("RESOLVED_FULL",
 * ...; "RESOLVED_NO" when not graded). */
const char *swerve_episode_resolution(const struct swerve_episode_result *r);

#endif
