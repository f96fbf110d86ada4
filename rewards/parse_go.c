/* parse_go.c - `go test -v` and `go test -json` logs.
 * Does: record "--- PASS|FAIL|SKIP: TestX/sub (0.00s)" lines (subtests are
 * indented), and the pass/fail/skip events of -json, keyed by the test name
 * ("TestX/sub", as SWE-bench's Go parser). A test that started but never
 * reported (a panic in another test, os.Exit, a timeout) stays missing.
 * Does not: read package-level results or benchmark lines.
 *
 * -json lines are flat JSON objects; rewards/ is libc-only, so a small
 * scanner below reads them: it accepts exactly the JSON grammar for objects
 * whose values are strings, numbers, true/false/null (nested values are
 * skipped by bracket matching) and ignores any line it cannot read. */
#include "parsers.h"

#include <stdlib.h>

int parse_go(struct swerve_testlog *log, const char *data, size_t len)
{
	static const struct {
		const char *prefix;
		enum swerve_test_status status;
	} kinds[] = {
	        {"--- PASS: ", SWERVE_TEST_PASSED},
	        {"--- FAIL: ", SWERVE_TEST_FAILED},
	        {"--- SKIP: ", SWERVE_TEST_SKIPPED},
	};
	struct line_iter it = {data, data + len};
	const char *s;
	size_t n;
	int rc, done = 0;

	while (line_next(&it, &s, &n)) {
		s = trim(s, &n);
		if (n < 11 || s[0] != '-') {
			if (starts_with(s, n, "ok  ") || starts_with(s, n, "FAIL\t") ||
			    eq(s, n, "PASS") || eq(s, n, "FAIL"))
				done = 1;
			continue;
		}
		for (size_t i = 0; i < 3; i++) {
			if (!starts_with(s, n, kinds[i].prefix))
				continue;
			const char *name = s + 10;
			size_t nl = n - 10;
			/* drop the " (0.00s)" elapsed time */
			if (nl && name[nl - 1] == ')') {
				const char *p = name + nl - 1;
				while (p > name && *p != '(')
					p--;
				if (p > name && p[-1] == ' ')
					nl = (size_t)(p - 1 - name);
			}
			if ((rc = testlog_put(log, name, nl, kinds[i].status)) != 0)
				return rc;
			break;
		}
	}
	if (!done)
		testlog_mark_incomplete(log);
	return 0;
}

/* ---- a flat JSON object scanner (for go test -json) ------------------------- */

struct json_cur {
	const char *p, *end;
};

static void skip_ws(struct json_cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static void put_utf8(char *out, size_t *o, unsigned cp)
{
	if (cp < 0x80) {
		out[(*o)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*o)++] = (char)(0xc0 | (cp >> 6));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*o)++] = (char)(0xe0 | (cp >> 12));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		out[(*o)++] = (char)(0xf0 | (cp >> 18));
		out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	}
}

static int hex4(const char *p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char ch = p[i];
		unsigned d;
		if (ch >= '0' && ch <= '9')
			d = (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			d = (unsigned)(ch - 'a' + 10);
		else if (ch >= 'A' && ch <= 'F')
			d = (unsigned)(ch - 'A' + 10);
		else
			return -1;
		*v = *v * 16 + d;
	}
	return 0;
}

/* Reads a JSON string at c->p ('"'). With out (room for the raw length),
 * decodes it into out[0..*olen). Returns 0, or -1 if malformed. */
static int read_string(struct json_cur *c, char *out, size_t *olen)
{
	size_t o = 0;
	if (c->p >= c->end || *c->p != '"')
		return -1;
	c->p++;
	while (c->p < c->end) {
		unsigned char ch = (unsigned char)*c->p++;
		if (ch == '"') {
			if (olen)
				*olen = o;
			return 0;
		}
		if (ch < 0x20)
			return -1;
		if (ch != '\\') {
			if (out)
				out[o++] = (char)ch;
			continue;
		}
		if (c->p >= c->end)
			return -1;
		char e = *c->p++;
		char lit;
		switch (e) {
		case '"': lit = '"'; break;
		case '\\': lit = '\\'; break;
		case '/': lit = '/'; break;
		case 'b': lit = '\b'; break;
		case 'f': lit = '\f'; break;
		case 'n': lit = '\n'; break;
		case 'r': lit = '\r'; break;
		case 't': lit = '\t'; break;
		case 'u': {
			unsigned cp, lo;
			if (c->end - c->p < 4 || hex4(c->p, &cp))
				return -1;
			c->p += 4;
			if (cp >= 0xd800 && cp < 0xdc00 && c->end - c->p >= 6 && c->p[0] == '\\' &&
			    c->p[1] == 'u' && hex4(c->p + 2, &lo) == 0 && lo >= 0xdc00 &&
			    lo < 0xe000) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				c->p += 6;
			} else if (cp >= 0xd800 && cp < 0xe000) {
				cp = 0xfffd; /* lone surrogate */
			}
			if (out)
				put_utf8(out, &o, cp); /* <= 4 bytes for >= 6 read */
			continue;
		}
		default: return -1;
		}
		if (out)
			out[o++] = lit;
	}
	return -1;
}

/* Skips any JSON value (nested ones by bracket matching, strings honoured). */
static int skip_value(struct json_cur *c)
{
	skip_ws(c);
	if (c->p >= c->end)
		return -1;
	if (*c->p == '"')
		return read_string(c, NULL, NULL);
	if (*c->p == '{' || *c->p == '[') {
		int depth = 0;
		while (c->p < c->end) {
			char ch = *c->p;
			if (ch == '"') {
				if (read_string(c, NULL, NULL))
					return -1;
				continue;
			}
			c->p++;
			if (ch == '{' || ch == '[')
				depth++;
			else if ((ch == '}' || ch == ']') && --depth == 0)
				return 0;
		}
		return -1;
	}
	const char *start = c->p;
	while (c->p < c->end &&
	       (*c->p == '-' || *c->p == '+' || *c->p == '.' || (*c->p >= '0' && *c->p <= '9') ||
	        (*c->p >= 'a' && *c->p <= 'z') || (*c->p >= 'A' && *c->p <= 'Z')))
		c->p++;
	return c->p > start ? 0 : -1;
}

int parse_gojson(struct swerve_testlog *log, const char *data, size_t len)
{
	struct line_iter it = {data, data + len};
	const char *s;
	size_t n;
	char *buf = NULL;
	size_t cap = 0;
	int rc = 0, done = 0;

	while (line_next(&it, &s, &n)) {
		struct json_cur c = {s, s + n};
		skip_ws(&c);
		if (c.p >= c.end || *c.p != '{')
			continue;
		c.p++;
		if (cap < n + 1) {
			char *nb = realloc(buf, n + 1);
			if (!nb) {
				rc = swerve_error_set(SWERVE_ENOMEM, "gojson: out of memory");
				goto done;
			}
			buf = nb;
			cap = n + 1;
		}
		/* Decoded Test and Action share buf: Test from the front, Action
		 * is short and copied to a small array. */
		size_t test_len = 0;
		int have_test = 0;
		char action[16] = "";
		int ok = 1, first = 1;
		for (;;) {
			skip_ws(&c);
			if (c.p < c.end && *c.p == '}' && first)
				break;
			char key[16];
			size_t kl;
			struct json_cur save = c;
			if (read_string(&c, NULL, &kl)) {
				ok = 0;
				break;
			}
			size_t raw = (size_t)(c.p - save.p);
			if (raw - 2 < sizeof(key)) {
				struct json_cur k2 = save;
				read_string(&k2, key, &kl);
				key[kl] = '\0';
			} else {
				key[0] = '\0';
			}
			skip_ws(&c);
			if (c.p >= c.end || *c.p != ':') {
				ok = 0;
				break;
			}
			c.p++;
			skip_ws(&c);
			if (strcmp(key, "Test") == 0 && c.p < c.end && *c.p == '"') {
				if (read_string(&c, buf, &test_len)) {
					ok = 0;
					break;
				}
				have_test = 1;
			} else if (strcmp(key, "Action") == 0 && c.p < c.end && *c.p == '"') {
				struct json_cur v = c;
				size_t al;
				if (read_string(&v, NULL, &al)) {
					ok = 0;
					break;
				}
				if ((size_t)(v.p - c.p) - 2 < sizeof(action))
					read_string(&c, action, &al), action[al] = '\0';
				else
					c = v;
			} else if (skip_value(&c)) {
				ok = 0;
				break;
			}
			first = 0;
			skip_ws(&c);
			if (c.p < c.end && *c.p == ',') {
				c.p++;
				continue;
			}
			if (c.p < c.end && *c.p == '}')
				break;
			ok = 0;
			break;
		}
		if (!ok)
			continue;
		enum swerve_test_status st;
		if (strcmp(action, "pass") == 0)
			st = SWERVE_TEST_PASSED;
		else if (strcmp(action, "fail") == 0)
			st = SWERVE_TEST_FAILED;
		else if (strcmp(action, "skip") == 0)
			st = SWERVE_TEST_SKIPPED;
		else
			continue;
		if (!have_test) {
			done = 1; /* the package's own result ends its run */
			continue;
		}
		if ((rc = testlog_put(log, buf, test_len, st)) != 0)
			goto done;
	}
	if (!done)
		testlog_mark_incomplete(log);
done:
	free(buf);
	return rc;
}
