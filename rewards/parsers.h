/* parsers.h - internal to rewards/: what the log parsers share.
 * Not installed; callers use rewards.h. */
#ifndef SWERVE_REWARDS_PARSERS_H
#define SWERVE_REWARDS_PARSERS_H

#include <stddef.h>
#include <string.h>

#include "rewards.h"

void testlog_set_parser(struct swerve_testlog *log, const char *parser);
void testlog_mark_incomplete(struct swerve_testlog *log);
/* What parsers call instead of swerve_testlog_set: the same, but the
 * insertion may be deferred (prefetching); swerve_log_parse flushes. */
int testlog_put(struct swerve_testlog *log, const char *name, size_t len,
                enum swerve_test_status status);
int testlog_flush(struct swerve_testlog *log);
/* The same for another spelling of a test already reported (SWE-bench's
 * name for it): listed with alias = 1 unless also reported under it. */
int testlog_put_alias(struct swerve_testlog *log, const char *name, size_t len,
                      enum swerve_test_status status);
/* Sizes the table for about `expected` ids (a hint; can't fail). */
int testlog_reserve(struct swerve_testlog *log, size_t expected);

/* Every parser: data[0..len) is clean (no ANSI escapes, no CR, possibly
 * without a final newline). Returns 0 or a swerve error code. */
typedef int (*log_parser_fn)(struct swerve_testlog *log, const char *data, size_t len);

int parse_pytest(struct swerve_testlog *log, const char *data, size_t len);
int parse_unittest(struct swerve_testlog *log, const char *data, size_t len);
int parse_sympy(struct swerve_testlog *log, const char *data, size_t len);
int parse_go(struct swerve_testlog *log, const char *data, size_t len);
int parse_gojson(struct swerve_testlog *log, const char *data, size_t len);
int parse_cargo(struct swerve_testlog *log, const char *data, size_t len);
int parse_tap(struct swerve_testlog *log, const char *data, size_t len);
int parse_node(struct swerve_testlog *log, const char *data, size_t len);
int parse_ctest(struct swerve_testlog *log, const char *data, size_t len);
int parse_junit(struct swerve_testlog *log, const char *data, size_t len);

/* Line iteration: `for (struct line_iter it = {data, data + len}; line_next(&it, &l, &n);)` */
struct line_iter {
	const char *p, *end;
};

static inline int line_next(struct line_iter *it, const char **line, size_t *len)
{
	if (it->p >= it->end)
		return 0;
	const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
	const char *e = nl ? nl : it->end;
	*line = it->p;
	*len = (size_t)(e - it->p);
	it->p = nl ? nl + 1 : it->end;
	return 1;
}

static inline int starts_with(const char *s, size_t n, const char *prefix)
{
	size_t k = strlen(prefix);
	return n >= k && memcmp(s, prefix, k) == 0;
}

static inline int ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);
	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* Trims spaces and tabs on both sides of s[0..*n). */
static inline const char *trim(const char *s, size_t *n)
{
	while (*n && (*s == ' ' || *s == '\t')) {
		s++;
		(*n)--;
	}
	while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
		(*n)--;
	return s;
}

/* Equality of s[0..n) with a C string. */
static inline int eq(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* First occurrence of needle in s[0..n), or NULL. */
static inline const char *find(const char *s, size_t n, const char *needle)
{
	return memmem(s, n, needle, strlen(needle));
}

#endif
