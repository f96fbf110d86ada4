/* report.c - per-instance report.json and the run report, in SWE-bench's
 * shape (SPEC.md section 4) with swerve's extras under one "swerve" key.
 * Does: build the JSON with jansson, sort id lists, write files atomically.
 * Does not: decide outcomes (the pipeline does) or read logs. */
#include "report.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OOM() swerve_error_set(SWERVE_ENOMEM, "report: out of memory")

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *names_array(const char *const *names, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_string(names[i] ? names[i] : ""))) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *tests_status(const struct swerve_grade *g)
{
	json_t *ts = json_object();
	for (int c = 0; ts && c < SWERVE_CATEGORY_COUNT; c++) {
		json_t *cat = json_pack("{s:o*,s:o*}", "success",
		                        names_array(g->success[c], g->n_success[c]), "failure",
		                        names_array(g->failure[c], g->n_failure[c]));
		if (!cat || json_object_set_new(ts, swerve_test_category_name(c), cat)) {
			json_decref(ts);
			return NULL;
		}
	}
	return ts;
}

static json_t *instance_extras(const struct swerve_instance_report *r)
{
	const struct swerve_grade *g = r->grade;
	return json_pack(
	        "{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:b,s:o,s:{s:f,s:f,s:f}}", "verdict",
	        str_or_null(r->verdict), "outcome",
	        r->has_outcome ? json_string(swerve_outcome_name(r->outcome)) : json_null(),
	        "reward", r->has_reward ? json_real(r->reward) : json_null(), "resolution",
	        g ? json_string(swerve_resolution_name(g->resolution)) : json_null(), "trusted",
	        g ? json_boolean(g->trusted) : json_null(), "untrusted_reason",
	        g && !g->trusted ? json_string(g->untrusted_reason) : json_null(), "apply_method",
	        str_or_null(r->apply_method), "log_parser", str_or_null(r->log_parser), "exit_code",
	        r->has_exit_code ? json_integer(r->exit_code) : json_null(), "log_incomplete",
	        r->log_incomplete, "error", str_or_null(r->error), "timings", "apply_s",
	        r->t_apply_s, "test_s", r->t_test_s, "total_s", r->t_total_s);
}

static json_t *instance_json(const struct swerve_instance_report *r)
{
	const struct swerve_grade *g = r->grade;
	int graded = g && g->trusted;
	json_t *body = json_pack("{s:b,s:b,s:b,s:b}", "patch_is_None", r->patch_is_none,
	                         "patch_exists", r->patch_exists, "patch_successfully_applied",
	                         r->patch_applied, "resolved", graded && g->resolved);
	if (!body)
		return NULL;
	if (graded && json_object_set_new(body, "tests_status", tests_status(g)))
		goto fail;
	if (json_object_set_new(body, "swerve", instance_extras(r)))
		goto fail;
	json_t *root = json_object();
	if (!root || json_object_set_new(root, r->instance_id ? r->instance_id : "", body)) {
		json_decref(root);
		return NULL;
	}
	return root;
fail:
	json_decref(body);
	return NULL;
}

static int dump(char **out, json_t *j)
{
	if (!j)
		return OOM();
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (!s)
		return OOM();
	*out = s;
	return 0;
}

int swerve_report_instance_json(char **out, const struct swerve_instance_report *r)
{
	if (!r->instance_id || !r->instance_id[0])
		return swerve_error_set(SWERVE_EINVAL, "report: instance without an instance_id");
	return dump(out, instance_json(r));
}

static int write_atomic(const char *path, const char *text)
{
	size_t n = strlen(path) + 32;
	char *tmp = malloc(n);
	if (!tmp)
		return OOM();
	snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "wb");
	int rc = 0;
	if (!f) {
		rc = swerve_error_set(SWERVE_EIO, "%s: %s", tmp, strerror(errno));
		goto done;
	}
	size_t len = strlen(text);
	int bad = fwrite(text, 1, len, f) != len || fputc('\n', f) == EOF;
	bad |= fclose(f) != 0;
	if (bad) {
		rc = swerve_error_set(SWERVE_EIO, "%s: write failed: %s", tmp, strerror(errno));
		unlink(tmp);
		goto done;
	}
	if (rename(tmp, path) != 0) {
		rc = swerve_error_set(SWERVE_EIO, "%s: %s", path, strerror(errno));
		unlink(tmp);
	}
done:
	free(tmp);
	return rc;
}

int swerve_report_instance_write(const char *path, const struct swerve_instance_report *r)
{
	char *text;
	int rc = swerve_report_instance_json(&text, r);
	if (rc)
		return rc;
	rc = write_atomic(path, text);
	free(text);
	return rc;
}

/* ---- the run report -------------------------------------------------------------- */

struct swerve_run_report {
	json_t *tasks;   /* id -> true, insertion order */
	json_t *preds;   /* id -> empty_patch */
	json_t *results; /* id -> {outcome, reward, error, untrusted} */
};

int swerve_run_report_new(struct swerve_run_report **out)
{
	struct swerve_run_report *rr = calloc(1, sizeof(*rr));
	if (!rr)
		return OOM();
	rr->tasks = json_object();
	rr->preds = json_object();
	rr->results = json_object();
	if (!rr->tasks || !rr->preds || !rr->results) {
		swerve_run_report_free(rr);
		return OOM();
	}
	*out = rr;
	return 0;
}

void swerve_run_report_free(struct swerve_run_report *rr)
{
	if (!rr)
		return;
	json_decref(rr->tasks);
	json_decref(rr->preds);
	json_decref(rr->results);
	free(rr);
}

int swerve_run_report_add_task(struct swerve_run_report *rr, const char *instance_id)
{
	if (!instance_id)
		return swerve_error_set(SWERVE_EINVAL, "run report: task without an instance_id");
	return json_object_set_new(rr->tasks, instance_id, json_true()) ? OOM() : 0;
}

int swerve_run_report_add_prediction(struct swerve_run_report *rr, const char *instance_id,
                                     int empty_patch)
{
	if (!instance_id)
		return swerve_error_set(SWERVE_EINVAL,
		                        "run report: prediction without an instance_id");
	return json_object_set_new(rr->preds, instance_id, json_boolean(empty_patch)) ? OOM() : 0;
}

int swerve_run_report_add_instance(struct swerve_run_report *rr,
                                   const struct swerve_instance_report *r)
{
	if (!r->instance_id)
		return swerve_error_set(SWERVE_EINVAL, "run report: result without an instance_id");
	int untrusted = r->grade && !r->grade->trusted;
	json_t *o = json_pack("{s:o,s:o,s:o,s:b,s:b}", "outcome",
	                      r->has_outcome ? json_string(swerve_outcome_name(r->outcome))
	                                     : json_null(),
	                      "reward", r->has_reward ? json_real(r->reward) : json_null(), "error",
	                      str_or_null(r->error), "untrusted", untrusted, "resolved",
	                      r->has_outcome && r->outcome == SWERVE_OUTCOME_RESOLVED);
	if (!o || json_object_set_new(rr->results, r->instance_id, o))
		return OOM();
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct idlist {
	const char **v;
	size_t n;
};

static int idlist_push(struct idlist *l, const char *id, size_t cap)
{
	if (l->n >= cap)
		return -1;
	l->v[l->n++] = id;
	return 0;
}

static json_t *idlist_json(struct idlist *l)
{
	qsort(l->v, l->n, sizeof(*l->v), cmp_str);
	return names_array(l->v, l->n);
}

enum {
	L_COMPLETED,
	L_INCOMPLETE,
	L_EMPTY,
	L_SUBMITTED,
	L_RESOLVED,
	L_UNRESOLVED,
	L_ERROR,
	L_UNTRUSTED,
	L_INFRA,
	L_COUNT
};

int swerve_run_report_json(char **out, const struct swerve_run_report *rr)
{
	size_t cap = json_object_size(rr->tasks) + json_object_size(rr->preds) + 1;
	struct idlist l[L_COUNT] = {{0}};
	json_t *root = NULL, *rewards = NULL, *outcomes = NULL, *counts = NULL;
	int rc = 0;
	for (int i = 0; i < L_COUNT; i++)
		if (!(l[i].v = calloc(cap, sizeof(char *)))) {
			rc = OOM();
			goto done;
		}
	rewards = json_object();
	outcomes = json_object();
	counts = json_object();
	if (!rewards || !outcomes || !counts) {
		rc = OOM();
		goto done;
	}
	for (int o = 0; o < SWERVE_OUTCOME_COUNT; o++)
		json_object_set_new(counts, swerve_outcome_name(o), json_integer(0));

	const char *id;
	json_t *v;
	double sum = 0;
	size_t nrewards = 0;
	json_object_foreach(rr->preds, id, v) idlist_push(&l[L_SUBMITTED], id, cap);
	json_object_foreach(rr->tasks, id, v)
	{
		json_t *pred = json_object_get(rr->preds, id);
		if (!pred) {
			idlist_push(&l[L_INCOMPLETE], id, cap);
			continue;
		}
		if (json_is_true(pred)) {
			idlist_push(&l[L_EMPTY], id, cap);
			continue;
		}
		json_t *res = json_object_get(rr->results, id);
		json_t *outcome = res ? json_object_get(res, "outcome") : NULL;
		if (!res || !json_is_string(outcome)) {
			idlist_push(&l[L_ERROR], id, cap);
			if (res && json_is_true(json_object_get(res, "untrusted")))
				idlist_push(&l[L_UNTRUSTED], id, cap);
			else if (res && json_is_string(json_object_get(res, "error")))
				idlist_push(&l[L_INFRA], id, cap);
			continue;
		}
		const char *oname = json_string_value(outcome);
		/* SWE-bench writes no report for a patch that does not apply, so its
		 * run report lists the instance under error_ids; so does ours (the
		 * outcome and reward stay in the swerve section). */
		if (strcmp(oname, swerve_outcome_name(SWERVE_OUTCOME_PATCH_FAILED)) == 0) {
			idlist_push(&l[L_ERROR], id, cap);
		} else {
			idlist_push(&l[L_COMPLETED], id, cap);
			idlist_push(json_is_true(json_object_get(res, "resolved"))
			                    ? &l[L_RESOLVED]
			                    : &l[L_UNRESOLVED],
			            id, cap);
		}
		json_object_set_new(
		        counts, oname,
		        json_integer(json_integer_value(json_object_get(counts, oname)) + 1));
		json_object_set(outcomes, id, outcome);
		json_t *rw = json_object_get(res, "reward");
		if (json_is_number(rw)) {
			json_object_set(rewards, id, rw);
			sum += json_number_value(rw);
			nrewards++;
		}
	}
	root = json_pack(
	        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o*,s:o*,s:o*,s:o*,s:o*,s:o*,s:o*,s:i}",
	        "total_instances", (json_int_t)json_object_size(rr->tasks), "submitted_instances",
	        (json_int_t)l[L_SUBMITTED].n, "completed_instances", (json_int_t)l[L_COMPLETED].n,
	        "resolved_instances", (json_int_t)l[L_RESOLVED].n, "unresolved_instances",
	        (json_int_t)l[L_UNRESOLVED].n, "empty_patch_instances", (json_int_t)l[L_EMPTY].n,
	        "error_instances", (json_int_t)l[L_ERROR].n, "completed_ids",
	        idlist_json(&l[L_COMPLETED]), "incomplete_ids", idlist_json(&l[L_INCOMPLETE]),
	        "empty_patch_ids", idlist_json(&l[L_EMPTY]), "submitted_ids",
	        idlist_json(&l[L_SUBMITTED]), "resolved_ids", idlist_json(&l[L_RESOLVED]),
	        "unresolved_ids", idlist_json(&l[L_UNRESOLVED]), "error_ids",
	        idlist_json(&l[L_ERROR]), "schema_version", 2);
	if (!root) {
		rc = OOM();
		goto done;
	}
	json_t *extra =
	        json_pack("{s:O,s:O,s:o*,s:o*,s:O,s:o}", "rewards", rewards, "outcomes", outcomes,
	                  "untrusted_ids", idlist_json(&l[L_UNTRUSTED]), "infra_error_ids",
	                  idlist_json(&l[L_INFRA]), "outcome_counts", counts, "mean_reward",
	                  nrewards ? json_real(sum / (double)nrewards) : json_null());
	if (!extra || json_object_set_new(root, "swerve", extra)) {
		rc = OOM();
		goto done;
	}
	rc = dump(out, root);
	root = NULL;
done:
	json_decref(root);
	json_decref(rewards);
	json_decref(outcomes);
	json_decref(counts);
	for (int i = 0; i < L_COUNT; i++)
		free(l[i].v);
	return rc;
}

int swerve_run_report_write(const char *path, const struct swerve_run_report *rr)
{
	char *text;
	int rc = swerve_run_report_json(&text, rr);
	if (rc)
		return rc;
	rc = write_atomic(path, text);
	free(text);
	return rc;
}
