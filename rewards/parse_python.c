/* parse_python.c - pytest, unittest/Django and sympy bin/test logs.
 * Does: recognise result lines and record test id -> status, following
 * SWE-bench's parsers (last status wins) where they are right, and doing
 * better where they split ids with spaces ("test_p[a b]") or lose
 * docstring-named tests. Does not: look at tracebacks or timings. */
#include "parsers.h"

#include <stdlib.h>

/* ---- pytest ---------------------------------------------------------------- */

struct word_status {
	const char *word;
	enum swerve_test_status status;
};

/* XPASS (an xfail test that passed, non-strict) is recorded as PASSED. */
static const struct word_status pytest_words[] = {
        {"PASSED", SWERVE_TEST_PASSED}, {"FAILED", SWERVE_TEST_FAILED},
        {"ERROR", SWERVE_TEST_ERROR},   {"SKIPPED", SWERVE_TEST_SKIPPED},
        {"XFAIL", SWERVE_TEST_XFAIL},   {"XPASS", SWERVE_TEST_PASSED},
};

#define NPYTEST_WORDS (sizeof(pytest_words) / sizeof(pytest_words[0]))

/* If s[0..n) starts with a status word followed by a space, '(' or the end,
 * returns its index in pytest_words and the word's length in *wl; else -1. */
static int pytest_word_at(const char *s, size_t n, size_t *wl)
{
	if (n < 5 || !(s[0] == 'P' || s[0] == 'F' || s[0] == 'E' || s[0] == 'S' || s[0] == 'X'))
		return -1;
	for (size_t i = 0; i < NPYTEST_WORDS; i++) {
		size_t k = strlen(pytest_words[i].word);
		if (n >= k && memcmp(s, pytest_words[i].word, k) == 0 &&
		    (n == k || s[k] == ' ' || s[k] == '(')) {
			*wl = k;
			return (int)i;
		}
	}
	return -1;
}

/* Length of the node id at s: up to the first space outside brackets
 * (parametrised ids hold spaces and nested brackets: "test_p[x y-[z]]").
 * Unbalanced brackets: up to " - " or the end. */
static size_t pytest_id_len(const char *s, size_t n)
{
	int depth = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '[')
			depth++;
		else if (s[i] == ']' && depth > 0)
			depth--;
		else if (s[i] == ' ' && depth == 0)
			return i;
	}
	if (depth == 0)
		return n;
	const char *dash = find(s, n, " - ");
	return dash ? (size_t)(dash - s) : n;
}

/* "tests/a.py::test_x[p q] PASSED   [ 10%]": returns 1 and the id/status. */
static int pytest_verbose(const char *s, size_t n, size_t *idlen, enum swerve_test_status *st)
{
	int depth = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '[')
			depth++;
		else if (c == ']' && depth > 0)
			depth--;
		else if (c == ' ' && depth == 0) {
			size_t wl;
			int w = pytest_word_at(s + i + 1, n - i - 1, &wl);
			if (w >= 0) {
				*idlen = i;
				*st = pytest_words[w].status;
				return 1;
			}
			return 0; /* an id never holds a space outside brackets */
		}
	}
	return 0;
}

/* Records a pytest node id and, where SWE-bench's parsers would have named
 * it differently, that name too, so that FAIL_TO_PASS / PASS_TO_PASS lists
 * made by SWE-bench match:
 *   - its parsers split lines on whitespace: "t.py::test_p[a b]" is
 *     "t.py::test_p[a" in its lists;
 *   - parse_log_pytest_options (pydicom, pylint, requests) keeps only the
 *     last component of a parameter that is an absolute path;
 *   - parse_log_matplotlib writes MouseButton.LEFT/RIGHT as 1/3. */
static int pytest_put(struct swerve_testlog *log, const char *id, size_t n,
                      enum swerve_test_status st)
{
	int rc = testlog_put(log, id, n, st);
	if (rc)
		return rc;
	const char *sp = memchr(id, ' ', n);
	if (sp && sp > id && (rc = testlog_put_alias(log, id, (size_t)(sp - id), st)) != 0)
		return rc;
	const char *open = memchr(id, '[', n);
	if (open && id[n - 1] == ']' && open[1] == '/' && open + 2 < id + n && open[2] != '/' &&
	    !memchr(open, '*', (size_t)(id + n - open))) {
		const char *slash = id + n - 1;
		while (slash > open && *slash != '/')
			slash--;
		char buf[1024];
		size_t head = (size_t)(open + 1 - id), tail = (size_t)(id + n - slash);
		if (slash > open + 1 && head + tail < sizeof(buf)) {
			memcpy(buf, id, head);
			memcpy(buf + head, slash, tail);
			if ((rc = testlog_put_alias(log, buf, head + tail, st)) != 0)
				return rc;
		}
	}
	if (n < 1024 && find(id, n, "MouseButton.")) {
		char buf[1024];
		size_t o = 0;
		for (size_t i = 0; i < n;) {
			if (starts_with(id + i, n - i, "MouseButton.LEFT")) {
				buf[o++] = '1';
				i += 16;
			} else if (starts_with(id + i, n - i, "MouseButton.RIGHT")) {
				buf[o++] = '3';
				i += 17;
			} else {
				buf[o++] = id[i++];
			}
		}
		if (o != n && (rc = testlog_put_alias(log, buf, o, st)) != 0)
			return rc;
	}
	return 0;
}

/* Where a line sits in pytest's output. Result lines count only where
 * pytest writes them: the session body (verbose and xdist lines) and the
 * "short test summary info" block. The report sections in between (ERRORS,
 * FAILURES, PASSES with their captured output) and anything after the final
 * "N passed in 1.2s" line are skipped, so code under test that prints
 * "PASSED tests/a.py::test_x" cannot fake a result there. */
enum pytest_region { PY_BODY, PY_REPORT, PY_SUMMARY, PY_DONE };

/* "=== title ===" lines: returns 1 and moves *region. */
static int pytest_header(const char *s, size_t n, enum pytest_region *region, int *summary)
{
	if (n < 7 || s[0] != '=' || s[1] != '=' || s[2] != '=' || s[n - 1] != '=')
		return 0;
	size_t a = 0, b = n;
	while (a < n && s[a] == '=')
		a++;
	while (b > a && s[b - 1] == '=')
		b--;
	const char *t = s + a;
	size_t tn = b - a;
	t = trim(t, &tn);
	if (find(t, tn, "test session starts")) {
		*region = PY_BODY;
	} else if (find(t, tn, "short test summary info")) {
		*region = PY_SUMMARY;
	} else if (find(t, tn, " in ") || starts_with(t, tn, "no tests ran")) {
		*region = PY_DONE; /* "3 failed, 4 passed in 0.12s" */
		*summary = 1;
	} else {
		*region = PY_REPORT; /* ERRORS, FAILURES, PASSES, warnings summary, ... */
	}
	return 1;
}

int parse_pytest(struct swerve_testlog *log, const char *data, size_t len)
{
	struct line_iter it = {data, data + len};
	const char *s;
	size_t n;
	int summary = 0, rc;
	enum pytest_region region = PY_BODY;

	while (line_next(&it, &s, &n)) {
		if (n < 6)
			continue;
		if (s[0] == '=' && pytest_header(s, n, &region, &summary))
			continue;
		if (region == PY_REPORT || region == PY_DONE)
			continue;
		/* xdist: "[gw0] [ 50%] PASSED tests/a.py::test_x" */
		if (s[0] == '[' && n > 4 && s[1] == 'g' && s[2] == 'w') {
			while (n && s[0] == '[') {
				const char *close = memchr(s, ']', n);
				if (!close)
					break;
				n -= (size_t)(close + 1 - s);
				s = close + 1;
				while (n && *s == ' ') {
					s++;
					n--;
				}
			}
		}
		if (n == 0)
			continue;
		size_t wl;
		int w = pytest_word_at(s, n, &wl);
		if (w >= 0) {
			/* summary form: "FAILED tests/a.py::test_x - AssertionError" */
			if (n <= wl + 1 || s[wl] != ' ')
				continue;
			const char *id = s + wl + 1;
			size_t rest = n - wl - 1;
			if (id[0] == '[') /* "SKIPPED [1] tests/a.py:13: reason": no node id */
				continue;
			size_t il = pytest_id_len(id, rest);
			if ((rc = pytest_put(log, id, il, pytest_words[w].status)) != 0)
				return rc;
			continue;
		}
		if (region != PY_BODY)
			continue;
		/* verbose form needs a node id: "path::name" */
		const char *colon = memchr(s, ':', n);
		if (!colon || colon + 1 >= s + n || colon[1] != ':')
			continue;
		size_t il;
		enum swerve_test_status st;
		if (pytest_verbose(s, n, &il, &st) && (rc = pytest_put(log, s, il, st)) != 0)
			return rc;
	}
	if (!summary)
		testlog_mark_incomplete(log);
	return 0;
}

/* ---- unittest and Django ---------------------------------------------------- */

/* The status unittest prints after " ... " (or alone on a line when the
 * test's own output came in between). */
static int unittest_word(const char *s, size_t n, enum swerve_test_status *st)
{
	s = trim(s, &n);
	if (eq(s, n, "ok") || eq(s, n, "OK"))
		*st = SWERVE_TEST_PASSED;
	else if (eq(s, n, "FAIL"))
		*st = SWERVE_TEST_FAILED;
	else if (eq(s, n, "ERROR"))
		*st = SWERVE_TEST_ERROR;
	else if (eq(s, n, "skipped") || starts_with(s, n, "skipped '") ||
	         starts_with(s, n, "skipped \""))
		*st = SWERVE_TEST_SKIPPED;
	else if (eq(s, n, "expected failure"))
		*st = SWERVE_TEST_XFAIL;
	else if (eq(s, n, "unexpected success"))
		*st = SWERVE_TEST_FAILED; /* fails the run since Python 3.4 */
	else
		return 0;
	return 1;
}

/* Records name and, for Python 3.11's "test_x (mod.Class.test_x)", also the
 * older spelling "test_x (mod.Class)" that SWE-bench's lists use. */
static int unittest_set(struct swerve_testlog *log, const char *name, size_t n,
                        enum swerve_test_status st, int alias)
{
	int rc = alias ? testlog_put_alias(log, name, n, st) : testlog_put(log, name, n, st);
	/* a failing subtest "test_x (m.C.test_x) (i=1)" fails its test too */
	const char *sub = n > 4 && name[n - 1] == ')' ? find(name, n, ") (") : NULL;
	if (!rc && sub && (st == SWERVE_TEST_FAILED || st == SWERVE_TEST_ERROR))
		rc = unittest_set(log, name, (size_t)(sub + 1 - name), st, alias);
	if (rc || n < 5 || name[n - 1] != ')')
		return rc;
	const char *open = find(name, n, " (");
	if (!open)
		return 0;
	size_t ml = (size_t)(open - name); /* method */
	const char *inner = open + 2;      /* mod.Class.method */
	size_t il = (size_t)(name + n - 1 - inner);
	if (ml == 0 || il <= ml + 1 || inner[il - ml - 1] != '.' ||
	    memcmp(inner + il - ml, name, ml) != 0)
		return 0;
	char buf[1024];
	size_t al = n - ml - 1;
	if (al >= sizeof(buf))
		return 0;
	memcpy(buf, name, ml + 2 + il - ml - 1);
	buf[ml + 2 + il - ml - 1] = ')';
	return testlog_put_alias(log, buf, al, st);
}

/* "test_x (mod.Class)" or "test_x (mod.Class.test_x)" alone on a line: the
 * header unittest prints before a docstring line. */
static int unittest_header(const char *s, size_t n)
{
	if (n < 5 || s[n - 1] != ')')
		return 0;
	const char *open = find(s, n, " (");
	if (!open || open == s || memchr(s, ' ', (size_t)(open - s)))
		return 0;
	return memchr(open + 2, ' ', (size_t)(s + n - open - 2)) == NULL;
}

int parse_unittest(struct swerve_testlog *log, const char *data, size_t len)
{
	struct line_iter it = {data, data + len};
	const char *s, *pending = NULL, *header = NULL;
	size_t n, pending_len = 0, header_len = 0;
	int ran = 0, rc;
	enum swerve_test_status st;

	while (line_next(&it, &s, &n)) {
		const char *prev_header = header;
		size_t prev_header_len = header_len;
		header = NULL;
		s = trim(s, &n);
		if (n == 0)
			continue;
		const char *dots = find(s, n, " ... ");
		if (!dots && ends_with(s, n, " ..."))
			dots = s + n - 4;
		if (dots) {
			size_t nl = (size_t)(dots - s);
			size_t off = nl + 5 <= n ? nl + 5 : n;
			pending = NULL;
			if (unittest_word(s + off, n - off, &st)) {
				if ((rc = unittest_set(log, s, nl, st, 0)) != 0)
					return rc;
				if (prev_header && (rc = unittest_set(log, prev_header,
				                                      prev_header_len, st, 1)) != 0)
					return rc;
			} else {
				/* the test printed between its name and its status */
				pending = s;
				pending_len = nl;
				header = prev_header; /* keep the docstring's header */
				header_len = prev_header_len;
			}
			continue;
		}
		if (pending && unittest_word(s, n, &st)) {
			if ((rc = unittest_set(log, pending, pending_len, st, 0)) != 0)
				return rc;
			if (prev_header &&
			    (rc = unittest_set(log, prev_header, prev_header_len, st, 1)) != 0)
				return rc;
			pending = NULL;
			continue;
		}
		if (pending) {
			header = prev_header;
			header_len = prev_header_len;
		}
		if (starts_with(s, n, "FAIL: ") || starts_with(s, n, "ERROR: ")) {
			size_t k = s[0] == 'F' ? 6 : 7;
			const char *name = s + k;
			size_t nl = n - k;
			name = trim(name, &nl);
			st = s[0] == 'F' ? SWERVE_TEST_FAILED : SWERVE_TEST_ERROR;
			if ((rc = unittest_set(log, name, nl, st, 0)) != 0)
				return rc;
			continue;
		}
		if (starts_with(s, n, "Ran ") && find(s, n, " test")) {
			ran = 1;
			continue;
		}
		if (!pending && unittest_header(s, n)) {
			header = s;
			header_len = n;
		}
	}
	if (!ran)
		testlog_mark_incomplete(log);
	return 0;
}

/* ---- sympy bin/test --------------------------------------------------------- */

int parse_sympy(struct swerve_testlog *log, const char *data, size_t len)
{
	static const struct word_status marks[] = {
	        {" ok", SWERVE_TEST_PASSED}, {" F", SWERVE_TEST_FAILED},
	        {" E", SWERVE_TEST_ERROR},   {" f", SWERVE_TEST_XFAIL},
	        {" s", SWERVE_TEST_SKIPPED}, {" w", SWERVE_TEST_SKIPPED},
	        {" X", SWERVE_TEST_PASSED},  {" T", SWERVE_TEST_FAILED},
	};
	struct line_iter it = {data, data + len};
	const char *s;
	size_t n;
	int rc, summary = 0;

	while (line_next(&it, &s, &n)) {
		s = trim(s, &n);
		/* the last test of a file carries the file's verdict: "[OK]", "[FAIL]" */
		if (n && s[n - 1] == ']' &&
		    (ends_with(s, n, "[OK]") || ends_with(s, n, "[FAIL]"))) {
			n -= s[n - 2] == 'K' ? 4 : 6;
			s = trim(s, &n);
		}
		if (starts_with(s, n, "test_")) {
			const char *sp = memchr(s, ' ', n);
			if (!sp)
				continue;
			for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
				if (ends_with(s, n, marks[i].word)) {
					rc = testlog_put(log, s, (size_t)(sp - s), marks[i].status);
					if (rc)
						return rc;
					break;
				}
			continue;
		}
		/* "____ sympy/core/tests/test_a.py:test_x ____" heads a failure or
		 * an error report: recorded as SWE-bench does, under path:name. */
		if (n > 4 && s[0] == '_' && s[n - 1] == '_' && find(s, n, ".py:")) {
			size_t a = 0, b = n;
			while (a < n && s[a] == '_')
				a++;
			while (b > a && s[b - 1] == '_')
				b--;
			const char *id = s + a;
			size_t il = b - a;
			id = trim(id, &il);
			if (il && !memchr(id, ' ', il) &&
			    (rc = testlog_put(log, id, il, SWERVE_TEST_FAILED)) != 0)
				return rc;
			continue;
		}
		if ((starts_with(s, n, "tests finished:") || starts_with(s, n, "DO *NOT* COMMIT!")))
			summary = 1;
	}
	if (!summary)
		testlog_mark_incomplete(log);
	return 0;
}
