/* task.h - SWE-bench task instances, predictions and reward spec files,
 * read with jansson.
 *
 * Inputs accepted (SPEC.md section 4):
 *   tasks        a JSON list of instances, JSONL (one per line), or one
 *                object; FAIL_TO_PASS / PASS_TO_PASS (and the optional
 *                FAIL_TO_FAIL / PASS_TO_FAIL) as JSON-encoded strings or lists.
 *   predictions  JSONL, a JSON list, or a dict keyed by instance_id, of
 *                {instance_id, model_name_or_path, model_patch}; an empty or
 *                null model_patch is an empty patch. ("gold" predictions are
 *                the caller's business: use each task's patch.)
 * swerve's optional task fields:
 *   test_cmd    string: the shell command that runs the tests. Without it the
 *               command is derived as SWE-bench does from the repository and
 *               the files test_patch touches (swerve_task_derive_test_cmd).
 *   log_parser  string: a rewards/ parser name (or "auto").
 *   setup       string or list of strings: commands run once to build the
 *               environment layer.
 *   env         {"ro_paths": [paths mounted read-only], "vars": {NAME: value}}
 *   timeout_s   number > 0: the test run's wall-clock limit.
 * Other fields are ignored (datasets carry many). A malformed item is left
 * out and reported as one line "file:line: instance <id>: field <f>: reason";
 * duplicates are reported (the first wins); the rest still loads. */
#ifndef SWERVE_ENVS_TASK_H
#define SWERVE_ENVS_TASK_H

#include <stddef.h>

#include "rewards/rewards.h"

struct swerve_str_list {
	char **items;
	size_t n;
};

struct swerve_task {
	char *instance_id;
	char *repo; /* "owner/name" */
	char *base_commit;
	char *patch;      /* the gold fix ("" if absent) */
	char *test_patch; /* "" if absent */
	char *problem_statement, *hints_text, *created_at, *version;
	char *environment_setup_commit; /* NULL if absent */
	/* indexed by enum swerve_test_category */
	struct swerve_str_list tests[SWERVE_CATEGORY_COUNT];
	char *test_cmd;       /* never NULL */
	int test_cmd_derived; /* 1 if derived (the task had no test_cmd) */
	char *log_parser;     /* never NULL: given, derived with test_cmd, or "auto" */
	struct swerve_str_list setup;
	struct swerve_str_list env_ro_paths;
	struct swerve_str_list env_vars; /* "NAME=value" */
	double timeout_s;                /* 0: the runner's default */
	size_t line;                     /* where the item started in its file (1-based) */
	char *json;                      /* the item as compact JSON, keys sorted */
};

struct swerve_id_index; /* private: instance_id -> position */

struct swerve_task_set {
	struct swerve_task *tasks;
	size_t n;
	char **problems; /* one line each, "file:line: ..." */
	size_t n_problems;
	struct swerve_id_index *index; /* private (the loader's); may be NULL */
};

struct swerve_prediction {
	char *instance_id;
	char *model_name_or_path; /* "" if absent */
	char *model_patch;        /* NULL when empty, null or absent */
	int patch_is_none;        /* model_patch was null or absent (SWE-bench's patch_is_None) */
	size_t line;
};

struct swerve_prediction_set {
	struct swerve_prediction *preds;
	size_t n;
	char **problems;
	size_t n_problems;
	struct swerve_id_index *index; /* private (the loader's); may be NULL */
};

/* Loads a task file. Returns 0 when the file was read and its format
 * recognised, even if some items were left out (see set->problems);
 * SWERVE_ENOTFOUND / SWERVE_EIO if it cannot be read; SWERVE_EINVAL if it is
 * not JSON, JSONL or a list at all. */
int swerve_tasks_load(struct swerve_task_set **out, const char *path);

/* The same from memory; name is used in messages. */
int swerve_tasks_load_buffer(struct swerve_task_set **out, const char *name, const char *data,
                             size_t len);

void swerve_task_set_free(struct swerve_task_set *set);

/* The task with that id, or NULL (hashed for loaded sets); borrowed. */
const struct swerve_task *swerve_task_set_find(const struct swerve_task_set *set,
                                               const char *instance_id);

/* The grading input of a task (borrows the task's lists). Can't fail. */
void swerve_task_grade_input(struct swerve_grade_input *out, const struct swerve_task *task);

/* Derives the test command and log parser as SWE-bench does: the files
 * test_patch touches (less data files), as Django test labels for
 * django/django, sympy's bin/test for sympy/sympy, else by extension:
 * pytest -rA (.py), go test -v (packages of .go files), cargo test (.rs;
 * --test <name> for tests/<name>.rs), node --test with TAP (.js .mjs .cjs
 * .ts). SWERVE_EINVAL (message says why: set test_cmd) when none applies.
 * *cmd and *parser are malloc'd. */
int swerve_task_derive_test_cmd(char **cmd, char **parser, const char *repo,
                                const char *test_patch);

int swerve_predictions_load(struct swerve_prediction_set **out, const char *path);
int swerve_predictions_load_buffer(struct swerve_prediction_set **out, const char *name,
                                   const char *data, size_t len);
void swerve_prediction_set_free(struct swerve_prediction_set *set);

const struct swerve_prediction *swerve_prediction_set_find(const struct swerve_prediction_set *set,
                                                           const char *instance_id);

/* Drops predictions whose instance_id is not in tasks, adding one problem
 * line each ("file:line: instance X: unknown instance_id (not in the task
 * file)"). Returns how many were dropped. */
size_t swerve_predictions_check(struct swerve_prediction_set *preds,
                                const struct swerve_task_set *tasks);

/* Loads a reward spec file: a JSON object whose keys are outcome names
 * (numbers) and "partial_credit" (boolean); missing keys keep their
 * defaults (swerve_reward_spec_default). SWERVE_EINVAL naming the file and
 * key for an unknown key or a bad value; spec is unchanged on failure. */
int swerve_reward_spec_load(struct swerve_reward_spec *spec, const char *path);

#endif
