/* parse.c - picks a log parser by name or by detection, and cleans the log
 * first: ANSI escape sequences (colours, cursor moves, OSC titles) and CRs go,
 * so that parsers see the text a person would read. The parsers themselves
 * are in parse_*.c. Pure: no I/O. */
#include "parsers.h"

#include <stdlib.h>
#include <string.h>

struct parser_entry {
	const char *name;
	log_parser_fn fn;
};

static const struct parser_entry parsers[] = {
        {"pytest", parse_pytest},   {"unittest", parse_unittest},
        {"django", parse_unittest}, {"sympy", parse_sympy},
        {"go", parse_go},           {"gojson", parse_gojson},
        {"cargo", parse_cargo},     {"tap", parse_tap},
        {"junit", parse_junit},     {"node", parse_node},
        {"ctest", parse_ctest},
};

#define NPARSERS (sizeof(parsers) / sizeof(parsers[0]))

static const char *const parser_names[] = {"pytest", "unittest", "sympy", "go",
                                           "gojson", "cargo",    "tap",   "junit",
                                           "node",   "ctest",    NULL};

const char *const *swerve_log_parser_names(void)
{
	return parser_names;
}

static const struct parser_entry *lookup(const char *name)
{
	for (size_t i = 0; i < NPARSERS; i++)
		if (strcmp(parsers[i].name, name) == 0)
			return &parsers[i];
	return NULL;
}

int swerve_log_parser_exists(const char *name)
{
	return name && (strcmp(name, "auto") == 0 || lookup(name) != NULL);
}

/* Copies src to dst without ANSI escape sequences; CRLF and lone CR become
 * LF. Returns the new length (<= n). */
static size_t clean(char *dst, const char *src, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)src[i];
		if (c == '\r') {
			dst[o++] = '\n';
			i += (i + 1 < n && src[i + 1] == '\n') ? 2 : 1;
			continue;
		}
		if (c != 0x1b) {
			dst[o++] = (char)c;
			i++;
			continue;
		}
		i++; /* ESC */
		if (i >= n)
			break;
		if (src[i] == '[') { /* CSI: params, intermediates, one final byte */
			i++;
			while (i < n && (unsigned char)src[i] >= 0x20 &&
			       (unsigned char)src[i] <= 0x3f)
				i++;
			if (i < n && (unsigned char)src[i] >= 0x40 && (unsigned char)src[i] <= 0x7e)
				i++;
		} else if (src[i] == ']') { /* OSC: up to BEL or ESC \ */
			i++;
			while (i < n && src[i] != '\a' &&
			       !(src[i] == 0x1b && i + 1 < n && src[i + 1] == '\\'))
				i++;
			i += (i < n && src[i] == '\a') ? 1 : (i < n ? 2 : 0);
		} else {
			i++; /* a two-byte escape (ESC c, ESC =, ...) */
		}
	}
	return o;
}

/* Detection scores every runner on the lines of the first megabyte: a result
 * line in a runner's own form counts 1, a banner only that runner prints
 * ("test session starts", "TAP version", "test result:") counts 10. The
 * highest score wins, so output of one tool quoted inside another's log (a
 * Python test that prints "--- PASS: TestX") does not decide. */
enum det { D_PYTEST, D_UNITTEST, D_SYMPY, D_GO, D_GOJSON, D_CARGO, D_TAP, D_NODE, D_CTEST, D_N };

static const char *const det_names[D_N] = {"pytest", "unittest", "sympy", "go",   "gojson",
                                           "cargo",  "tap",      "node",  "ctest"};

static void score_line(int *sc, const char *s, size_t n)
{
	size_t k = 0;
	while (k < n && (s[k] == ' ' || s[k] == '\t'))
		k++;
	const char *t = s + k;
	size_t tn = n - k;
	if (tn < 3)
		return;
	if (t[0] == '{' && find(t, tn, "\"Action\":"))
		sc[D_GOJSON] += 2;
	if (starts_with(t, tn, "--- PASS: ") || starts_with(t, tn, "--- FAIL: ") ||
	    starts_with(t, tn, "--- SKIP: ") || starts_with(t, tn, "=== RUN   "))
		sc[D_GO]++;
	if (starts_with(t, tn, "ok ") || starts_with(t, tn, "not ok "))
		sc[D_TAP]++;
	if (starts_with(t, tn, "TAP version ") || starts_with(t, tn, "# Subtest: "))
		sc[D_TAP] += 10;
	if (memchr(t, ':', tn) && find(t, tn, "::")) {
		if (starts_with(t, tn, "PASSED ") || starts_with(t, tn, "FAILED ") ||
		    starts_with(t, tn, "ERROR ") || starts_with(t, tn, "[gw") ||
		    find(t, tn, " PASSED") || find(t, tn, " FAILED") || find(t, tn, " ERROR"))
			sc[D_PYTEST]++;
	}
	if (t[0] == '=' &&
	    (find(t, tn, "test session starts") || find(t, tn, "short test summary info")))
		sc[D_PYTEST] += 10;
	if (find(t, tn, " ... ")) {
		if (starts_with(t, tn, "test "))
			sc[D_CARGO]++;
		else
			sc[D_UNITTEST]++;
	} else if (ends_with(t, tn, " ...") && !starts_with(t, tn, "test ")) {
		sc[D_UNITTEST]++;
	}
	if (starts_with(t, tn, "test result: "))
		sc[D_CARGO] += 10;
	if ((starts_with(t, tn, "Ran ") && find(t, tn, " test")) || starts_with(t, tn, "FAIL: ") ||
	    starts_with(t, tn, "ERROR: "))
		sc[D_UNITTEST] += 3;
	if (starts_with(t, tn, "test_") &&
	    (ends_with(t, tn, " ok") || ends_with(t, tn, " F") || ends_with(t, tn, " E") ||
	     ends_with(t, tn, " f") || ends_with(t, tn, "[OK]") || ends_with(t, tn, "[FAIL]")))
		sc[D_SYMPY]++;
	if (find(t, tn, "test process starts"))
		sc[D_SYMPY] += 10;
	if (find(t, tn, "Test #") || find(t, tn, "Test  #"))
		sc[D_CTEST]++;
	if (starts_with(t, tn, "Test project "))
		sc[D_CTEST] += 10;
	if (starts_with(t, tn, "\xe2\x9c\x94 ") || starts_with(t, tn, "\xe2\x9c\x96 ") ||
	    starts_with(t, tn, "\xef\xb9\xa3 ") || starts_with(t, tn, "\xe2\x96\xb6 "))
		sc[D_NODE]++;
	if (starts_with(t, tn, "\xe2\x84\xb9 tests "))
		sc[D_NODE] += 10;
}

const char *swerve_log_detect(const char *data, size_t len)
{
	if (!data)
		return NULL;
	if (len > (1u << 20))
		len = 1u << 20;
	size_t i = 0;
	while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r'))
		i++;
	if (i < len && data[i] == '<' &&
	    (find(data + i, len - i, "<testsuite") || find(data + i, len - i, "<testcase")))
		return "junit";
	int sc[D_N] = {0};
	struct line_iter it = {data, data + len};
	const char *s;
	size_t n;
	while (line_next(&it, &s, &n))
		score_line(sc, s, n);
	int best = -1;
	for (int d = 0; d < D_N; d++)
		if (sc[d] > 0 && (best < 0 || sc[d] > sc[best]))
			best = d;
	return best < 0 ? NULL : det_names[best];
}

int swerve_log_parse(struct swerve_testlog **out, const char *parser, const char *data, size_t len,
                     unsigned flags)
{
	const struct parser_entry *p = NULL;
	struct swerve_testlog *log = NULL;
	char *buf = NULL;
	int rc;

	if (!data)
		len = 0;
	if (parser && strcmp(parser, "auto") != 0) {
		p = lookup(parser);
		if (!p)
			return swerve_error_set(
			        SWERVE_EINVAL,
			        "log parser '%s': unknown (known: pytest, unittest, "
			        "django, sympy, go, gojson, cargo, tap, junit, node, "
			        "ctest, auto)",
			        parser);
	}
	/* Copy only where there is something to strip: the common case parses
	 * the caller's bytes in place. */
	const char *text = data ? data : "";
	if (len && (memchr(data, 0x1b, len) || memchr(data, '\r', len))) {
		buf = malloc(len);
		if (!buf)
			return swerve_error_set(SWERVE_ENOMEM, "log: out of memory (%zu bytes)",
			                        len);
		len = clean(buf, data, len);
		text = buf;
	}
	int cut = 0;
	if ((flags & SWERVE_LOG_TRUNCATED) && len && text[len - 1] != '\n') {
		while (len && text[len - 1] != '\n')
			len--;
		cut = 1;
	}
	if (!p) {
		const char *name = swerve_log_detect(text, len);
		if (!name) {
			rc = swerve_error_set(SWERVE_ENOTFOUND,
			                      "log: no parser recognises this output (%zu bytes); "
			                      "name one with log_parser",
			                      len);
			goto done;
		}
		p = lookup(name);
	}
	if ((rc = swerve_testlog_new(&log)) != 0)
		goto done;
	testlog_set_parser(log, p->name);
	/* one test result per ~128 bytes is dense for any runner: sizing the
	 * table once saves the rehashes (each a pass of cache misses) */
	testlog_reserve(log, len / 128);
	if (cut || (flags & SWERVE_LOG_TRUNCATED))
		testlog_mark_incomplete(log);
	if ((rc = p->fn(log, text, len)) != 0 || (rc = testlog_flush(log)) != 0) {
		swerve_error_wrap("log parser %s", p->name);
		goto done;
	}
	*out = log;
	log = NULL;
done:
	swerve_testlog_free(log);
	free(buf);
	return rc;
}
