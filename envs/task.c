/* task.c - reads SWE-bench task instances, predictions and reward spec files
 * (formats in task.h) with jansson, and derives a task's test command.
 * Does: find the items of a JSON list, JSONL or dict file with their line
 * numbers (each list element is decoded on its own, so an error names its
 * line), validate every field, keep going past bad items. Does not: touch
 * repositories or run anything. */
#include "task.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------------ */

static int problems_add(char ***list, size_t *n, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int problems_add(char ***list, size_t *n, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	char **l = realloc(*list, (*n + 1) * sizeof(*l));
	if (!l)
		return -1;
	*list = l;
	if (!(l[*n] = strdup(buf)))
		return -1;
	(*n)++;
	return 0;
}

static void str_list_free(struct swerve_str_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

static int str_list_push(struct swerve_str_list *l, const char *s)
{
	char **items = realloc(l->items, (l->n + 1) * sizeof(*items));
	if (!items)
		return -1;
	l->items = items;
	if (!(items[l->n] = strdup(s)))
		return -1;
	l->n++;
	return 0;
}

static int read_whole(char **out, size_t *len, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return swerve_error_set(errno == ENOENT ? SWERVE_ENOTFOUND : SWERVE_EIO, "%s: %s",
		                        path, strerror(errno));
	char *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (cap - n < 65536) {
			cap = cap ? cap * 2 : 65536;
			char *b = realloc(buf, cap + 1);
			if (!b) {
				free(buf);
				fclose(f);
				return swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", path);
			}
			buf = b;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	int err = ferror(f);
	fclose(f);
	if (err) {
		free(buf);
		return swerve_error_set(SWERVE_EIO, "%s: read error", path);
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* ---- an instance_id index ----------------------------------------------------------
 * Datasets run to tens of thousands of instances (SWE-Gym, SWE-smith):
 * duplicate checks and lookups must not be quadratic. Keys are the items'
 * own instance_id strings (stable: each is malloc'd on its own). */

struct swerve_id_index {
	const char **keys;
	size_t *pos;
	size_t nslots, n;
};

static uint64_t id_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void index_free(struct swerve_id_index *ix)
{
	if (!ix)
		return;
	free(ix->keys);
	free(ix->pos);
	free(ix);
}

/* Position of key, or -1. */
static long index_find(const struct swerve_id_index *ix, const char *key)
{
	if (!ix || !key)
		return -1;
	for (size_t i = id_hash(key) & (ix->nslots - 1);; i = (i + 1) & (ix->nslots - 1)) {
		if (!ix->keys[i])
			return -1;
		if (strcmp(ix->keys[i], key) == 0)
			return (long)ix->pos[i];
	}
}

static int index_add(struct swerve_id_index **pix, const char *key, size_t pos)
{
	struct swerve_id_index *ix = *pix;
	if (!ix) {
		if (!(ix = calloc(1, sizeof(*ix))))
			return -1;
		*pix = ix;
	}
	if ((ix->n + 1) * 2 > ix->nslots) {
		size_t nslots = ix->nslots ? ix->nslots * 2 : 64;
		const char **keys = calloc(nslots, sizeof(*keys));
		size_t *p = calloc(nslots, sizeof(*p));
		if (!keys || !p) {
			free(keys);
			free(p);
			return -1;
		}
		for (size_t i = 0; i < ix->nslots; i++) {
			if (!ix->keys[i])
				continue;
			size_t j = id_hash(ix->keys[i]) & (nslots - 1);
			while (keys[j])
				j = (j + 1) & (nslots - 1);
			keys[j] = ix->keys[i];
			p[j] = ix->pos[i];
		}
		free(ix->keys);
		free(ix->pos);
		ix->keys = keys;
		ix->pos = p;
		ix->nslots = nslots;
	}
	size_t j = id_hash(key) & (ix->nslots - 1);
	while (ix->keys[j])
		j = (j + 1) & (ix->nslots - 1);
	ix->keys[j] = key;
	ix->pos[j] = pos;
	ix->n++;
	return 0;
}

/* ---- walking the items of a file ----------------------------------------------- */

/* Called per item with the decoded object (borrowed) and its line; key is
 * the dict key for dict files, else NULL. Returns 0 to go on, or an error
 * code (out of memory) to stop. */
typedef int (*item_fn)(json_t *item, size_t line, const char *key, void *ctx);

struct walk {
	const char *name;
	char ***problems;
	size_t *n_problems;
};

static size_t count_lines(const char *data, size_t from, size_t to, size_t line)
{
	for (const char *p = data + from; (p = memchr(p, '\n', (size_t)(data + to - p))); p++)
		line++;
	return line;
}

#define OOM() swerve_error_set(SWERVE_ENOMEM, "out of memory")

static int walk_items(const struct walk *w, const char *data, size_t len, item_fn fn, void *ctx)
{
	json_error_t err;
	size_t p = 0;
	if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
		p = 3; /* UTF-8 BOM */
	while (p < len && (data[p] == ' ' || data[p] == '\t' || data[p] == '\n' || data[p] == '\r'))
		p++;
	if (p == len)
		return 0; /* an empty file holds no items */
	size_t line = count_lines(data, 0, p, 1);

	if (data[p] == '[') {
		/* a list: decode element by element to know their lines */
		size_t at = p;
		p++;
		for (;;) {
			while (p < len && (data[p] == ' ' || data[p] == '\t' || data[p] == '\n' ||
			                   data[p] == '\r'))
				p++;
			line = count_lines(data, at, p, line);
			at = p;
			if (p < len && data[p] == ']')
				return 0;
			json_t *item = json_loadb(data + p, len - p,
			                          JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &err);
			if (!item) {
				if (problems_add(
				            w->problems, w->n_problems,
				            "%s:%zu:%d: JSON syntax: %s (items after this one are "
				            "not read)",
				            w->name,
				            line + (err.line > 0 ? (size_t)err.line - 1 : 0),
				            err.column, err.text))
					return OOM();
				return 0;
			}
			int rc = fn(item, line, NULL, ctx);
			json_decref(item);
			if (rc)
				return rc;
			p += (size_t)err.position;
			while (p < len && (data[p] == ' ' || data[p] == '\t' || data[p] == '\n' ||
			                   data[p] == '\r'))
				p++;
			if (p < len && data[p] == ',') {
				p++;
				continue;
			}
			if (p < len && data[p] == ']')
				return 0;
			line = count_lines(data, at, p, line);
			if (problems_add(w->problems, w->n_problems,
			                 "%s:%zu: JSON syntax: ',' or ']' expected after the item "
			                 "(items "
			                 "after this one are not read)",
			                 w->name, line))
				return OOM();
			return 0;
		}
	}
	if (data[p] != '{')
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "%s:%zu: not a JSON list, JSONL or object (starts with '%c')", w->name,
		        line, data[p]);

	json_t *whole = json_loadb(data + p, len - p, 0, &err);
	if (whole && !json_object_get(whole, "instance_id")) {
		/* a dict keyed by instance_id */
		const char *key;
		json_t *val;
		int rc = 0;
		json_object_foreach(whole, key, val)
		{
			/* the line of the key's first occurrence, where findable */
			size_t kl = strlen(key), kline = 0;
			char *pat = malloc(kl + 3);
			if (!pat) {
				rc = OOM();
				break;
			}
			pat[0] = '"';
			memcpy(pat + 1, key, kl);
			pat[kl + 1] = '"';
			const char *hit = memmem(data, len, pat, kl + 2);
			free(pat);
			if (hit)
				kline = count_lines(data, 0, (size_t)(hit - data), 1);
			if ((rc = fn(val, kline, key, ctx)) != 0)
				break;
		}
		json_decref(whole);
		return rc;
	}
	if (whole) {
		int rc = fn(whole, line, NULL, ctx);
		json_decref(whole);
		return rc;
	}
	/* JSONL: every non-blank line is one item */
	size_t lineno = 1, start = 0;
	while (start < len) {
		const char *nl = memchr(data + start, '\n', len - start);
		size_t end = nl ? (size_t)(nl - data) : len;
		size_t a = start;
		if (a == 0 && len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
			a = 3;
		while (a < end && (data[a] == ' ' || data[a] == '\t' || data[a] == '\r'))
			a++;
		if (a < end) {
			json_t *item = json_loadb(data + a, end - a, 0, &err);
			if (!item) {
				if (problems_add(w->problems, w->n_problems,
				                 "%s:%zu:%d: JSON syntax: %s", w->name, lineno,
				                 err.column, err.text))
					return OOM();
			} else {
				int rc = fn(item, lineno, NULL, ctx);
				json_decref(item);
				if (rc)
					return rc;
			}
		}
		start = end + 1;
		lineno++;
	}
	return 0;
}

/* ---- tasks ---------------------------------------------------------------------- */

struct task_ctx {
	struct walk w;
	struct swerve_task_set *set;
	size_t cap;
};

/* A field error for the current item: recorded, the item is left out. */
struct item_err {
	char msg[512];
};

static int field_err(struct item_err *e, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int field_err(struct item_err *e, const char *field, const char *fmt, ...)
{
	char reason[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	snprintf(e->msg, sizeof(e->msg), "field %s: %s", field, reason);
	return SWERVE_EINVAL;
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "a list";
	case JSON_STRING: return "a string";
	case JSON_INTEGER:
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "?";
}

/* Optional string field: NULL/absent -> dflt (may be NULL). Numbers are
 * accepted for "version" (some exports write 3.0). */
static int get_string(char **out, json_t *obj, const char *field, const char *dflt, int required,
                      struct item_err *e)
{
	json_t *v = json_object_get(obj, field);
	if (!v || json_is_null(v)) {
		if (required)
			return field_err(e, field, "missing");
		*out = dflt ? strdup(dflt) : NULL;
		return dflt && !*out ? SWERVE_ENOMEM : 0;
	}
	if (json_is_number(v) && strcmp(field, "version") == 0) {
		char buf[64];
		snprintf(buf, sizeof(buf), "%g", json_number_value(v));
		*out = strdup(buf);
		return *out ? 0 : SWERVE_ENOMEM;
	}
	if (!json_is_string(v))
		return field_err(e, field, "expected a string, got %s", type_name(v));
	if (required && json_string_length(v) == 0)
		return field_err(e, field, "empty");
	if (strlen(json_string_value(v)) != json_string_length(v))
		return field_err(e, field, "contains a NUL character");
	*out = strdup(json_string_value(v));
	return *out ? 0 : SWERVE_ENOMEM;
}

/* A list of strings, given as a list or as a JSON-encoded string of one. */
static int get_test_list(struct swerve_str_list *out, json_t *obj, const char *field, int required,
                         struct item_err *e)
{
	json_t *v = json_object_get(obj, field);
	json_t *owned = NULL;
	int rc = 0;
	if (!v || json_is_null(v))
		return required ? field_err(e, field, "missing") : 0;
	if (json_is_string(v)) {
		json_error_t err;
		owned = json_loadb(json_string_value(v), json_string_length(v), JSON_DECODE_ANY,
		                   &err);
		if (!owned)
			return field_err(e, field,
			                 "a string that is not a JSON list (%s at column %d)",
			                 err.text, err.column);
		v = owned;
	}
	if (!json_is_array(v)) {
		rc = field_err(e, field, "expected a list of test ids, got %s", type_name(v));
		goto done;
	}
	size_t i;
	json_t *t;
	json_array_foreach(v, i, t)
	{
		if (!json_is_string(t) || strlen(json_string_value(t)) != json_string_length(t)) {
			rc = field_err(e, field, "item %zu is %s, not a test id", i, type_name(t));
			goto done;
		}
		if (str_list_push(out, json_string_value(t))) {
			rc = SWERVE_ENOMEM;
			goto done;
		}
	}
done:
	json_decref(owned);
	return rc;
}

static int get_str_or_list(struct swerve_str_list *out, json_t *obj, const char *field,
                           struct item_err *e)
{
	json_t *v = json_object_get(obj, field);
	if (!v || json_is_null(v))
		return 0;
	if (json_is_string(v))
		return str_list_push(out, json_string_value(v)) ? SWERVE_ENOMEM : 0;
	if (!json_is_array(v))
		return field_err(e, field, "expected a string or a list of strings, got %s",
		                 type_name(v));
	size_t i;
	json_t *t;
	json_array_foreach(v, i, t)
	{
		if (!json_is_string(t))
			return field_err(e, field, "item %zu is %s, not a string", i, type_name(t));
		if (str_list_push(out, json_string_value(t)))
			return SWERVE_ENOMEM;
	}
	return 0;
}

static int get_env(struct swerve_task *t, json_t *obj, struct item_err *e)
{
	json_t *v = json_object_get(obj, "env");
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return field_err(e, "env",
		                 "expected an object {\"ro_paths\": [...], \"vars\": {...}}, "
		                 "got %s",
		                 type_name(v));
	const char *key;
	json_t *val;
	json_object_foreach(v, key, val)
	{
		if (strcmp(key, "ro_paths") == 0) {
			if (!json_is_array(val))
				return field_err(e, "env.ro_paths",
				                 "expected a list of paths, got %s",
				                 type_name(val));
			size_t i;
			json_t *p;
			json_array_foreach(val, i, p)
			{
				if (!json_is_string(p) || json_string_value(p)[0] != '/')
					return field_err(e, "env.ro_paths",
					                 "item %zu: expected an absolute path", i);
				if (str_list_push(&t->env_ro_paths, json_string_value(p)))
					return SWERVE_ENOMEM;
			}
		} else if (strcmp(key, "vars") == 0) {
			if (!json_is_object(val))
				return field_err(e, "env.vars",
				                 "expected an object of strings, got %s",
				                 type_name(val));
			const char *name;
			json_t *s;
			json_object_foreach(val, name, s)
			{
				if (!name[0] || strchr(name, '='))
					return field_err(e, "env.vars", "bad variable name '%s'",
					                 name);
				if (!json_is_string(s))
					return field_err(e, "env.vars",
					                 "%s: expected a string, got %s", name,
					                 type_name(s));
				size_t n = strlen(name) + 1 + json_string_length(s) + 1;
				char *kv = malloc(n);
				if (!kv)
					return SWERVE_ENOMEM;
				snprintf(kv, n, "%s=%s", name, json_string_value(s));
				int rc = str_list_push(&t->env_vars, kv);
				free(kv);
				if (rc)
					return SWERVE_ENOMEM;
			}
		} else {
			return field_err(e, "env", "unknown key '%s' (known: ro_paths, vars)", key);
		}
	}
	return 0;
}

static void task_dispose(struct swerve_task *t)
{
	free(t->instance_id);
	free(t->repo);
	free(t->base_commit);
	free(t->patch);
	free(t->test_patch);
	free(t->problem_statement);
	free(t->hints_text);
	free(t->created_at);
	free(t->version);
	free(t->environment_setup_commit);
	for (int c = 0; c < SWERVE_CATEGORY_COUNT; c++)
		str_list_free(&t->tests[c]);
	free(t->test_cmd);
	free(t->log_parser);
	str_list_free(&t->setup);
	str_list_free(&t->env_ro_paths);
	str_list_free(&t->env_vars);
	free(t->json);
	memset(t, 0, sizeof(*t));
}

static int task_from_json(struct swerve_task *t, json_t *obj, struct item_err *e)
{
	int rc;
	if (!json_is_object(obj))
		return field_err(e, "(item)", "expected an object, got %s", type_name(obj));
	if ((rc = get_string(&t->instance_id, obj, "instance_id", NULL, 1, e)) ||
	    (rc = get_string(&t->repo, obj, "repo", NULL, 1, e)) ||
	    (rc = get_string(&t->base_commit, obj, "base_commit", NULL, 1, e)) ||
	    (rc = get_string(&t->patch, obj, "patch", "", 0, e)) ||
	    (rc = get_string(&t->test_patch, obj, "test_patch", "", 0, e)) ||
	    (rc = get_string(&t->problem_statement, obj, "problem_statement", "", 0, e)) ||
	    (rc = get_string(&t->hints_text, obj, "hints_text", "", 0, e)) ||
	    (rc = get_string(&t->created_at, obj, "created_at", "", 0, e)) ||
	    (rc = get_string(&t->version, obj, "version", "", 0, e)) ||
	    (rc = get_string(&t->environment_setup_commit, obj, "environment_setup_commit", NULL, 0,
	                     e)))
		return rc;
	if (!strchr(t->repo, '/') || t->repo[0] == '/' || strstr(t->repo, ".."))
		return field_err(e, "repo", "'%s' is not of the form owner/name", t->repo);
	for (int c = 0; c < SWERVE_CATEGORY_COUNT; c++)
		if ((rc = get_test_list(&t->tests[c], obj,
		                        swerve_test_category_name((enum swerve_test_category)c),
		                        c <= SWERVE_PASS_TO_PASS, e)))
			return rc;
	if ((rc = get_string(&t->test_cmd, obj, "test_cmd", NULL, 0, e)) ||
	    (rc = get_string(&t->log_parser, obj, "log_parser", NULL, 0, e)) ||
	    (rc = get_str_or_list(&t->setup, obj, "setup", e)) || (rc = get_env(t, obj, e)))
		return rc;
	if (t->test_cmd && !t->test_cmd[0])
		return field_err(e, "test_cmd", "empty");
	if (t->log_parser && !swerve_log_parser_exists(t->log_parser))
		return field_err(e, "log_parser",
		                 "unknown parser '%s' (known: pytest, unittest, django, sympy, go, "
		                 "gojson, cargo, tap, junit, node, ctest, auto)",
		                 t->log_parser);
	json_t *to = json_object_get(obj, "timeout_s");
	if (to && !json_is_null(to)) {
		if (!json_is_number(to) || !(json_number_value(to) > 0) ||
		    !isfinite(json_number_value(to)))
			return field_err(e, "timeout_s", "expected a positive number");
		t->timeout_s = json_number_value(to);
	}
	if (!t->test_cmd) {
		char *parser = NULL;
		if (swerve_task_derive_test_cmd(&t->test_cmd, &parser, t->repo, t->test_patch) != 0)
			return field_err(e, "test_cmd", "absent, and %s", swerve_error_last());
		t->test_cmd_derived = 1;
		if (!t->log_parser)
			t->log_parser = parser;
		else
			free(parser);
	}
	if (!t->log_parser && !(t->log_parser = strdup("auto")))
		return SWERVE_ENOMEM;
	t->json = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	return t->json ? 0 : SWERVE_ENOMEM;
}

static int task_item(json_t *item, size_t line, const char *key, void *vctx)
{
	struct task_ctx *ctx = vctx;
	struct swerve_task_set *set = ctx->set;
	struct swerve_task t = {0};
	struct item_err e = {""};
	json_t *obj = item;
	json_t *copy = NULL;

	if (key && json_is_object(item) && !json_object_get(item, "instance_id")) {
		copy = json_copy(item);
		if (!copy || json_object_set_new(copy, "instance_id", json_string(key)))
			return OOM();
		obj = copy;
	}
	int rc = task_from_json(&t, obj, &e);
	json_decref(copy);
	if (rc == SWERVE_ENOMEM) {
		task_dispose(&t);
		return OOM();
	}
	const char *id = t.instance_id ? t.instance_id : key;
	if (rc) {
		if (problems_add(&set->problems, &set->n_problems, "%s:%zu: instance %s: %s",
		                 ctx->w.name, line, id ? id : "(no instance_id)", e.msg))
			rc = OOM();
		else
			rc = 0;
		task_dispose(&t);
		return rc;
	}
	const struct swerve_task *dup = swerve_task_set_find(set, t.instance_id);
	if (dup) {
		rc = problems_add(&set->problems, &set->n_problems,
		                  "%s:%zu: instance %s: duplicate instance_id (first at line %zu; "
		                  "this one is ignored)",
		                  ctx->w.name, line, t.instance_id, dup->line)
		             ? OOM()
		             : 0;
		task_dispose(&t);
		return rc;
	}
	if (set->n == ctx->cap) {
		size_t cap = ctx->cap ? ctx->cap * 2 : 16;
		struct swerve_task *v = realloc(set->tasks, cap * sizeof(*v));
		if (!v) {
			task_dispose(&t);
			return OOM();
		}
		set->tasks = v;
		ctx->cap = cap;
	}
	t.line = line;
	set->tasks[set->n] = t;
	if (index_add(&set->index, set->tasks[set->n].instance_id, set->n)) {
		task_dispose(&set->tasks[set->n]);
		return OOM();
	}
	set->n++;
	return 0;
}

void swerve_task_set_free(struct swerve_task_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++)
		task_dispose(&set->tasks[i]);
	for (size_t i = 0; i < set->n_problems; i++)
		free(set->problems[i]);
	free(set->tasks);
	free(set->problems);
	index_free(set->index);
	free(set);
}

int swerve_tasks_load_buffer(struct swerve_task_set **out, const char *name, const char *data,
                             size_t len)
{
	struct swerve_task_set *set = calloc(1, sizeof(*set));
	if (!set)
		return OOM();
	struct task_ctx ctx = {{name, &set->problems, &set->n_problems}, set, 0};
	int rc = walk_items(&ctx.w, data, len, task_item, &ctx);
	if (rc) {
		swerve_task_set_free(set);
		return rc;
	}
	*out = set;
	return 0;
}

int swerve_tasks_load(struct swerve_task_set **out, const char *path)
{
	char *data;
	size_t len;
	int rc = read_whole(&data, &len, path);
	if (rc)
		return rc;
	rc = swerve_tasks_load_buffer(out, path, data, len);
	free(data);
	return rc;
}

const struct swerve_task *swerve_task_set_find(const struct swerve_task_set *set,
                                               const char *instance_id)
{
	if (set->index) {
		long i = index_find(set->index, instance_id);
		return i >= 0 ? &set->tasks[i] : NULL;
	}
	for (size_t i = 0; instance_id && i < set->n; i++)
		if (strcmp(set->tasks[i].instance_id, instance_id) == 0)
			return &set->tasks[i];
	return NULL;
}

void swerve_task_grade_input(struct swerve_grade_input *out, const struct swerve_task *task)
{
	for (int c = 0; c < SWERVE_CATEGORY_COUNT; c++) {
		out->tests[c] = (const char *const *)task->tests[c].items;
		out->n_tests[c] = task->tests[c].n;
	}
}

/* ---- deriving the test command (SWE-bench's get_test_directives) ----------------- */

/* Data files SWE-bench leaves out of the test directives. */
static const char *const non_test_exts[] = {".json", ".png", "csv",  ".txt",  ".md",   ".jpg",
                                            ".jpeg", ".pkl", ".yml", ".yaml", ".toml", NULL};

static int has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Appends s to *buf (growing), shell-quoted unless plainly safe. */
static int append(char **buf, size_t *len, size_t *cap, const char *s, int quote)
{
	int safe = 1;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("_./-:+@=,%", *p)))
			safe = 0;
	size_t need = *len + strlen(s) * 4 + 4;
	if (need > *cap) {
		size_t c = need * 2;
		char *b = realloc(*buf, c);
		if (!b)
			return -1;
		*buf = b;
		*cap = c;
	}
	char *o = *buf + *len;
	if (!quote || safe || !*s) {
		if (quote && !*s) {
			memcpy(o, "''", 2);
			o += 2;
		} else {
			size_t n = strlen(s);
			memcpy(o, s, n);
			o += n;
		}
	} else {
		*o++ = '\'';
		for (const char *p = s; *p; p++) {
			if (*p == '\'') {
				memcpy(o, "'\\''", 4);
				o += 4;
			} else {
				*o++ = *p;
			}
		}
		*o++ = '\'';
	}
	*o = '\0';
	*len = (size_t)(o - *buf);
	return 0;
}

static int list_has(const struct swerve_str_list *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i], s) == 0)
			return 1;
	return 0;
}

int swerve_task_derive_test_cmd(char **cmd, char **parser, const char *repo, const char *test_patch)
{
	struct swerve_str_list files = {0}, args = {0};
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = 0;
	const char *prefix, *pname;

	/* the b/ side of every "diff --git a/X b/Y" header */
	for (const char *p = test_patch ? test_patch : ""; (p = strstr(p, "diff --git a/"));) {
		const char *eol = strchr(p, '\n');
		if (!eol)
			eol = p + strlen(p);
		const char *b = NULL;
		for (const char *q = p + 13; q + 3 <= eol; q++)
			if (q[0] == ' ' && q[1] == 'b' && q[2] == '/')
				b = q + 3;
		if (b && b < eol) {
			char *f = strndup(b, (size_t)(eol - b));
			if (!f || str_list_push(&files, f)) {
				free(f);
				rc = OOM();
				goto done;
			}
			free(f);
		}
		p = eol;
	}
	for (size_t i = 0; i < files.n;) {
		int data = 0;
		for (const char *const *e = non_test_exts; *e; e++)
			data |= has_suffix(files.items[i], *e);
		if (data) {
			free(files.items[i]);
			files.items[i] = files.items[--files.n];
		} else {
			i++;
		}
	}
	if (files.n == 0) {
		rc = swerve_error_set(SWERVE_EINVAL,
		                      "test_patch touches no test file: set test_cmd");
		goto done;
	}

	if (repo && strcmp(repo, "django/django") == 0) {
		prefix = "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1";
		pname = "django";
		for (size_t i = 0; i < files.n; i++) {
			char *d = strdup(files.items[i]);
			if (!d) {
				rc = OOM();
				goto done;
			}
			if (has_suffix(d, ".py"))
				d[strlen(d) - 3] = '\0';
			char *s = strncmp(d, "tests/", 6) == 0 ? d + 6 : d;
			for (char *c = s; *c; c++)
				if (*c == '/')
					*c = '.';
			int bad = str_list_push(&args, s);
			free(d);
			if (bad) {
				rc = OOM();
				goto done;
			}
		}
	} else if (repo && strcmp(repo, "sympy/sympy") == 0) {
		prefix = "PYTHONWARNINGS='ignore::UserWarning,ignore::SyntaxWarning' bin/test -C "
		         "--verbose";
		pname = "sympy";
		for (size_t i = 0; i < files.n; i++)
			if (str_list_push(&args, files.items[i])) {
				rc = OOM();
				goto done;
			}
	} else {
		int py = 0, go = 0, rs = 0, js = 0;
		for (size_t i = 0; i < files.n; i++) {
			const char *f = files.items[i];
			py += has_suffix(f, ".py");
			go += has_suffix(f, ".go");
			rs += has_suffix(f, ".rs");
			js += has_suffix(f, ".js") || has_suffix(f, ".mjs") ||
			      has_suffix(f, ".cjs") || has_suffix(f, ".ts");
		}
		if (py && py >= go && py >= rs && py >= js) {
			prefix = "pytest --no-header -rA --tb=no -p no:cacheprovider";
			pname = "pytest";
			for (size_t i = 0; i < files.n; i++)
				if (has_suffix(files.items[i], ".py") &&
				    str_list_push(&args, files.items[i])) {
					rc = OOM();
					goto done;
				}
		} else if (go && go >= rs && go >= js) {
			prefix = "go test -v";
			pname = "go";
			for (size_t i = 0; i < files.n; i++) {
				const char *f = files.items[i];
				if (!has_suffix(f, ".go"))
					continue;
				const char *slash = strrchr(f, '/');
				char pkg[4096];
				if (slash)
					snprintf(pkg, sizeof(pkg), "./%.*s", (int)(slash - f), f);
				else
					snprintf(pkg, sizeof(pkg), ".");
				if (!list_has(&args, pkg) && str_list_push(&args, pkg)) {
					rc = OOM();
					goto done;
				}
			}
		} else if (rs && rs >= js) {
			prefix = "cargo test --no-fail-fast";
			pname = "cargo";
			/* integration tests (tests/<name>.rs) by name; else everything */
			int all = 0;
			for (size_t i = 0; i < files.n && !all; i++) {
				const char *f = files.items[i];
				if (!has_suffix(f, ".rs"))
					continue;
				const char *t = strstr(f, "tests/");
				if (!t || (t != f && t[-1] != '/') || strchr(t + 6, '/')) {
					all = 1;
					break;
				}
				char name[1024];
				snprintf(name, sizeof(name), "%.*s", (int)(strlen(t + 6) - 3),
				         t + 6);
				if (list_has(&args, name))
					continue;
				if (str_list_push(&args, "--test") || str_list_push(&args, name)) {
					rc = OOM();
					goto done;
				}
			}
			if (all)
				str_list_free(&args);
		} else if (js) {
			prefix = "node --test --test-reporter=tap";
			pname = "tap";
			for (size_t i = 0; i < files.n; i++) {
				const char *f = files.items[i];
				if ((has_suffix(f, ".js") || has_suffix(f, ".mjs") ||
				     has_suffix(f, ".cjs") || has_suffix(f, ".ts")) &&
				    str_list_push(&args, f)) {
					rc = OOM();
					goto done;
				}
			}
		} else {
			rc = swerve_error_set(
			        SWERVE_EINVAL,
			        "no known test runner for the files test_patch touches "
			        "(e.g. %s; known: .py, .go, .rs, .js/.mjs/.cjs/.ts): set "
			        "test_cmd",
			        files.items[0]);
			goto done;
		}
	}
	if (append(&buf, &len, &cap, prefix, 0)) {
		rc = OOM();
		goto done;
	}
	for (size_t i = 0; i < args.n; i++)
		if (append(&buf, &len, &cap, " ", 0) ||
		    append(&buf, &len, &cap, args.items[i], 1)) {
			rc = OOM();
			goto done;
		}
	char *p = strdup(pname);
	if (!p) {
		rc = OOM();
		goto done;
	}
	*cmd = buf;
	*parser = p;
	buf = NULL;
done:
	free(buf);
	str_list_free(&files);
	str_list_free(&args);
	return rc;
}

/* ---- predictions --------------------------------------------------------------- */

struct pred_ctx {
	struct walk w;
	struct swerve_prediction_set *set;
	size_t cap;
};

static void pred_dispose(struct swerve_prediction *p)
{
	free(p->instance_id);
	free(p->model_name_or_path);
	free(p->model_patch);
	memset(p, 0, sizeof(*p));
}

static int pred_item(json_t *item, size_t line, const char *key, void *vctx)
{
	struct pred_ctx *ctx = vctx;
	struct swerve_prediction_set *set = ctx->set;
	struct swerve_prediction p = {0};
	struct item_err e = {""};
	int rc = 0;

	if (!json_is_object(item)) {
		rc = field_err(&e, "(item)", "expected an object, got %s", type_name(item));
	} else {
		json_t *idv = json_object_get(item, "instance_id");
		if (!idv && key)
			p.instance_id = strdup(key);
		else
			rc = get_string(&p.instance_id, item, "instance_id", NULL, 1, &e);
		if (!rc && !p.instance_id)
			rc = SWERVE_ENOMEM;
		if (!rc && key && strcmp(key, p.instance_id) != 0)
			rc = field_err(&e, "instance_id", "'%s' differs from its key '%s'",
			               p.instance_id, key);
		if (!rc)
			rc = get_string(&p.model_name_or_path, item, "model_name_or_path", "", 0,
			                &e);
		if (!rc) {
			json_t *mp = json_object_get(item, "model_patch");
			if (!mp || json_is_null(mp)) {
				p.patch_is_none = 1;
			} else if (!json_is_string(mp)) {
				rc = field_err(&e, "model_patch",
				               "expected a string or null, got %s", type_name(mp));
			} else if (json_string_length(mp) > 0) {
				if (strlen(json_string_value(mp)) != json_string_length(mp))
					rc = field_err(&e, "model_patch",
					               "contains a NUL character");
				else if (!(p.model_patch = strdup(json_string_value(mp))))
					rc = SWERVE_ENOMEM;
			}
		}
	}
	if (rc == SWERVE_ENOMEM) {
		pred_dispose(&p);
		return OOM();
	}
	const char *id = p.instance_id ? p.instance_id : key;
	if (rc) {
		rc = problems_add(&set->problems, &set->n_problems, "%s:%zu: instance %s: %s",
		                  ctx->w.name, line, id ? id : "(no instance_id)", e.msg)
		             ? OOM()
		             : 0;
		pred_dispose(&p);
		return rc;
	}
	const struct swerve_prediction *dup = swerve_prediction_set_find(set, p.instance_id);
	if (dup) {
		rc = problems_add(
		             &set->problems, &set->n_problems,
		             "%s:%zu: instance %s: duplicate prediction (first at line %zu; this "
		             "one is ignored)",
		             ctx->w.name, line, p.instance_id, dup->line)
		             ? OOM()
		             : 0;
		pred_dispose(&p);
		return rc;
	}
	if (set->n == ctx->cap) {
		size_t cap = ctx->cap ? ctx->cap * 2 : 16;
		struct swerve_prediction *v = realloc(set->preds, cap * sizeof(*v));
		if (!v) {
			pred_dispose(&p);
			return OOM();
		}
		set->preds = v;
		ctx->cap = cap;
	}
	p.line = line;
	set->preds[set->n] = p;
	if (index_add(&set->index, set->preds[set->n].instance_id, set->n)) {
		pred_dispose(&set->preds[set->n]);
		return OOM();
	}
	set->n++;
	return 0;
}

void swerve_prediction_set_free(struct swerve_prediction_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++)
		pred_dispose(&set->preds[i]);
	for (size_t i = 0; i < set->n_problems; i++)
		free(set->problems[i]);
	free(set->preds);
	free(set->problems);
	index_free(set->index);
	free(set);
}

int swerve_predictions_load_buffer(struct swerve_prediction_set **out, const char *name,
                                   const char *data, size_t len)
{
	struct swerve_prediction_set *set = calloc(1, sizeof(*set));
	if (!set)
		return OOM();
	struct pred_ctx ctx = {{name, &set->problems, &set->n_problems}, set, 0};
	int rc = walk_items(&ctx.w, data, len, pred_item, &ctx);
	if (rc) {
		swerve_prediction_set_free(set);
		return rc;
	}
	*out = set;
	return 0;
}

int swerve_predictions_load(struct swerve_prediction_set **out, const char *path)
{
	char *data;
	size_t len;
	int rc = read_whole(&data, &len, path);
	if (rc)
		return rc;
	rc = swerve_predictions_load_buffer(out, path, data, len);
	free(data);
	return rc;
}

const struct swerve_prediction *swerve_prediction_set_find(const struct swerve_prediction_set *set,
                                                           const char *instance_id)
{
	if (set->index) {
		long i = index_find(set->index, instance_id);
		return i >= 0 ? &set->preds[i] : NULL;
	}
	for (size_t i = 0; instance_id && i < set->n; i++)
		if (strcmp(set->preds[i].instance_id, instance_id) == 0)
			return &set->preds[i];
	return NULL;
}

size_t swerve_predictions_check(struct swerve_prediction_set *preds,
                                const struct swerve_task_set *tasks)
{
	size_t dropped = 0, k = 0;
	for (size_t i = 0; i < preds->n; i++) {
		struct swerve_prediction *p = &preds->preds[i];
		if (swerve_task_set_find(tasks, p->instance_id)) {
			preds->preds[k++] = *p;
			continue;
		}
		/* an allocation failure here loses only the message */
		(void)problems_add(&preds->problems, &preds->n_problems,
		                   "predictions:%zu: instance %s: unknown instance_id (not in the "
		                   "task file)",
		                   p->line, p->instance_id);
		pred_dispose(p);
		dropped++;
	}
	preds->n = k;
	if (dropped) { /* positions moved: rebuild the index (or fall back to a scan) */
		index_free(preds->index);
		preds->index = NULL;
		for (size_t i = 0; i < preds->n; i++)
			if (index_add(&preds->index, preds->preds[i].instance_id, i)) {
				index_free(preds->index);
				preds->index = NULL;
				break;
			}
	}
	return dropped;
}

/* ---- reward spec files ----------------------------------------------------------- */

int swerve_reward_spec_load(struct swerve_reward_spec *spec, const char *path)
{
	json_error_t err;
	json_t *root = json_load_file(path, 0, &err);
	if (!root) {
		FILE *f = fopen(path, "rb");
		if (!f)
			return swerve_error_set(errno == ENOENT ? SWERVE_ENOTFOUND : SWERVE_EIO,
			                        "%s: %s", path, strerror(errno));
		fclose(f);
		return swerve_error_set(SWERVE_EINVAL, "%s:%d:%d: %s", path, err.line, err.column,
		                        err.text);
	}
	struct swerve_reward_spec s = *spec;
	int rc = 0;
	if (!json_is_object(root)) {
		rc = swerve_error_set(SWERVE_EINVAL,
		                      "%s: expected a JSON object of outcome: reward", path);
		goto done;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v)
	{
		char buf[64];
		if (strcmp(key, "partial_credit") == 0) {
			if (!json_is_boolean(v)) {
				rc = swerve_error_set(SWERVE_EINVAL,
				                      "%s: partial_credit: expected "
				                      "true or false, got %s",
				                      path, type_name(v));
				goto done;
			}
			snprintf(buf, sizeof(buf), "%s", json_is_true(v) ? "true" : "false");
		} else if (json_is_number(v)) {
			snprintf(buf, sizeof(buf), "%.17g", json_number_value(v));
		} else {
			rc = swerve_error_set(SWERVE_EINVAL, "%s: %s: expected a number, got %s",
			                      path, key, type_name(v));
			goto done;
		}
		if ((rc = swerve_reward_spec_set(&s, key, buf)) != 0) {
			swerve_error_wrap("%s", path);
			goto done;
		}
	}
	*spec = s;
done:
	json_decref(root);
	return rc;
}
