/* error.h - swerve's one error channel, shared by every folder.
 *
 * Convention (libgit2-style): a fallible function returns int: 0 on success,
 * a named negative SWERVE_E* code for failures a caller may handle, or -1
 * (SWERVE_ERROR) otherwise. Where the failure is detected, the function sets
 * a one-line, thread-local message naming the item and the reason; callers
 * read it with swerve_error_last(). A lower-level message is never masked:
 * a caller that adds context prefixes it with swerve_error_wrap().
 *
 * This file uses libc only, so every layer (sandbox, rewards, db, ...) may
 * depend on it without pulling anything else in. */
#ifndef SWERVE_ERROR_H
#define SWERVE_ERROR_H

#include <stdarg.h>

enum swerve_error_code {
	SWERVE_OK = 0,
	SWERVE_ERROR = -1,        /* generic failure: see the message */
	SWERVE_ENOTFOUND = -2,    /* a named item (file, repo, commit, id) does not exist */
	SWERVE_EINVAL = -3,       /* malformed input (the message names item and field) */
	SWERVE_EEXIST = -4,       /* already exists */
	SWERVE_EUNSUPPORTED = -5, /* the host lacks a feature (the message says which setting) */
	SWERVE_EBUSY = -6,        /* locked or in use past the timeout */
	SWERVE_ETIMEOUT = -7,     /* a deadline passed */
	SWERVE_EIO = -8,          /* I/O error, disk full */
	SWERVE_ENOMEM = -9,       /* out of memory */
	SWERVE_ELIMIT = -10,      /* a configured limit was exceeded (size cap, count) */
	SWERVE_EVERSION = -11,    /* a file or schema from a newer version */
	SWERVE_ECORRUPT = -12,    /* a corrupted file */
};

/* Sets the thread's message (printf format) and returns code, so that
 * `return swerve_error_set(SWERVE_EINVAL, "tasks.jsonl:3: field %s: ...", f);`
 * reads naturally. Never fails; long messages are truncated. */
int swerve_error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int swerve_error_vset(int code, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Prefixes the current message with context ("repo add foo/bar: <old>") and
 * returns the current code. */
int swerve_error_wrap(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The last message set on this thread ("" if none). Borrowed: valid until the
 * next set/wrap/clear on this thread. */
const char *swerve_error_last(void);

/* The code of the last failure on this thread (SWERVE_OK if none). */
int swerve_error_code(void);

void swerve_error_clear(void);

/* A short constant name for a code ("ENOTFOUND"); never NULL. */
const char *swerve_error_name(int code);

#endif
