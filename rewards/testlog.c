/* testlog.c - a parsed test log: test id -> status, in first-seen order.
 * Does: store ids (copied into a chunked arena), look them up by an
 * open-addressing hash table, replace a status when an id is seen again.
 * Does not: parse anything (see parse_*.c) or grade (grade.c). */
#include "rewards.h"
#include "parsers.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define ARENA_CHUNK (64 * 1024)

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, size;
	char data[];
};

/* The tag (high hash bits) sits beside the index so that a probe touches
 * one cache line unless the tag matches: ids are compared only then. */
struct slot {
	uint32_t idx;
	uint32_t tag;
};

/* Ids a parser reported whose slot is being prefetched: inserting an id
 * costs one cache miss on the slot table (megabytes for a big log), so
 * testlog_put() issues the prefetch and inserts PENDING ids later, in order.
 * Names are copied here because parsers may reuse their buffers. */
#define PENDING      16
#define PENDING_NAME 248

struct pending {
	uint64_t h;
	size_t len;
	enum swerve_test_status status;
	int alias;
	char name[PENDING_NAME];
};

struct swerve_testlog {
	struct swerve_test_result *results;
	size_t n, cap;
	struct slot *slots; /* idx 0 = empty, else index + 1 into results */
	uint64_t *hashes;   /* hash of results[i].name, for rehashing */
	size_t nslots;      /* power of two */
	struct arena_chunk *arena;
	const char *parser;
	int incomplete;
	struct pending q[PENDING];
	unsigned qhead, qn;
};

static const char *const status_names[] = {"PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL"};

const char *swerve_test_status_name(enum swerve_test_status status)
{
	if ((unsigned)status >= sizeof(status_names) / sizeof(status_names[0]))
		return "?";
	return status_names[status];
}

int swerve_test_status_parse(enum swerve_test_status *out, const char *name)
{
	for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++)
		if (name && strcmp(name, status_names[i]) == 0) {
			*out = (enum swerve_test_status)i;
			return 0;
		}
	return swerve_error_set(SWERVE_EINVAL,
	                        "test status '%s': not one of PASSED, FAILED, "
	                        "SKIPPED, ERROR, XFAIL",
	                        name ? name : "(null)");
}

/* The slot table of a big log spans tens of megabytes probed at random:
 * with 4 KiB pages nearly every probe also misses the TLB, so tables from
 * 2 MiB up are mapped directly and offered to transparent huge pages. */
#define HUGE_TABLE (2u << 20)

static struct slot *slots_alloc(size_t nslots)
{
	size_t bytes = nslots * sizeof(struct slot);
	if (bytes < HUGE_TABLE)
		return calloc(nslots, sizeof(struct slot));
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, bytes, MADV_HUGEPAGE); /* a hint: fine if refused */
	return p;
}

static void slots_free(struct slot *slots, size_t nslots)
{
	if (!slots)
		return;
	if (nslots * sizeof(struct slot) < HUGE_TABLE)
		free(slots);
	else
		munmap(slots, nslots * sizeof(struct slot));
}

/* A multiply-xorshift hash over 8-byte words: a parse inserts every test id
 * at least once, so this is on the hot path (FNV's byte loop was 2x slower). */
static uint64_t hash_bytes(const char *s, size_t len)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)len;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
		s += 8;
		len -= 8;
	}
	uint64_t w = 0;
	memcpy(&w, s, len);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 29;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 32;
	return h;
}

int swerve_testlog_new(struct swerve_testlog **out)
{
	struct swerve_testlog *log = calloc(1, sizeof(*log));
	if (!log)
		return swerve_error_set(SWERVE_ENOMEM, "testlog: out of memory");
	log->nslots = 64;
	log->slots = slots_alloc(log->nslots);
	if (!log->slots) {
		free(log);
		return swerve_error_set(SWERVE_ENOMEM, "testlog: out of memory");
	}
	*out = log;
	return 0;
}

void swerve_testlog_free(struct swerve_testlog *log)
{
	if (!log)
		return;
	struct arena_chunk *c = log->arena;
	while (c) {
		struct arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	free(log->results);
	free(log->hashes);
	slots_free(log->slots, log->nslots);
	free(log);
}

static char *arena_strdup(struct swerve_testlog *log, const char *s, size_t len)
{
	struct arena_chunk *c = log->arena;
	if (!c || c->size - c->used < len + 1) {
		size_t size = len + 1 > ARENA_CHUNK ? len + 1 : ARENA_CHUNK;
		c = malloc(sizeof(*c) + size);
		if (!c)
			return NULL;
		c->used = 0;
		c->size = size;
		c->next = log->arena;
		log->arena = c;
	}
	char *p = c->data + c->used;
	memcpy(p, s, len);
	p[len] = '\0';
	c->used += len + 1;
	return p;
}

/* Slot of name, or of the empty slot where it would go. */
static size_t find_slot(const struct swerve_testlog *log, const char *name, size_t len, uint64_t h)
{
	size_t mask = log->nslots - 1;
	uint32_t tag = (uint32_t)(h >> 32);
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		const struct slot *s = &log->slots[i];
		if (s->idx == 0)
			return i;
		if (s->tag != tag)
			continue;
		const struct swerve_test_result *r = &log->results[s->idx - 1];
		if (strncmp(r->name, name, len) == 0 && r->name[len] == '\0')
			return i;
	}
}

static int grow_table(struct swerve_testlog *log)
{
	size_t nslots = log->nslots * 2;
	struct slot *slots = slots_alloc(nslots);
	if (!slots)
		return -1;
	for (size_t k = 0; k < log->n; k++) {
		size_t i = log->hashes[k] & (nslots - 1);
		while (slots[i].idx)
			i = (i + 1) & (nslots - 1);
		slots[i].idx = (uint32_t)(k + 1);
		slots[i].tag = (uint32_t)(log->hashes[k] >> 32);
	}
	slots_free(log->slots, log->nslots);
	log->slots = slots;
	log->nslots = nslots;
	return 0;
}

static int insert_hashed(struct swerve_testlog *log, const char *name, size_t len, uint64_t h,
                         enum swerve_test_status status, int alias)
{
	size_t slot = find_slot(log, name, len, h);
	if (log->slots[slot].idx) {
		struct swerve_test_result *r = &log->results[log->slots[slot].idx - 1];
		r->status = status;
		if (!alias)
			r->alias = 0; /* a test reported under its own name */
		return 0;
	}
	if (log->n >= UINT32_MAX - 1)
		return swerve_error_set(SWERVE_ELIMIT, "testlog: more than 4 billion tests");
	if (log->n == log->cap) {
		size_t cap = log->cap ? log->cap * 2 : 64;
		struct swerve_test_result *r = realloc(log->results, cap * sizeof(*r));
		if (!r)
			return swerve_error_set(SWERVE_ENOMEM, "testlog: out of memory");
		log->results = r;
		uint64_t *hs = realloc(log->hashes, cap * sizeof(*hs));
		if (!hs)
			return swerve_error_set(SWERVE_ENOMEM, "testlog: out of memory");
		log->hashes = hs;
		log->cap = cap;
	}
	char *copy = arena_strdup(log, name, len);
	if (!copy)
		return swerve_error_set(SWERVE_ENOMEM, "testlog: out of memory");
	log->results[log->n].name = copy;
	log->results[log->n].status = status;
	log->results[log->n].alias = alias;
	log->hashes[log->n] = h;
	log->slots[slot].idx = (uint32_t)(log->n + 1);
	log->slots[slot].tag = (uint32_t)(h >> 32);
	log->n++;
	if (log->n * 2 > log->nslots && grow_table(log) != 0)
		return swerve_error_set(SWERVE_ENOMEM, "testlog: out of memory");
	return 0;
}

int testlog_flush(struct swerve_testlog *log)
{
	int rc = 0;
	while (log->qn) {
		struct pending *p = &log->q[log->qhead];
		if (!rc)
			rc = insert_hashed(log, p->name, p->len, p->h, p->status, p->alias);
		log->qhead = (log->qhead + 1) % PENDING;
		log->qn--;
	}
	return rc;
}

int swerve_testlog_set(struct swerve_testlog *log, const char *name, size_t len,
                       enum swerve_test_status status)
{
	if (len && memchr(name, '\0', len))
		len = strlen(name); /* an id ends at a NUL (ids are C strings) */
	if (len == 0)
		return 0;            /* an empty id names nothing */
	int rc = testlog_flush(log); /* keep the order: a later status wins */
	return rc ? rc : insert_hashed(log, name, len, hash_bytes(name, len), status, 0);
}

static int put(struct swerve_testlog *log, const char *name, size_t len,
               enum swerve_test_status status, int alias)
{
	if (len && memchr(name, '\0', len))
		len = strlen(name);
	if (len == 0)
		return 0;
	if (len > PENDING_NAME) {
		int rc = testlog_flush(log);
		return rc ? rc
		          : insert_hashed(log, name, len, hash_bytes(name, len), status, alias);
	}
	uint64_t h = hash_bytes(name, len);
	__builtin_prefetch(&log->slots[h & (log->nslots - 1)]);
	if (log->qn == PENDING) {
		struct pending *old = &log->q[log->qhead];
		int rc = insert_hashed(log, old->name, old->len, old->h, old->status, old->alias);
		log->qhead = (log->qhead + 1) % PENDING;
		log->qn--;
		if (rc)
			return rc;
	}
	struct pending *p = &log->q[(log->qhead + log->qn) % PENDING];
	p->h = h;
	p->len = len;
	p->status = status;
	p->alias = alias;
	memcpy(p->name, name, len);
	log->qn++;
	return 0;
}

int testlog_put(struct swerve_testlog *log, const char *name, size_t len,
                enum swerve_test_status status)
{
	return put(log, name, len, status, 0);
}

int testlog_put_alias(struct swerve_testlog *log, const char *name, size_t len,
                      enum swerve_test_status status)
{
	return put(log, name, len, status, 1);
}

size_t swerve_testlog_count(const struct swerve_testlog *log)
{
	return log->n;
}

const struct swerve_test_result *swerve_testlog_at(const struct swerve_testlog *log, size_t i)
{
	return i < log->n ? &log->results[i] : NULL;
}

int swerve_testlog_get(enum swerve_test_status *out, const struct swerve_testlog *log,
                       const char *name)
{
	size_t len = strlen(name);
	size_t slot = find_slot(log, name, len, hash_bytes(name, len));
	if (!log->slots[slot].idx)
		return SWERVE_ENOTFOUND;
	*out = log->results[log->slots[slot].idx - 1].status;
	return 0;
}

size_t swerve_testlog_count_status(const struct swerve_testlog *log, enum swerve_test_status status)
{
	size_t k = 0;
	for (size_t i = 0; i < log->n; i++)
		k += log->results[i].status == status && !log->results[i].alias;
	return k;
}

size_t swerve_testlog_count_tests(const struct swerve_testlog *log)
{
	size_t k = 0;
	for (size_t i = 0; i < log->n; i++)
		k += !log->results[i].alias;
	return k;
}

const char *swerve_testlog_parser(const struct swerve_testlog *log)
{
	return log->parser;
}

int swerve_testlog_incomplete(const struct swerve_testlog *log)
{
	return log->incomplete;
}

int testlog_reserve(struct swerve_testlog *log, size_t expected)
{
	/* a hint, not a promise: the table still grows past it; capped so a huge
	 * log of mostly output does not reserve hundreds of megabytes */
	if (expected > (1u << 22))
		expected = 1u << 22;
	size_t nslots = log->nslots;
	while (nslots < expected * 2)
		nslots *= 2;
	if (nslots != log->nslots && log->n == 0) {
		struct slot *slots = slots_alloc(nslots);
		if (!slots)
			return 0; /* fine: grow as we go */
		slots_free(log->slots, log->nslots);
		log->slots = slots;
		log->nslots = nslots;
	}
	if (expected > log->cap && log->n == 0) {
		struct swerve_test_result *r = realloc(log->results, expected * sizeof(*r));
		if (r)
			log->results = r;
		uint64_t *hs = realloc(log->hashes, expected * sizeof(*hs));
		if (hs)
			log->hashes = hs;
		if (r && hs)
			log->cap = expected;
	}
	return 0;
}

void testlog_set_parser(struct swerve_testlog *log, const char *parser)
{
	log->parser = parser;
}

void testlog_mark_incomplete(struct swerve_testlog *log)
{
	log->incomplete = 1;
}
