/* eval.h - SWE-bench batch evaluation on top of the db queue and the pool:
 * enqueue one rollout per prediction, and build the run report from what
 * the db recorded (so a killed and resumed run reports exactly what an
 * uninterrupted one would). */
#ifndef SWERVE_ENVS_EVAL_H
#define SWERVE_ENVS_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "db/db.h"
#include "envs/task.h"
#include "rewards/rewards.h"

/* The db group key of an instance in an eval run (stable: derived from the
 * instance id, so a resumed run finds the same slots). */
int64_t swerve_eval_group_key(const char *instance_id);

/* Upserts every task and enqueues one rollout per task that has a
 * prediction (preds NULL: the tasks' gold patches). Idempotent: what is
 * already queued or done stays as it is. An instance whose slot already
 * holds a different patch is reported (one line each on stderr) and
 * skipped; *out_conflicts counts them. */
int swerve_eval_enqueue(size_t *out_enqueued, size_t *out_conflicts, struct swerve_db *db,
                        int64_t run, const struct swerve_task_set *tasks,
                        const struct swerve_prediction_set *preds);

/* Builds the SWE-bench run report of run from the db: tasks (may be NULL:
 * then the db's tasks of the run) give total_instances; submitted are the
 * run's rollouts (preds, when given, decide patch_is_None). Writes the JSON
 * to *out (malloc'd). *out_errors gets the number of error instances and
 * *out_resolved the resolved ones (either may be NULL). */
int swerve_eval_report(char **out, size_t *out_resolved, size_t *out_errors, struct swerve_db *db,
                       int64_t run, const struct swerve_task_set *tasks,
                       const struct swerve_prediction_set *preds);

/* Prints a short human summary of a run report JSON to f. */
void swerve_eval_print_summary(FILE *f, const char *report_json);

#endif
