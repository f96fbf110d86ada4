/* error.c - the thread-local error message behind swerve_error_last().
 * Does: store one formatted line and a code per thread. Does not: allocate,
 * log, or exit. Safe to call from any thread; not async-signal-safe. */
#include "error.h"

#include <stdio.h>
#include <string.h>

#define SWERVE_ERROR_MAX 1024

static _Thread_local char err_msg[SWERVE_ERROR_MAX];
static _Thread_local int err_code;

/* Keep the message on one line: a newline in a filename or a tool's output
 * must not split an error report. */
static void flatten(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

int swerve_error_vset(int code, const char *fmt, va_list ap)
{
	vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
	flatten(err_msg);
	err_code = code;
	return code;
}

int swerve_error_set(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	swerve_error_vset(code, fmt, ap);
	va_end(ap);
	return code;
}

int swerve_error_wrap(const char *fmt, ...)
{
	char prefix[SWERVE_ERROR_MAX];
	char old[SWERVE_ERROR_MAX];
	va_list ap;

	memcpy(old, err_msg, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	size_t n = strlen(prefix);
	if (n > sizeof(err_msg) - 1)
		n = sizeof(err_msg) - 1;
	memcpy(err_msg, prefix, n);
	if (old[0] && n + 2 < sizeof(err_msg)) {
		size_t m = strlen(old);
		memcpy(err_msg + n, ": ", 2);
		n += 2;
		if (m > sizeof(err_msg) - 1 - n)
			m = sizeof(err_msg) - 1 - n;
		memcpy(err_msg + n, old, m);
		n += m;
	}
	err_msg[n] = '\0';
	flatten(err_msg);
	if (err_code == SWERVE_OK)
		err_code = SWERVE_ERROR;
	return err_code;
}

const char *swerve_error_last(void)
{
	return err_msg;
}

int swerve_error_code(void)
{
	return err_code;
}

void swerve_error_clear(void)
{
	err_msg[0] = '\0';
	err_code = SWERVE_OK;
}

const char *swerve_error_name(int code)
{
	switch (code) {
	case SWERVE_OK: return "OK";
	case SWERVE_ERROR: return "ERROR";
	case SWERVE_ENOTFOUND: return "ENOTFOUND";
	case SWERVE_EINVAL: return "EINVAL";
	case SWERVE_EEXIST: return "EEXIST";
	case SWERVE_EUNSUPPORTED: return "EUNSUPPORTED";
	case SWERVE_EBUSY: return "EBUSY";
	case SWERVE_ETIMEOUT: return "ETIMEOUT";
	case SWERVE_EIO: return "EIO";
	case SWERVE_ENOMEM: return "ENOMEM";
	case SWERVE_ELIMIT: return "ELIMIT";
	case SWERVE_EVERSION: return "EVERSION";
	case SWERVE_ECORRUPT: return "ECORRUPT";
	default: return "UNKNOWN";
	}
}
