/* test_error.c - the shared error convention (sandbox/error.h). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "sandbox/error.h"

Test(error, set_returns_code_and_formats_one_line)
{
	swerve_error_clear();
	int rc = swerve_error_set(SWERVE_EINVAL, "tasks.jsonl:%d: field %s:\nbad", 3, "repo");
	cr_assert_eq(rc, SWERVE_EINVAL);
	cr_assert_eq(swerve_error_code(), SWERVE_EINVAL);
	cr_assert_str_eq(swerve_error_last(), "tasks.jsonl:3: field repo: bad");
}

Test(error, wrap_prefixes_and_keeps_code)
{
	swerve_error_set(SWERVE_ENOTFOUND, "commit abc123 not found");
	int rc = swerve_error_wrap("repo %s", "foo/bar");
	cr_assert_eq(rc, SWERVE_ENOTFOUND);
	cr_assert_str_eq(swerve_error_last(), "repo foo/bar: commit abc123 not found");
}

Test(error, wrap_without_message_is_generic_error)
{
	swerve_error_clear();
	cr_assert_eq(swerve_error_wrap("context"), SWERVE_ERROR);
	cr_assert_str_eq(swerve_error_last(), "context");
}

Test(error, long_message_truncated_not_overflowed)
{
	char big[4096];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	swerve_error_set(SWERVE_ERROR, "%s", big);
	cr_assert_lt(strlen(swerve_error_last()), 1024);
	swerve_error_wrap("%s", big);
	cr_assert_lt(strlen(swerve_error_last()), 1024);
}

static void *other_thread(void *arg)
{
	(void)arg;
	swerve_error_set(SWERVE_EIO, "other thread");
	return NULL;
}

Test(error, message_is_thread_local)
{
	pthread_t t;
	swerve_error_set(SWERVE_EBUSY, "main thread");
	pthread_create(&t, NULL, other_thread, NULL);
	pthread_join(t, NULL);
	cr_assert_str_eq(swerve_error_last(), "main thread");
	cr_assert_eq(swerve_error_code(), SWERVE_EBUSY);
}

Test(error, every_code_has_a_name)
{
	for (int c = 0; c >= SWERVE_ECORRUPT; c--)
		cr_assert_str_neq(swerve_error_name(c), "UNKNOWN", "code %d", c);
	cr_assert_str_eq(swerve_error_name(42), "UNKNOWN");
}
