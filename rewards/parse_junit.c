/* parse_junit.c - JUnit XML (pytest --junitxml, Maven Surefire, jest-junit,
 * go-junit-report, ...), read with expat.
 * Does: one result per <testcase>: a <failure> child -> FAILED, <error> ->
 * ERROR (wins over failure), <skipped type="pytest.xfail"> -> XFAIL, other
 * <skipped> -> SKIPPED, none -> PASSED (Surefire's <flakyFailure>, a test
 * that passed on a rerun, stays PASSED). The id is "classname.name", or name
 * alone where classname is empty or name already starts with it (jest-junit).
 * A document cut short keeps the test cases read before the cut and marks
 * the log incomplete. Does not: read <system-out>, times or properties; load
 * external entities (expat does not by default; its amplification limits
 * stop entity bombs). */
#include "parsers.h"

#include <expat.h>
#include <limits.h>
#include <stdlib.h>

struct junit_state {
	struct swerve_testlog *log;
	XML_Parser parser;
	int depth;    /* element depth */
	int tc_depth; /* depth of the open <testcase>, 0 if none */
	char *classname, *name;
	enum swerve_test_status status;
	int rc;
	size_t cases;
};

static const char *attr(const XML_Char **atts, const char *key)
{
	for (size_t i = 0; atts[i]; i += 2)
		if (strcmp(atts[i], key) == 0)
			return atts[i + 1];
	return NULL;
}

static void on_start(void *ud, const XML_Char *el, const XML_Char **atts)
{
	struct junit_state *st = ud;
	st->depth++;
	if (st->rc)
		return;
	if (st->tc_depth == 0 && strcmp(el, "testcase") == 0) {
		const char *cn = attr(atts, "classname");
		const char *nm = attr(atts, "name");
		st->classname = strdup(cn ? cn : "");
		st->name = strdup(nm ? nm : "");
		if (!st->classname || !st->name) {
			st->rc = swerve_error_set(SWERVE_ENOMEM, "junit: out of memory");
			XML_StopParser(st->parser, XML_FALSE);
			return;
		}
		st->tc_depth = st->depth;
		st->status = SWERVE_TEST_PASSED;
		return;
	}
	if (st->tc_depth == 0 || st->depth != st->tc_depth + 1)
		return;
	if (strcmp(el, "error") == 0) {
		st->status = SWERVE_TEST_ERROR;
	} else if (strcmp(el, "failure") == 0) {
		if (st->status != SWERVE_TEST_ERROR)
			st->status = SWERVE_TEST_FAILED;
	} else if (strcmp(el, "skipped") == 0) {
		const char *type = attr(atts, "type");
		if (st->status == SWERVE_TEST_PASSED)
			st->status = type && strcmp(type, "pytest.xfail") == 0
			                     ? SWERVE_TEST_XFAIL
			                     : SWERVE_TEST_SKIPPED;
	}
}

static void on_end(void *ud, const XML_Char *el)
{
	struct junit_state *st = ud;
	(void)el;
	if (st->tc_depth && st->depth == st->tc_depth && !st->rc) {
		size_t cl = strlen(st->classname), nl = strlen(st->name);
		int rc;
		if (cl == 0 || (nl >= cl && memcmp(st->name, st->classname, cl) == 0)) {
			rc = testlog_put(st->log, st->name, nl, st->status);
		} else {
			char *id = malloc(cl + 1 + nl + 1);
			if (!id) {
				rc = swerve_error_set(SWERVE_ENOMEM, "junit: out of memory");
			} else {
				memcpy(id, st->classname, cl);
				id[cl] = '.';
				memcpy(id + cl + 1, st->name, nl + 1);
				rc = testlog_put(st->log, id, cl + 1 + nl, st->status);
				free(id);
			}
		}
		if (rc) {
			st->rc = rc;
			XML_StopParser(st->parser, XML_FALSE);
		}
		st->cases++;
	}
	if (st->tc_depth && st->depth == st->tc_depth) {
		free(st->classname);
		free(st->name);
		st->classname = st->name = NULL;
		st->tc_depth = 0;
	}
	st->depth--;
}

int parse_junit(struct swerve_testlog *log, const char *data, size_t len)
{
	struct junit_state st = {.log = log};
	int rc = 0;

	st.parser = XML_ParserCreate(NULL);
	if (!st.parser)
		return swerve_error_set(SWERVE_ENOMEM, "junit: cannot create an XML parser");
	XML_SetUserData(st.parser, &st);
	XML_SetElementHandler(st.parser, on_start, on_end);

	enum XML_Status xs = XML_STATUS_OK;
	size_t off = 0;
	do {
		size_t chunk = len - off > (size_t)INT_MAX / 2 ? (size_t)INT_MAX / 2 : len - off;
		int final = off + chunk == len;
		xs = XML_Parse(st.parser, data + off, (int)chunk, final);
		off += chunk;
	} while (xs == XML_STATUS_OK && off < len);

	if (st.rc) {
		rc = st.rc;
	} else if (xs != XML_STATUS_OK) {
		/* A cut document (output cap, killed run): keep what was read. */
		if (st.cases > 0) {
			testlog_mark_incomplete(log);
		} else {
			rc = swerve_error_set(SWERVE_EINVAL, "junit: line %lu column %lu: %s",
			                      (unsigned long)XML_GetCurrentLineNumber(st.parser),
			                      (unsigned long)XML_GetCurrentColumnNumber(st.parser),
			                      XML_ErrorString(XML_GetErrorCode(st.parser)));
		}
	}
	free(st.classname);
	free(st.name);
	XML_ParserFree(st.parser);
	return rc;
}
