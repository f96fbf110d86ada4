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

static int has_line_starting(const char *data, size_t len, const char *prefix)
{
	size_t k = strlen(prefix);
	if (len >= k && memcmp(data, prefix, k) == 0)
		return 1;
	char pat[64];
	if (k + 1 >= sizeof(pat))
		return 0;
	pat[0] = '\n';
	memcpy(pat + 1, prefix, k);
	return memmem(data, len, pat, k + 1) != NULL;
}

const char *swerve_log_detect(const char *data, size_t len)
{
	if (len > (1u << 20))
		len = 1u << 20;
	size_t i = 0;
	while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r'))
		i++;
	if (i < len && data[i] == '<' &&
	    (find(data + i, len - i, "<testsuite") || find(data + i, len - i, "<testcase")))
		return "junit";
	if (find(data, len, "{\"Time\":") && find(data, len, "\"Action\":"))
		return "gojson";
	if (find(data, len, "=== RUN   ") || find(data, len, "--- PASS: ") ||
	    find(data, len, "--- FAIL: "))
		return "go";
	if (has_line_starting(data, len, "TAP version") || has_line_starting(data, len, "ok 1 ") ||
	    has_line_starting(data, len, "not ok 1 ") || has_line_starting(data, len, "1.."))
		return "tap";
	if (find(data, len, "test session starts") || find(data, len, "short test summary info") ||
	    ((has_line_starting(data, len, "PASSED ") || has_line_starting(data, len, "FAILED ") ||
	      has_line_starting(data, len, "ERROR ") || has_line_starting(data, len, "[gw") ||
	      find(data, len, " PASSED ") || find(data, len, " FAILED ")) &&
	     find(data, len, "::")))
		return "pytest";
	if (find(data, len, "test process starts") && find(data, len, "executable:"))
		return "sympy";
	if (find(data, len, "test result: ") && find(data, len, "\nrunning "))
		return "cargo";
	if (find(data, len, " Test #") || find(data, len, " Test  #") ||
	    find(data, len, "Test project "))
		return "ctest";
	if (find(data, len, "\xe2\x84\xb9 tests ") ||
	    has_line_starting(data, len, "\xe2\x9c\x94 ") ||
	    has_line_starting(data, len, "\xe2\x9c\x96 "))
		return "node";
	if (find(data, len, " ... ok") || find(data, len, " ... FAIL") ||
	    find(data, len, " ... ERROR") || has_line_starting(data, len, "Ran ") ||
	    has_line_starting(data, len, "FAIL: ") || has_line_starting(data, len, "ERROR: "))
		return "unittest";
	return NULL;
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
