/* cmd_exec.c - `swerve exec`: run one command in the sandbox and print its
 * verdict (a human line on stderr after the command's own output, or one
 * JSON object on stdout with --json). Exit status: 0 verdict OK, 1 any other
 * model verdict (RE SG TO ML OL SV), 2 usage, 3 sandbox failure (XX). */
#include "cli.h"
#include "sandbox/sandbox.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXLIST 64

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		return -1;
	uint64_t mul = 1;
	switch (*end) {
	case 'k':
	case 'K':
		mul = 1ull << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mul = 1ull << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1ull << 30;
		end++;
		break;
	default: break;
	}
	if (*end)
		return -1;
	*out = (uint64_t)v * mul;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: swerve exec [options] -- CMD [ARGS...]\n\n"
	        "Runs CMD in a fresh sandbox (user/mount/pid/net/ipc/uts namespaces, read-only\n"
	        "toolchain, loopback-only network, rlimits, seccomp) and prints the verdict:\n"
	        "OK RE SG TO ML OL SV, or XX when the sandbox itself failed.\n\n"
	        "options:\n"
	        "  --workspace DIR     bind DIR read-write at /workspace (the working directory)\n"
	        "  --lower DIR         overlay workspace: a read-only layer (repeat; top first)\n"
	        "  --upper DIR --work DIR   the overlay's upper and work dirs\n"
	        "  --ro PATH[:DST]     extra read-only bind (repeat)\n"
	        "  --cwd DIR           working directory inside\n"
	        "  --env NAME=VALUE    environment variable (repeat; nothing else is inherited)\n"
	        "  --wall-ms N         wall-clock limit (default 60000)\n"
	        "  --cpu-s N           CPU-time limit\n"
	        "  --memory SIZE       resident memory limit (default 4G)\n"
	        "  --nproc N           process cap (default 512)\n"
	        "  --nofile N          open files (default 4096)\n"
	        "  --fsize SIZE        largest file written (default 1G)\n"
	        "  --output SIZE       captured bytes kept per stream (default 1M)\n"
	        "  --output-kill SIZE  total output past which the run is killed (default 64M)\n"
	        "  --tmp SIZE          size of /tmp (default 512M)\n"
	        "  --json              print one JSON object (verdict, accounting, output)\n\n"
	        "SIZE takes K, M, G suffixes. Exit status: 0 OK, 1 another verdict, 2 usage,\n"
	        "3 sandbox failure (XX).\n");
}

static int print_json(const struct swerve_sandbox_result *r)
{
	json_t *o = json_pack(
	        "{s:s, s:i, s:i, s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:b, s:b, s:I, s:I, s:b}",
	        "verdict", swerve_verdict_name(r->verdict), "exit_code", r->exit_code, "signal",
	        r->signal, "syscall", r->syscall, "reason", r->reason, "wall_us",
	        (json_int_t)r->wall_us, "cpu_us", (json_int_t)r->cpu_us, "max_rss_kb",
	        (json_int_t)r->max_rss_kb, "stdout", r->out.data ? r->out.data : "", "stderr",
	        r->err.data ? r->err.data : "", "stdout_truncated", r->out.truncated,
	        "stderr_truncated", r->err.truncated, "stdout_bytes", (json_int_t)r->out.total,
	        "stderr_bytes", (json_int_t)r->err.total, "overlay", r->used_overlay);
	if (!o)
		return -1;
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return -1;
	puts(s);
	free(s);
	return 0;
}

int swerve_cmd_exec(int argc, char **argv)
{
	return swerve_exec_cli(argc, argv, NULL, 0);
}

int swerve_exec_cli(int argc, char **argv, struct swerve_sandbox *ctx, int cancel_fd)
{
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_bind ro[MAXLIST];
	char *ro_copy[MAXLIST];
	const char *env[MAXLIST + 1], *lower[MAXLIST + 1];
	size_t nro = 0, nenv = 0, nlower = 0;
	int json = 0, i, code;
	/* usage errors leave through out: (a server's worker runs many) */
#define FAIL(...)                                                                                  \
	do {                                                                                       \
		code = swerve_cli_fail(__VA_ARGS__);                                               \
		goto out;                                                                          \
	} while (0)

	if (swerve_cli_wants_help(argc, argv)) {
		usage(stdout);
		return SWERVE_EXIT_OK;
	}
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t *lim = NULL;
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "--json")) {
			json = 1;
			continue;
		}
		if (a[0] != '-') /* the command starts here (no `--`) */
			break;
		if (!v)
			FAIL("exec", SWERVE_EXIT_USAGE, "%s: needs a value", a);
		i++;
		if (!strcmp(a, "--workspace"))
			o.workspace = v;
		else if (!strcmp(a, "--upper"))
			o.workspace_upper = v;
		else if (!strcmp(a, "--work"))
			o.workspace_work = v;
		else if (!strcmp(a, "--cwd"))
			o.cwd = v;
		else if (!strcmp(a, "--lower") || !strcmp(a, "--env") || !strcmp(a, "--ro")) {
			if (nlower >= MAXLIST || nenv >= MAXLIST || nro >= MAXLIST)
				FAIL("exec", SWERVE_EXIT_USAGE, "%s: too many", a);
			if (a[2] == 'l')
				lower[nlower++] = v;
			else if (a[2] == 'e')
				env[nenv++] = v;
			else {
				char *c = strdup(v), *colon = c ? strchr(c, ':') : NULL;
				if (!c)
					FAIL("exec", SWERVE_EXIT_INFRA, "out of memory");
				if (colon)
					*colon = '\0';
				ro_copy[nro] = c;
				ro[nro].src = c;
				ro[nro].dst = colon ? colon + 1 : NULL;
				nro++;
			}
		} else {
			if (!strcmp(a, "--wall-ms"))
				lim = &o.limits.wall_ms;
			else if (!strcmp(a, "--cpu-s"))
				lim = &o.limits.cpu_s;
			else if (!strcmp(a, "--memory"))
				lim = &o.limits.memory_bytes;
			else if (!strcmp(a, "--nproc"))
				lim = &o.limits.nproc;
			else if (!strcmp(a, "--nofile"))
				lim = &o.limits.nofile;
			else if (!strcmp(a, "--fsize"))
				lim = &o.limits.fsize_bytes;
			else if (!strcmp(a, "--output"))
				lim = &o.limits.output_bytes;
			else if (!strcmp(a, "--output-kill"))
				lim = &o.limits.output_kill_bytes;
			else if (!strcmp(a, "--tmp"))
				lim = &o.tmp_bytes;
			else
				FAIL("exec", SWERVE_EXIT_USAGE,
				     "unknown option '%s' (see swerve exec --help)", a);
			if (parse_size(v, lim) < 0 || *lim == 0)
				FAIL("exec", SWERVE_EXIT_USAGE, "%s: '%s' is not a positive number",
				     a, v);
		}
	}
	if (i >= argc)
		FAIL("exec", SWERVE_EXIT_USAGE,
		     "no command given (usage: swerve exec [options] -- CMD ...)");
	env[nenv] = NULL;
	lower[nlower] = NULL;
	o.env = nenv ? env : NULL;
	o.workspace_lower = nlower ? lower : NULL;
	o.ro_binds = ro;
	o.n_ro_binds = nro;
	o.argv = (const char *const *)argv + i;
	o.cancel_fd = cancel_fd;

	struct swerve_sandbox *sb = ctx;
	struct swerve_sandbox_result r;
	memset(&r, 0, sizeof(r));
	int rc = ctx ? 0 : swerve_sandbox_new(&sb, NULL);
	if (rc < 0) {
		r.verdict = SWERVE_VERDICT_XX;
		r.exit_code = -1;
		snprintf(r.reason, sizeof(r.reason), "%s", swerve_error_last());
	} else {
		rc = swerve_sandbox_run(&r, sb, &o);
	}
	if (json) {
		if (print_json(&r) < 0)
			fprintf(stderr, "swerve exec: cannot encode JSON\n");
	} else {
		if (r.out.data)
			fwrite(r.out.data, 1, r.out.len, stdout);
		if (r.err.data)
			fwrite(r.err.data, 1, r.err.len, stderr);
		fflush(stdout);
		if (r.verdict == SWERVE_VERDICT_XX)
			fprintf(stderr, "swerve exec: %s: XX %s\n", o.argv[0], r.reason);
		else
			fprintf(stderr,
			        "swerve exec: %s exit=%d signal=%d%s%s%s%s wall=%.1fms cpu=%.1fms "
			        "rss=%" PRIu64 "kB%s%s\n",
			        swerve_verdict_name(r.verdict), r.exit_code, r.signal,
			        r.syscall[0] ? " syscall=" : "", r.syscall,
			        r.reason[0] ? " reason=" : "", r.reason, r.wall_us / 1000.0,
			        r.cpu_us / 1000.0, r.max_rss_kb,
			        r.out.truncated ? " stdout-truncated" : "",
			        r.err.truncated ? " stderr-truncated" : "");
	}
	code = rc < 0 ? SWERVE_EXIT_INFRA
	              : (r.verdict == SWERVE_VERDICT_OK ? SWERVE_EXIT_OK : SWERVE_EXIT_SOME_FAILED);
	swerve_sandbox_result_dispose(&r);
	if (!ctx)
		swerve_sandbox_free(sb);
out:
	for (size_t k = 0; k < nro; k++)
		free(ro_copy[k]);
	return code;
#undef FAIL
}
