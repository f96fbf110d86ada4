/* validate.h - dataset QA: does each task show its bug, and does its gold
 * patch fix it, every time?
 *
 * For every task, the episode (envs/episode.h) runs with NO patch and with
 * the task's GOLD patch, `runs` times each. A task is kept when, in every
 * repetition, every FAIL_TO_PASS test fails without the patch (any status
 * but PASSED/XFAIL, or missing from the log) and passes with it (PASSED or
 * XFAIL), and every PASS_TO_PASS test passes both times. Anything else
 * rejects the task with one-line reasons ("FAIL_TO_PASS t passes without
 * the patch", "flaky: t PASSED in run 1, FAILED in run 2 (with the gold
 * patch)", "gold patch does not apply: ...", ...).
 *
 * An infrastructure failure (the sandbox could not start, a worker died) is
 * retried up to max_attempts times; a task that still could not be decided
 * is SWERVE_VALIDATE_ERROR, never "rejected" for a fault that is not the
 * task's.
 *
 * Episodes run in worker processes (fork), each with its own sandbox
 * context and repository cache handle, as envs/pool.c does, so one episode
 * crashing its worker loses only that episode (it is retried). */
#ifndef SWERVE_ENVS_VALIDATE_H
#define SWERVE_ENVS_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "envs/episode.h"
#include "envs/task.h"
#include "envs/workspace.h"

struct swerve_validate_opts {
	int runs;         /* repetitions of each side; 0: 2 */
	int workers;      /* worker processes; 0: 1 */
	int max_attempts; /* tries per episode on infrastructure errors; 0: 3 */
	const char *home; /* repository cache ($SWERVE_HOME when NULL) */
	enum swerve_ws_mode ws_mode;
	uint64_t default_timeout_ms; /* when a task gives none; 0: the episode's default */
	uint64_t memory_bytes;       /* sandbox memory limit; 0: the sandbox default */
	int progress;                /* 1: progress lines on stderr every few seconds */
};

enum swerve_validate_status {
	SWERVE_VALIDATE_KEPT = 0,
	SWERVE_VALIDATE_REJECTED, /* the task is broken, flaky or its gold patch fails */
	SWERVE_VALIDATE_ERROR,    /* infrastructure errors left it undecided */
};

/* "kept", "rejected", "error". */
const char *swerve_validate_status_name(enum swerve_validate_status s);

#define SWERVE_VALIDATE_MAX_REASONS 20 /* then one "... and N more" line */

struct swerve_validate_task {
	enum swerve_validate_status status;
	char **reasons; /* one line each; NULL when kept */
	size_t n_reasons;
};

struct swerve_validate_result {
	struct swerve_validate_task *tasks; /* parallel to the task set's tasks */
	size_t n;
	size_t kept, rejected, errors;
	size_t episodes; /* episodes run (retries included) */
	double wall_s;
};

/* Validates every task of tasks. Returns 0 when each task was decided or
 * marked ERROR (*out set; free it), or < 0 when nothing could start (the
 * repository cache or the sandbox is unusable: the message says why). */
int swerve_validate_run(struct swerve_validate_result **out, const struct swerve_task_set *tasks,
                        const struct swerve_validate_opts *opts);

void swerve_validate_result_free(struct swerve_validate_result *r);

/* What one episode showed, as the judge needs it. */
struct swerve_validate_obs {
	int gold;                          /* 0: without the patch, 1: with the gold patch */
	int run;                           /* 1-based repetition */
	enum swerve_episode_status status; /* INFRA_ERROR: gave up after retries */
	const char *error;                 /* the episode's error line, patch refusal, or "" */
	/* status GRADED: one entry per FAIL_TO_PASS then PASS_TO_PASS test of the
	 * task: an enum swerve_test_status, or -1 when the log does not name it */
	const signed char *tests;
};

/* Decides one task from its observations (any order; pure function, no
 * I/O). Fills *out (dispose with swerve_validate_task_dispose). Can fail
 * only for lack of memory. */
int swerve_validate_judge(struct swerve_validate_task *out, const struct swerve_task *task,
                          const struct swerve_validate_obs *obs, size_t n_obs);

void swerve_validate_task_dispose(struct swerve_validate_task *t);

/* Writes the kept tasks (their JSON, one per line, in the set's order) to
 * kept_path and one JSON line per other task to rejected_path:
 * {"instance_id", "repo", "status": "rejected"|"error", "reasons": [...]};
 * the set's problems (items of the task file that never became tasks) are
 * rejected too, as {"instance_id": null, "status": "rejected", "reasons":
 * [problem line]}. Either path may be NULL (not written). Files are replaced
 * atomically. */
int swerve_validate_write(const struct swerve_validate_result *r,
                          const struct swerve_task_set *tasks, const char *kept_path,
                          const char *rejected_path);

#endif
