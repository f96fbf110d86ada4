/* consumer.c - the trainer's side: fetch complete groups with rewards and
 * token data, mark them consumed all-or-nothing.
 *
 * A group is handed out when n_done = size (every sample has a result) and
 * consumed_ms IS NULL. A group with an infra_error sample can never reach
 * n_done = size, so it is never handed out with a made-up reward; stats
 * counts it as blocked until swerve_db_requeue_infra() retries the sample.
 * Does not: compute advantages (policy/ does), or delete anything. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* A bump allocator owning everything a batch points to. Its chunks are kept
 * from one fetch to the next (reset, not freed): fresh pages cost a page
 * fault each, which at 10 KiB of tokens per rollout was a third of the
 * read time. */
struct chunk {
	struct chunk *next;
	size_t used, cap;
	_Alignas(16) unsigned char data[];
};

struct arena {
	struct chunk *head, *cur;
};

static void *arena_alloc(struct swerve_db_batch *b, size_t n)
{
	struct arena *a = b->arena_;
	n = (n + 15) & ~(size_t)15;
	if (!a) {
		if (!(a = calloc(1, sizeof(*a))))
			return NULL;
		b->arena_ = a;
	}
	while (a->cur && a->cur->cap - a->cur->used < n && a->cur->next) {
		a->cur = a->cur->next;
		a->cur->used = 0;
	}
	if (!a->cur || a->cur->cap - a->cur->used < n) {
		size_t cap = n > ((size_t)4 << 20) ? n : ((size_t)4 << 20);
		struct chunk *c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = NULL;
		c->used = 0;
		c->cap = cap;
		if (a->cur)
			a->cur->next = c;
		else
			a->head = c;
		a->cur = c;
	}
	void *p = a->cur->data + a->cur->used;
	a->cur->used += n;
	return p;
}

/* Empties b, keeping its memory for reuse. */
static void batch_reset(struct swerve_db_batch *b)
{
	struct arena *a = b->arena_;
	if (a && a->head) {
		a->cur = a->head;
		a->cur->used = 0;
	}
	b->n = 0;
}

void swerve_db_batch_free(struct swerve_db_batch *b)
{
	if (!b)
		return;
	struct arena *a = b->arena_;
	if (a)
		for (struct chunk *c = a->head, *next; c; c = next) {
			next = c->next;
			free(c);
		}
	free(a);
	free(b->groups);
	memset(b, 0, sizeof(*b));
}

/* Copies column i (a blob of elem-sized items) into the arena. */
static int copy_blob(struct swerve_db_batch *b, sqlite3_stmt *st, int i, size_t elem,
                     const void **out, size_t *out_n)
{
	const void *p = sqlite3_column_blob(st, i);
	size_t len = (size_t)sqlite3_column_bytes(st, i);
	*out = NULL;
	*out_n = 0;
	if (!p || len == 0)
		return 0;
	void *q = arena_alloc(b, len);
	if (!q)
		return -1;
	memcpy(q, p, len);
	*out = q;
	*out_n = len / elem;
	return 0;
}

static int fetch(struct swerve_db_batch *b, struct swerve_db *db, int64_t run, size_t max)
{
	sqlite3_stmt *st;
	int rc;

	if (!(st = db_stmt(db, run > 0 ? ST_GROUPS_READY : ST_GROUPS_READY_ANY)))
		return swerve_error_code();
	sqlite3_bind_int64(st, 1, run);
	sqlite3_bind_int64(st, 2, max > INT64_MAX ? INT64_MAX : (sqlite3_int64)max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (b->n == b->cap_) {
			size_t cap = b->cap_ ? b->cap_ * 2 : 64;
			void *g = realloc(b->groups, cap * sizeof(*b->groups));
			if (!g)
				goto nomem;
			b->groups = g;
			b->cap_ = cap;
		}
		struct swerve_db_group *g = &b->groups[b->n++];
		memset(g, 0, sizeof(*g));
		g->id = sqlite3_column_int64(st, 0);
		g->run = sqlite3_column_int64(st, 1);
		g->key = sqlite3_column_int64(st, 2);
		const char *iid = (const char *)sqlite3_column_text(st, 3);
		size_t len = strlen(iid ? iid : "") + 1;
		char *s = arena_alloc(b, len);
		if (!s)
			goto nomem;
		memcpy(s, iid ? iid : "", len);
		g->instance_id = s;
		g->size = sqlite3_column_int(st, 4);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(db, rc, "fetch groups");

	for (size_t i = 0; i < b->n; i++) {
		struct swerve_db_group *g = &b->groups[i];
		int n = 0;
		if (!(g->samples = arena_alloc(b, (size_t)g->size * sizeof(*g->samples))))
			goto nomem;
		if (!(st = db_stmt(db, ST_GROUP_SAMPLES)))
			return swerve_error_code();
		sqlite3_bind_int64(st, 1, g->id);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < g->size) {
			struct swerve_db_sample *x = &g->samples[n++];
			const void *p;
			memset(x, 0, sizeof(*x));
			x->rollout = sqlite3_column_int64(st, 0);
			x->sample = sqlite3_column_int(st, 1);
			x->policy_version = sqlite3_column_int64(st, 2);
			x->has_reward = sqlite3_column_type(st, 3) != SQLITE_NULL;
			x->reward = sqlite3_column_double(st, 3);
			const char *res = (const char *)sqlite3_column_text(st, 4);
			x->resolved = !res                          ? "NO"
			              : strcmp(res, "FULL") == 0    ? "FULL"
			              : strcmp(res, "PARTIAL") == 0 ? "PARTIAL"
			                                            : "NO";
			if (copy_blob(b, st, 5, 4, &p, &x->n_prompt_tokens))
				goto nomem_reset;
			x->prompt_tokens = p;
			if (copy_blob(b, st, 6, 4, &p, &x->n_response_tokens))
				goto nomem_reset;
			x->response_tokens = p;
			if (copy_blob(b, st, 7, 4, &p, &x->n_logprobs))
				goto nomem_reset;
			x->logprobs = p;
		}
		sqlite3_reset(st);
		if (rc != SQLITE_DONE && rc != SQLITE_ROW)
			return db_fail(db, rc, "fetch samples");
		/* n_done = size was read in the same snapshot: anything else is
		 * a broken invariant, not a short group to hand out. */
		if (n != g->size)
			return swerve_error_set(SWERVE_ECORRUPT,
			                        "database %s: group %lld counts %d samples done "
			                        "but has %d results",
			                        db->path, (long long)g->id, g->size, n);
	}
	return 0;
nomem_reset:
	sqlite3_reset(st);
nomem:
	return swerve_error_set(SWERVE_ENOMEM, "fetch groups: out of memory");
}

int swerve_db_groups_fetch(struct swerve_db_batch *out, struct swerve_db *db, int64_t run,
                           size_t max)
{
	int err;
	batch_reset(out);
	if ((err = db_read_begin(db, "fetch groups")))
		return err;
	err = fetch(out, db, run, max);
	db_read_end(db);
	if (err)
		batch_reset(out);
	return err;
}

static int consume(struct swerve_db *db, const int64_t *groups, size_t n)
{
	int64_t now = db_now_ms();
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *st = db_stmt(db, ST_GROUP_CONSUME);
		int err, rc;
		if (!st)
			return swerve_error_code();
		sqlite3_bind_int64(st, 1, groups[i]);
		sqlite3_bind_int64(st, 2, now);
		if ((err = db_step_done(db, st, "consume")))
			return err;
		if (sqlite3_changes(db->sql) == 1)
			continue;
		/* Say why, naming the group. */
		if (!(st = db_stmt(db, ST_GROUP_STATE)))
			return swerve_error_code();
		sqlite3_bind_int64(st, 1, groups[i]);
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE) {
			sqlite3_reset(st);
			return swerve_error_set(SWERVE_ENOTFOUND,
			                        "consume group %lld: no such group",
			                        (long long)groups[i]);
		}
		if (rc != SQLITE_ROW) {
			sqlite3_reset(st);
			return db_fail(db, rc, "consume");
		}
		int size = sqlite3_column_int(st, 0), done = sqlite3_column_int(st, 1);
		int infra = sqlite3_column_int(st, 2), consumed = sqlite3_column_int(st, 3);
		sqlite3_reset(st);
		if (consumed)
			return swerve_error_set(SWERVE_EEXIST,
			                        "consume group %lld: already consumed",
			                        (long long)groups[i]);
		return swerve_error_set(SWERVE_EINVAL,
		                        "consume group %lld: not complete (%d of %d samples done, "
		                        "%d infra_error)",
		                        (long long)groups[i], done, size, infra);
	}
	return 0;
}

int swerve_db_groups_consume(struct swerve_db *db, const int64_t *groups, size_t n)
{
	int err;
	if (n && !groups)
		return swerve_error_set(SWERVE_EINVAL, "consume: %zu groups without ids", n);
	if ((err = db_tx_begin(db, "consume")))
		return err;
	return db_tx_end(db, consume(db, groups, n), "consume");
}

int swerve_db_groups_take(struct swerve_db_batch *out, struct swerve_db *db, int64_t run,
                          size_t max)
{
	int64_t *ids = NULL;
	int err;

	batch_reset(out);
	if ((err = db_tx_begin(db, "take groups")))
		return err;
	err = fetch(out, db, run, max);
	if (!err && out->n) {
		if (!(ids = malloc(out->n * sizeof(*ids)))) {
			err = swerve_error_set(SWERVE_ENOMEM, "take groups: out of memory");
		} else {
			for (size_t i = 0; i < out->n; i++)
				ids[i] = out->groups[i].id;
			err = consume(db, ids, out->n);
		}
	}
	free(ids);
	err = db_tx_end(db, err, "take groups");
	if (err)
		batch_reset(out);
	return err;
}
