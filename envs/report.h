/* report.h - SWE-bench-shaped reports, written with jansson.
 *
 * Per instance (report.json), SWE-bench's exact keys, plus swerve's under "swerve":
 *   {"<id>": {"patch_is_None", "patch_exists", "patch_successfully_applied",
 *             "resolved", "tests_status": {"FAIL_TO_PASS": {"success": [...],
 *             "failure": [...]}, "PASS_TO_PASS", "FAIL_TO_FAIL", "PASS_TO_FAIL"},
 *             "swerve": {verdict, outcome, reward, resolution, trusted,
 *             untrusted_reason, apply_method, log_parser, exit_code,
 *             log_incomplete, error, timings: {apply_s, test_s, total_s}}}}
 *   tests_status is present only for a trusted grade (as SWE-bench writes it
 *   only once the log was found and parsed).
 * Run report: SWE-bench's counts and sorted id lists and schema_version 2,
 * plus "swerve": {rewards: {id: r}, outcomes: {id: name}, untrusted_ids,
 * infra_error_ids, outcome_counts, mean_reward}. An instance is completed
 * when it has an outcome (a reward) other than patch_failed; an error when
 * it was submitted with a non-empty patch but its patch did not apply (as in
 * SWE-bench, which writes no report then; the outcome and reward stay in
 * the swerve section), or it ended in an infrastructure error, an untrusted
 * grade, or no result at all. */
#ifndef SWERVE_ENVS_REPORT_H
#define SWERVE_ENVS_REPORT_H

#include "rewards/rewards.h"

struct swerve_instance_report {
	const char *instance_id;
	int patch_is_none; /* model_patch was null/absent */
	int patch_exists;  /* a non-empty patch was submitted */
	int patch_applied;
	const struct swerve_grade *grade; /* NULL: not graded */
	/* swerve's extras */
	int has_outcome;
	enum swerve_outcome outcome;
	int has_reward;
	double reward;
	const char *verdict;      /* the sandbox verdict ("OK", "TO", ...), or NULL */
	const char *apply_method; /* how the patch applied, or NULL */
	const char *log_parser;   /* or NULL */
	int has_exit_code;
	int exit_code;
	int log_incomplete;
	const char *error; /* an infrastructure error (no outcome), or NULL */
	double t_apply_s, t_test_s, t_total_s;
};

/* The per-instance report as JSON text (malloc'd, 2-space indented). */
int swerve_report_instance_json(char **out, const struct swerve_instance_report *r);

/* Writes it to path (atomically: a temp file renamed over path). */
int swerve_report_instance_write(const char *path, const struct swerve_instance_report *r);

struct swerve_run_report;

int swerve_run_report_new(struct swerve_run_report **out);
void swerve_run_report_free(struct swerve_run_report *rr);

/* The dataset's instances (total_instances). Duplicates count once. */
int swerve_run_report_add_task(struct swerve_run_report *rr, const char *instance_id);

/* A submitted prediction; empty_patch for an empty or null model_patch. */
int swerve_run_report_add_prediction(struct swerve_run_report *rr, const char *instance_id,
                                     int empty_patch);

/* The result of one instance (copied; a later one for the same id replaces it). */
int swerve_run_report_add_instance(struct swerve_run_report *rr,
                                   const struct swerve_instance_report *r);

int swerve_run_report_json(char **out, const struct swerve_run_report *rr);
int swerve_run_report_write(const char *path, const struct swerve_run_report *rr);

#endif
