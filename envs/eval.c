/* eval.c - enqueueing an evaluation and reporting it from the db.
 * Does: map tasks/predictions to rollouts (one group of one sample per
 * instance); rebuild outcomes from stored results. Does not: run episodes
 * (pool.c) or parse files (task.c). */
#include "eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "envs/report.h"
#include "sandbox/error.h"

int64_t swerve_eval_group_key(const char *instance_id)
{
	char hex[65];
	swerve_sha256_hex(hex, instance_id, strlen(instance_id));
	hex[15] = '\0';
	return (int64_t)strtoll(hex, NULL, 16);
}

int swerve_eval_enqueue(size_t *out_enqueued, size_t *out_conflicts, struct swerve_db *db,
                        int64_t run, const struct swerve_task_set *tasks,
                        const struct swerve_prediction_set *preds)
{
	size_t enq = 0, conflicts = 0;
	int rc;

	if ((rc = swerve_db_begin(db)) < 0)
		return rc;
	for (size_t i = 0; i < tasks->n; i++) {
		const struct swerve_task *t = &tasks->tasks[i];
		const char *patch;
		if (preds) {
			const struct swerve_prediction *p =
			        swerve_prediction_set_find(preds, t->instance_id);
			if (!p)
				continue; /* not submitted */
			patch = p->model_patch ? p->model_patch : "";
		} else {
			patch = t->patch ? t->patch : "";
		}
		int64_t task_id, rollout;
		int created = 0;
		if ((rc = swerve_db_task_upsert(&task_id, db, t->instance_id, t->repo,
		                                t->base_commit, t->json)) < 0)
			goto fail;
		struct swerve_db_rollout r = {0};
		r.run = run;
		r.task = task_id;
		r.group = swerve_eval_group_key(t->instance_id);
		r.group_size = 1;
		r.sample = 0;
		r.patch = patch;
		rc = swerve_db_enqueue(&rollout, &created, db, &r);
		if (rc == SWERVE_EEXIST) {
			fprintf(stderr,
			        "swerve eval: instance %s: this run already holds a different "
			        "patch "
			        "for it (use --redo, or a new --run-id)\n",
			        t->instance_id);
			conflicts++;
			continue;
		}
		if (rc < 0)
			goto fail;
		enq += created ? 1 : 0;
	}
	if ((rc = swerve_db_commit(db)) < 0)
		return rc;
	if (out_enqueued)
		*out_enqueued = enq;
	if (out_conflicts)
		*out_conflicts = conflicts;
	return 0;
fail:
	swerve_db_rollback(db);
	return rc;
}

/* ---- the report ----------------------------------------------------------- */

struct report_ctx {
	struct swerve_run_report *rr;
	const struct swerve_prediction_set *preds;
	int have_tasks;
	int rc;
};

/* The outcome of a stored result, as the episode decided it (episode.c):
 * the order is the reward formula's (rewards.h). */
static enum swerve_outcome stored_outcome(const struct swerve_db_row *row)
{
	const struct swerve_db_result *r = row->result;
	if (r->empty_patch)
		return SWERVE_OUTCOME_EMPTY_PATCH;
	if (!r->patch_applied)
		return SWERVE_OUTCOME_PATCH_FAILED;
	if (strcmp(r->verdict, "SV") == 0)
		return SWERVE_OUTCOME_SANDBOX_VIOLATION;
	if (strcmp(r->verdict, "TO") == 0)
		return SWERVE_OUTCOME_TIMEOUT;
	if (strcmp(r->resolved, "FULL") == 0)
		return SWERVE_OUTCOME_RESOLVED;
	if (r->p2p.failure > 0)
		return SWERVE_OUTCOME_REGRESSION;
	return SWERVE_OUTCOME_UNRESOLVED;
}

static int report_row(const struct swerve_db_row *row, void *payload)
{
	struct report_ctx *c = payload;
	struct swerve_instance_report ir;
	char err[600];
	int rc;

	memset(&ir, 0, sizeof(ir));
	ir.instance_id = row->instance_id;
	if (!c->have_tasks && (rc = swerve_run_report_add_task(c->rr, row->instance_id)) < 0)
		return c->rc = rc;
	const struct swerve_prediction *p =
	        c->preds ? swerve_prediction_set_find(c->preds, row->instance_id) : NULL;
	int empty = p ? !p->model_patch || !*p->model_patch : row->patch_empty;
	if ((rc = swerve_run_report_add_prediction(c->rr, row->instance_id, empty)) < 0)
		return c->rc = rc;
	if (strcmp(row->status, "done") == 0 && row->result) {
		const struct swerve_db_result *r = row->result;
		ir.patch_exists = !r->empty_patch;
		ir.patch_applied = r->patch_applied;
		ir.verdict = r->verdict;
		ir.apply_method = r->apply_method;
		if (r->has_reward) {
			ir.has_outcome = ir.has_reward = 1;
			ir.outcome = stored_outcome(row);
			ir.reward = r->reward;
		} else {
			/* a task error: the first output line says why */
			const char *o = r->output ? r->output : "task error";
			const char *nl = strchr(o, '\n');
			snprintf(err, sizeof(err), "%.*s", nl ? (int)(nl - o) : (int)strlen(o), o);
			ir.error = err;
		}
	} else if (strcmp(row->status, "infra_error") == 0) {
		snprintf(err, sizeof(err), "infrastructure error: %s",
		         row->last_error ? row->last_error : "(no message)");
		ir.error = err;
	} else {
		return 0; /* pending or running: incomplete */
	}
	if ((rc = swerve_run_report_add_instance(c->rr, &ir)) < 0)
		return c->rc = rc;
	return 0;
}

int swerve_eval_report(char **out, size_t *out_resolved, size_t *out_errors, struct swerve_db *db,
                       int64_t run, const struct swerve_task_set *tasks,
                       const struct swerve_prediction_set *preds)
{
	struct swerve_run_report *rr = NULL;
	struct report_ctx c = {0};
	char *json = NULL;
	int rc;

	if ((rc = swerve_run_report_new(&rr)) < 0)
		return rc;
	for (size_t i = 0; tasks && i < tasks->n; i++)
		if ((rc = swerve_run_report_add_task(rr, tasks->tasks[i].instance_id)) < 0)
			goto done;
	c.rr = rr;
	c.preds = preds;
	c.have_tasks = tasks != NULL;
	rc = swerve_db_results_foreach(db, run, report_row, &c);
	if (c.rc < 0)
		rc = c.rc;
	if (rc < 0)
		goto done;
	if ((rc = swerve_run_report_json(&json, rr)) < 0)
		goto done;
	if (out_resolved || out_errors) {
		json_t *root = json_loads(json, 0, NULL);
		if (out_resolved)
			*out_resolved = (size_t)json_integer_value(
			        json_object_get(root, "resolved_instances"));
		/* errors that need attention: not patches that failed to apply (a
		 * model result, listed under error_ids only for SWE-bench's sake) */
		json_t *oc = json_object_get(json_object_get(root, "swerve"), "outcome_counts");
		if (out_errors)
			*out_errors =
			        (size_t)(json_integer_value(
			                         json_object_get(root, "error_instances")) -
			                 json_integer_value(json_object_get(oc, "patch_failed")));
		json_decref(root);
	}
	*out = json;
	json = NULL;
done:
	free(json);
	swerve_run_report_free(rr);
	return rc;
}

void swerve_eval_print_summary(FILE *f, const char *report_json)
{
	json_t *root = json_loads(report_json, 0, NULL);
	if (!root)
		return;
	static const char *const keys[] = {"total_instances",      "submitted_instances",
	                                   "completed_instances",  "resolved_instances",
	                                   "unresolved_instances", "empty_patch_instances",
	                                   "error_instances"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		fprintf(f, "%-24s %lld\n", keys[i],
		        (long long)json_integer_value(json_object_get(root, keys[i])));
	json_t *sw = json_object_get(root, "swerve");
	json_t *counts = json_object_get(sw, "outcome_counts");
	if (json_is_object(counts)) {
		const char *k;
		json_t *v;
		fprintf(f, "outcomes:");
		json_object_foreach(counts, k, v)
		{
			if (json_integer_value(v))
				fprintf(f, " %s=%lld", k, (long long)json_integer_value(v));
		}
		fputc('\n', f);
	}
	json_t *mr = json_object_get(sw, "mean_reward");
	if (json_is_number(mr))
		fprintf(f, "%-24s %.4f\n", "mean_reward", json_number_value(mr));
	json_t *errs = json_object_get(root, "error_ids");
	json_t *outcomes = json_object_get(sw, "outcomes");
	size_t i;
	json_t *v;
	json_array_foreach(errs, i, v)
	{
		const char *id = json_string_value(v);
		const char *oc = json_string_value(json_object_get(outcomes, id));
		if (oc && strcmp(oc, "patch_failed") == 0)
			fprintf(f,
			        "error: %s (the patch did not apply: a model result, rewarded; "
			        "listed under error_ids as SWE-bench does)\n",
			        id);
		else
			fprintf(f, "error: %s\n", id);
	}
	json_decref(root);
}
