/* parse_tap.c - TAP 13/14 (node --test's default reporter when piped, tape,
 * prove, ...) and node --test's spec reporter.
 * Does: record "ok N - desc" / "not ok N - desc" with SKIP and TODO
 * directives; indented subtests are named "parent > child", the parent
 * being the result line that closes the indented block (TAP 14), so the
 * "# Subtest:" comments are not needed; YAML diagnostics are skipped.
 * Statuses: ok -> PASSED, not ok -> FAILED, # SKIP -> SKIPPED,
 * not ok # TODO -> XFAIL, ok # TODO -> PASSED.
 * Does not: check plan counts beyond "was the top-level plan met". */
#include "parsers.h"

#include <stdlib.h>

struct pend {
	size_t indent;
	char *name;
	size_t len;
	enum swerve_test_status status;
};

struct tap_state {
	struct pend *v;
	size_t n, cap;
	char **hdr; /* "# Subtest: name" per indent, for children left open at EOF */
	size_t *hdr_indent, nhdr, hdrcap;
};

static int pend_push(struct tap_state *t, size_t indent, const char *name, size_t len,
                     enum swerve_test_status st)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct pend *v = realloc(t->v, cap * sizeof(*v));
		if (!v)
			return swerve_error_set(SWERVE_ENOMEM, "tap: out of memory");
		t->v = v;
		t->cap = cap;
	}
	char *copy = malloc(len + 1);
	if (!copy)
		return swerve_error_set(SWERVE_ENOMEM, "tap: out of memory");
	memcpy(copy, name, len);
	copy[len] = '\0';
	t->v[t->n++] = (struct pend){indent, copy, len, st};
	return 0;
}

/* Prefixes "parent > " to every pending entry deeper than indent. */
static int pend_adopt(struct tap_state *t, size_t indent, const char *parent, size_t plen)
{
	for (size_t i = t->n; i-- > 0 && t->v[i].indent > indent;) {
		size_t len = plen + 3 + t->v[i].len;
		char *name = malloc(len + 1);
		if (!name)
			return swerve_error_set(SWERVE_ENOMEM, "tap: out of memory");
		memcpy(name, parent, plen);
		memcpy(name + plen, " > ", 3);
		memcpy(name + plen + 3, t->v[i].name, t->v[i].len + 1);
		free(t->v[i].name);
		t->v[i].name = name;
		t->v[i].len = len;
	}
	return 0;
}

static int pend_commit(struct tap_state *t, struct swerve_testlog *log)
{
	int rc = 0;
	for (size_t i = 0; i < t->n; i++) {
		if (!rc)
			rc = testlog_put(log, t->v[i].name, t->v[i].len, t->v[i].status);
		free(t->v[i].name);
	}
	t->n = 0;
	return rc;
}

static int hdr_push(struct tap_state *t, size_t indent, const char *name, size_t len)
{
	while (t->nhdr && t->hdr_indent[t->nhdr - 1] >= indent)
		free(t->hdr[--t->nhdr]);
	if (t->nhdr == t->hdrcap) {
		size_t cap = t->hdrcap ? t->hdrcap * 2 : 8;
		char **h = realloc(t->hdr, cap * sizeof(*h));
		if (!h)
			return swerve_error_set(SWERVE_ENOMEM, "tap: out of memory");
		t->hdr = h;
		size_t *hi = realloc(t->hdr_indent, cap * sizeof(*hi));
		if (!hi)
			return swerve_error_set(SWERVE_ENOMEM, "tap: out of memory");
		t->hdr_indent = hi;
		t->hdrcap = cap;
	}
	char *copy = malloc(len + 1);
	if (!copy)
		return swerve_error_set(SWERVE_ENOMEM, "tap: out of memory");
	memcpy(copy, name, len);
	copy[len] = '\0';
	t->hdr[t->nhdr] = copy;
	t->hdr_indent[t->nhdr++] = indent;
	return 0;
}

static void tap_state_dispose(struct tap_state *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].name);
	for (size_t i = 0; i < t->nhdr; i++)
		free(t->hdr[i]);
	free(t->v);
	free(t->hdr);
	free(t->hdr_indent);
}

static size_t indent_of(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && s[i] == ' ')
		i++;
	return i;
}

/* Parses "ok 3 - desc # SKIP why" (s trimmed). Returns 1 for a result line. */
static int tap_result(const char *s, size_t n, const char **desc, size_t *dl,
                      enum swerve_test_status *st)
{
	int ok;
	size_t i;
	if (starts_with(s, n, "ok") && (n == 2 || s[2] == ' ')) {
		ok = 1;
		i = 2;
	} else if (starts_with(s, n, "not ok") && (n == 6 || s[6] == ' ')) {
		ok = 0;
		i = 6;
	} else {
		return 0;
	}
	while (i < n && s[i] == ' ')
		i++;
	size_t num = i;
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	size_t numlen = i - num;
	while (i < n && s[i] == ' ')
		i++;
	if (i + 1 < n && s[i] == '-' && s[i + 1] == ' ')
		i += 2;
	else if (i + 1 == n && s[i] == '-')
		i++;
	/* description up to an unescaped '#' (the directive) */
	size_t d = i, hash = n;
	for (size_t k = i; k < n; k++)
		if (s[k] == '#' && (k == 0 || s[k - 1] != '\\')) {
			hash = k;
			break;
		}
	const char *dp = s + d;
	size_t dn = hash - d;
	dp = trim(dp, &dn);
	*st = ok ? SWERVE_TEST_PASSED : SWERVE_TEST_FAILED;
	if (hash < n) {
		const char *dir = s + hash + 1;
		size_t dirn = n - hash - 1;
		dir = trim(dir, &dirn);
		if (dirn >= 4 && strncasecmp(dir, "skip", 4) == 0)
			*st = SWERVE_TEST_SKIPPED;
		else if (dirn >= 4 && strncasecmp(dir, "todo", 4) == 0)
			*st = ok ? SWERVE_TEST_PASSED : SWERVE_TEST_XFAIL;
	}
	if (dn == 0) { /* no description: the test number names it */
		dp = s + num;
		dn = numlen;
	}
	*desc = dp;
	*dl = dn;
	return 1;
}

int parse_tap(struct swerve_testlog *log, const char *data, size_t len)
{
	struct line_iter it = {data, data + len};
	struct tap_state t = {0};
	const char *s;
	size_t n;
	int rc = 0, bailed = 0, in_yaml = 0;
	size_t yaml_indent = 0, last_indent = 0;
	long plan = -1, top = 0;

	while (line_next(&it, &s, &n)) {
		size_t ind = indent_of(s, n);
		const char *b = s + ind;
		size_t bn = n - ind;
		b = trim(b, &bn);
		if (in_yaml) {
			if (eq(b, bn, "...") && ind <= yaml_indent)
				in_yaml = 0;
			else if (ind < yaml_indent && bn) /* malformed: block never closed */
				in_yaml = 0;
			else
				continue;
			if (!in_yaml && eq(b, bn, "..."))
				continue;
		}
		if (eq(b, bn, "---") && ind > last_indent) {
			in_yaml = 1;
			yaml_indent = ind;
			continue;
		}
		const char *desc;
		size_t dl;
		enum swerve_test_status st;
		if (tap_result(b, bn, &desc, &dl, &st)) {
			last_indent = ind;
			if ((rc = pend_adopt(&t, ind, desc, dl)) != 0)
				goto done;
			if ((rc = pend_push(&t, ind, desc, dl, st)) != 0)
				goto done;
			if (ind == 0) {
				top++;
				if ((rc = pend_commit(&t, log)) != 0)
					goto done;
			}
			continue;
		}
		if (starts_with(b, bn, "# Subtest:")) {
			const char *name = b + 10;
			size_t nl = bn - 10;
			name = trim(name, &nl);
			if ((rc = hdr_push(&t, ind, name, nl)) != 0)
				goto done;
			continue;
		}
		if (starts_with(b, bn, "Bail out!")) {
			bailed = 1;
			continue;
		}
		if (ind == 0 && starts_with(b, bn, "1..")) {
			/* data is not NUL-terminated: no strtol */
			plan = 0;
			for (size_t k = 3; k < bn && b[k] >= '0' && b[k] <= '9' && plan < 100000000;
			     k++)
				plan = plan * 10 + (b[k] - '0');
			continue;
		}
	}
	/* Children whose parent never reported (bail out, truncation): name them
	 * by the "# Subtest:" comments above them. */
	for (size_t i = 0; i < t.n; i++) {
		struct pend *p = &t.v[i];
		for (size_t h = t.nhdr; h-- > 0;) {
			if (t.hdr_indent[h] >= p->indent)
				continue;
			size_t hl = strlen(t.hdr[h]);
			if (hl == p->len && memcmp(t.hdr[h], p->name, hl) == 0)
				continue;
			char *name = malloc(hl + 3 + p->len + 1);
			if (!name) {
				rc = swerve_error_set(SWERVE_ENOMEM, "tap: out of memory");
				goto done;
			}
			memcpy(name, t.hdr[h], hl);
			memcpy(name + hl, " > ", 3);
			memcpy(name + hl + 3, p->name, p->len + 1);
			free(p->name);
			p->name = name;
			p->len += hl + 3;
			break;
		}
	}
	if (t.n)
		bailed = 1;
	if ((rc = pend_commit(&t, log)) != 0)
		goto done;
	if (bailed || plan < 0 || top < plan)
		testlog_mark_incomplete(log);
done:
	tap_state_dispose(&t);
	return rc;
}

/* ---- node --test, spec reporter --------------------------------------------- */

#define SYM_PASS  "\xe2\x9c\x94 " /* ✔ */
#define SYM_FAIL  "\xe2\x9c\x96 " /* ✖ */
#define SYM_SKIP  "\xef\xb9\xa3 " /* ﹣ */
#define SYM_TODO  "\xe2\x86\x92 " /* → */
#define SYM_SUITE "\xe2\x96\xb6 " /* ▶ */
#define SYM_INFO  "\xe2\x84\xb9 " /* ℹ */

/* Drops " (1.23ms)" and a following " # reason" from a spec result line. */
static size_t spec_name_len(const char *s, size_t n)
{
	for (size_t i = n; i-- > 1;) {
		if (s[i] != '(' || s[i - 1] != ' ')
			continue;
		const char *close = memchr(s + i, ')', n - i);
		if (!close)
			continue;
		size_t k = (size_t)(close - s - i - 1);
		const char *in = s + i + 1;
		if (k >= 2 && (in[0] >= '0' && in[0] <= '9') && in[k - 1] == 's') {
			const char *after = close + 1;
			size_t an = (size_t)(s + n - after);
			if (an == 0 || starts_with(after, an, " #"))
				return i - 1;
		}
	}
	return n;
}

int parse_node(struct swerve_testlog *log, const char *data, size_t len)
{
	struct line_iter it = {data, data + len};
	const char *s;
	size_t n;
	int rc = 0, summary = 0;
	char *path = NULL; /* "suite > inner > " for the current depth */
	size_t *lvl_len = NULL, depth = 0, cap = 0, plen = 0, pcap = 0;

	while (line_next(&it, &s, &n)) {
		size_t ind = indent_of(s, n);
		const char *b = s + ind;
		size_t bn = n - ind;
		if (starts_with(b, bn, SYM_FAIL "failing tests:"))
			break; /* a repeat of failures, without nesting */
		if (starts_with(b, bn, SYM_INFO "tests ")) {
			summary = 1;
			continue;
		}
		enum swerve_test_status st;
		int suite = 0;
		if (starts_with(b, bn, SYM_PASS))
			st = SWERVE_TEST_PASSED;
		else if (starts_with(b, bn, SYM_FAIL))
			st = SWERVE_TEST_FAILED;
		else if (starts_with(b, bn, SYM_SKIP))
			st = SWERVE_TEST_SKIPPED;
		else if (starts_with(b, bn, SYM_TODO))
			st = SWERVE_TEST_SKIPPED;
		else if (starts_with(b, bn, SYM_SUITE))
			suite = 1;
		else
			continue;
		size_t sym = 4; /* every symbol is 3 UTF-8 bytes and a space */
		const char *name = b + sym;
		size_t nl = bn - sym;
		name = trim(name, &nl);
		size_t level = ind / 2;
		if (level > depth)
			level = depth; /* deeper than any open suite: treat as its child */
		plen = level ? lvl_len[level - 1] : 0;
		depth = level;
		if (suite) {
			if (depth == cap) {
				size_t nc = cap ? cap * 2 : 8;
				size_t *v = realloc(lvl_len, nc * sizeof(*v));
				if (!v) {
					rc = swerve_error_set(SWERVE_ENOMEM, "node: out of memory");
					goto done;
				}
				lvl_len = v;
				cap = nc;
			}
			if (plen + nl + 3 > pcap) {
				size_t nc = (plen + nl + 3) * 2;
				char *p = realloc(path, nc);
				if (!p) {
					rc = swerve_error_set(SWERVE_ENOMEM, "node: out of memory");
					goto done;
				}
				path = p;
				pcap = nc;
			}
			memcpy(path + plen, name, nl);
			memcpy(path + plen + nl, " > ", 3);
			lvl_len[depth++] = plen + nl + 3;
			continue;
		}
		nl = spec_name_len(name, nl);
		if (plen + nl == 0)
			continue; /* no name */
		if (plen + nl > pcap) {
			size_t nc = (plen + nl) * 2;
			char *p = realloc(path, nc);
			if (!p) {
				rc = swerve_error_set(SWERVE_ENOMEM, "node: out of memory");
				goto done;
			}
			path = p;
			pcap = nc;
		}
		memcpy(path + plen, name, nl);
		if ((rc = testlog_put(log, path, plen + nl, st)) != 0)
			goto done;
	}
	if (!summary)
		testlog_mark_incomplete(log);
done:
	free(path);
	free(lvl_len);
	return rc;
}
