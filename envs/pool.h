/* pool.h - the worker pool: processes that claim rollouts from the db queue,
 * run episodes (envs/episode.h) and store their results.
 *
 * `swerve eval` and `swerve work` are both this pool: eval enqueues one
 * rollout per prediction and runs until the queue of its run is empty; work
 * serves every run in the db until it is told to stop (SIGINT/SIGTERM).
 *
 * Workers are processes (fork), each with its own db handle, repository
 * cache handle and sandbox context, so one episode crashing its worker loses
 * nothing: the parent fails that worker's lease at once (the rollout is
 * retried, up to the run's max_attempts, then recorded as infra_error) and
 * starts a new worker. On SIGINT/SIGTERM workers stop claiming, finish the
 * episode in hand and exit; a second signal kills them, and their leases
 * return the rollouts to the queue. */
#ifndef SWERVE_ENVS_POOL_H
#define SWERVE_ENVS_POOL_H

#include <stdint.h>

#include "envs/episode.h"
#include "envs/task.h"

struct swerve_pool_opts {
	const char *db_path;
	int64_t run;         /* the run to serve; <= 0: every run (work) */
	int workers;         /* >= 1 */
	int lease_ms;        /* lease per claimed rollout; 0: 2 x the largest timeout + 120 s */
	int serve;           /* 1: keep polling for work until stopped (swerve work) */
	int progress_tty;    /* 1: redraw a progress line; 0: plain lines */
	int quiet;           /* no per-episode lines */
	const char *home;    /* repository cache ($SWERVE_HOME when NULL) */
	const char *out_dir; /* per-instance files
	                        <out>/<id>/{patch.diff,test_output.txt,report.json}; or NULL */
	const struct swerve_prediction_set *preds; /* eval: for patch_is_None; or NULL */
	/* episode settings (cache and sb are made per worker) */
	struct swerve_reward_spec reward;
	enum swerve_ws_mode ws_mode;
	uint64_t default_timeout_ms;
	uint64_t memory_bytes;
	size_t max_patch_bytes;
};

struct swerve_pool_stats {
	int64_t episodes;    /* results stored by this pool */
	int64_t infra_fails; /* infrastructure failures (retried or given up) */
	int64_t crashes;     /* workers that died and were replaced */
	int interrupted;     /* stopped by a signal before the queue was empty */
	double wall_s;
};

/* Runs the pool until the run's queue is empty (or, with serve, until a
 * signal). Returns 0, or < 0 when the pool could not start (db, sandbox). */
int swerve_pool_run(struct swerve_pool_stats *out, const struct swerve_pool_opts *opts);

/* Converts an episode result to a db result with its per-test statuses
 * (expected tests under their category, the log's other tests as OTHER; a
 * test missing from the log is recorded FAILED, as SWE-bench counts it) and
 * the output (the episode's error line, if any, then the log). *owned is
 * one block holding what out points to (free() it after use); other
 * strings are borrowed from r. */
struct swerve_db_result;
int swerve_pool_db_result(struct swerve_db_result *out, void **owned,
                          const struct swerve_episode_result *r);

/* Fills a per-instance report (envs/report.h) from an episode result;
 * borrows from r. */
struct swerve_instance_report;
void swerve_pool_instance_report(struct swerve_instance_report *ir,
                                 const struct swerve_episode_result *r, const char *id,
                                 int patch_is_none);

/* Writes <dir>/<instance_id>/{patch.diff,test_output.txt,report.json}. */
int swerve_pool_write_instance(const char *dir, const struct swerve_task *task, const char *patch,
                               int patch_is_none, const struct swerve_episode_result *r);

#endif
