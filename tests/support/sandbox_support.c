/* sandbox_support.c - see sandbox_support.h. Aborts on setup failures. */
#include "sandbox_support.h"
#include "support.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ts_progs_dir(void)
{
	static char path[PATH_MAX];
	char rel[PATH_MAX];
	if (!path[0]) {
		snprintf(rel, sizeof(rel), "%s/progs/security/progs", ts_build_dir());
		if (!realpath(rel, path)) {
			fprintf(stderr, "sandbox_support: %s missing (make builds it)\n", rel);
			abort();
		}
	}
	return path;
}

int ts_escape(struct swerve_sandbox_result *r, const struct swerve_sandbox_opts *base, ...)
{
	static struct swerve_sandbox *sb;
	const char *argv[32];
	struct swerve_sandbox_bind binds[8];
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	size_t n = 0;
	va_list ap;

	if (!sb) {
		if (swerve_sandbox_new(&sb, NULL) < 0) {
			fprintf(stderr, "sandbox_support: %s\n", swerve_error_last());
			abort();
		}
		/* a root worker's context on its fast path for the case itself;
		 * `make test` runs the suite again with SWERVE_SANDBOX_SLOW=1 */
		if (swerve_sandbox_warm(sb) < 0) {
			fprintf(stderr, "sandbox_support: warm-up: %s\n", swerve_error_last());
			abort();
		}
	}
	if (base)
		o = *base;
	else
		o.limits.wall_ms = 10000;
	argv[n++] = TS_ESCAPE;
	va_start(ap, base);
	for (const char *a; (a = va_arg(ap, const char *)) && n < 31;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	o.argv = argv;
	o.fn = NULL;
	size_t nb = 0;
	for (size_t i = 0; i < o.n_ro_binds && nb < 7; i++)
		binds[nb++] = o.ro_binds[i];
	binds[nb++] = (struct swerve_sandbox_bind){ts_progs_dir(), TS_PROGS};
	o.ro_binds = binds;
	o.n_ro_binds = nb;
	/* SWERVE_TEST_PREPARE=1 (`make test`'s secprep pass): each case runs
	 * from a prepared sandbox (swerve_sandbox_prepare, as swerve serve's
	 * workers do): a no-op run with the same options first, then prepare */
	const char *prep = getenv("SWERVE_TEST_PREPARE");
	if (prep && *prep && strcmp(prep, "0")) {
		struct swerve_sandbox_opts w = o;
		const char *noop[] = {TS_ESCAPE, "noop", NULL};
		struct swerve_sandbox_result wr;
		w.argv = noop;
		swerve_sandbox_run(&wr, sb, &w);
		swerve_sandbox_result_dispose(&wr);
		if (swerve_sandbox_prepare(sb) < 0) {
			fprintf(stderr, "sandbox_support: prepare: %s\n", swerve_error_last());
			abort();
		}
	}
	return swerve_sandbox_run(r, sb, &o);
}
