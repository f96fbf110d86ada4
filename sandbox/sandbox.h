/* sandbox.h - run one command (or one in-process function) in full isolation
 * and report a precise verdict with accounting. The public API of sandbox/.
 *
 * Mechanism, not policy: the caller says what to run, which host paths are
 * visible (read-only toolchain binds, a read-write workspace or an overlay of
 * read-only layers), and the limits; the sandbox builds the isolation recipe
 * of DESIGN.md ("Sandbox recipe") around it: user, mount, pid, net, ipc, uts
 * and cgroup namespaces; a new tmpfs root with read-only nosuid binds and
 * pivot_root; loopback-only network; rlimits; all fds but 0-2 closed; setsid;
 * parent-death signal; every capability dropped; no_new_privs; a seccomp
 * filter installed last. At the deadline the pid namespace's init is killed,
 * which kills every descendant.
 *
 * Typical use (one context per worker, reused for millions of runs):
 *
 *     struct swerve_sandbox *sb;
 *     if (swerve_sandbox_new(&sb, NULL) < 0) die(swerve_error_last());
 *     struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
 *     const char *argv[] = {"python3", "-m", "pytest", "-rA", NULL};
 *     o.argv = argv; o.workspace = "/srv/ws/ep42"; o.limits.wall_ms = 60000;
 *     struct swerve_sandbox_result r;
 *     int rc = swerve_sandbox_run(&r, sb, &o);   // rc < 0 <=> r.verdict XX
 *     ... r.verdict, r.out.data ...
 *     swerve_sandbox_result_dispose(&r);
 *     swerve_sandbox_free(sb);
 *
 * Threads: a context is used by one thread at a time; different contexts may
 * run concurrently in different threads. */
#ifndef SWERVE_SANDBOX_H
#define SWERVE_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include "sandbox/error.h"

/* ---- verdicts ---------------------------------------------------------- */

enum swerve_verdict {
	SWERVE_VERDICT_OK = 0, /* exited 0 */
	SWERVE_VERDICT_RE,     /* exited non-zero (runtime error / failing tests) */
	SWERVE_VERDICT_SG,     /* killed by a signal (not ours) */
	SWERVE_VERDICT_TO,     /* wall-clock deadline (or CPU-time backstop) passed */
	SWERVE_VERDICT_ML,     /* memory limit reached */
	SWERVE_VERDICT_OL,     /* output past the hard output cap */
	SWERVE_VERDICT_SV,     /* seccomp violation: a forbidden syscall; see .syscall */
	SWERVE_VERDICT_XX,     /* sandbox failure (infrastructure): see .reason */
};

/* "OK", "RE", ... ; never NULL ("??" for an unknown value). */
const char *swerve_verdict_name(enum swerve_verdict v);

/* ---- host probe -------------------------------------------------------- */

struct swerve_sandbox_probe {
	int userns;             /* unprivileged-style user namespaces work */
	int overlay_userns;     /* overlayfs can be mounted inside a user namespace */
	int cgroup2;            /* a delegated (writable) cgroup v2 subtree exists */
	int seccomp;            /* seccomp filters (and user notification) work */
	char cgroup2_path[256]; /* the delegated directory, when cgroup2 */
	/* One line per missing feature, naming the setting to change, e.g.
	 * "user namespaces: disabled (sysctl user.max_user_namespaces=0; set it > 0)".
	 * Empty when everything works. */
	char why[1024];
};

/* Probes the host once (cached after the first call; thread-safe). Fills *out
 * and returns 0; never fails (a missing feature is reported in out->why). */
int swerve_sandbox_probe(struct swerve_sandbox_probe *out);

/* ---- options ----------------------------------------------------------- */

#define SWERVE_SANDBOX_OPTS_VERSION 1

/* A read-only bind: host path src appears at dst inside (dst NULL: same path). */
struct swerve_sandbox_bind {
	const char *src;
	const char *dst;
};

/* Limits; 0 means "the default" for each field (see SWERVE_SANDBOX_OPTS_INIT
 * for the values). A limit of UINT64_MAX means none. */
struct swerve_sandbox_limits {
	uint64_t wall_ms;      /* wall-clock deadline (TO), sub-second resolution; default 60 s */
	uint64_t cpu_s;        /* RLIMIT_CPU backstop (TO when hit); default wall_ms/1000 + 1 */
	uint64_t fsize_bytes;  /* RLIMIT_FSIZE: largest file a process may write; default 1 GiB */
	uint64_t nofile;       /* RLIMIT_NOFILE; default 4096 */
	uint64_t nproc;        /* process cap, default 512: the sandbox's pid namespace gets
	                        * pid_max = nproc + 300 (Linux >= 6.14), i.e. between nproc and
	                        * nproc + 300 tasks alive; also RLIMIT_NPROC (which binds only a
	                        * non-root worker's uid) */
	uint64_t memory_bytes; /* anonymous resident memory of the sandbox's processes, sampled
	                        * every 10 ms by the supervisor (ML); default 4 GiB */
	uint64_t output_bytes; /* captured bytes kept per stream (head + tail); default 1 MiB */
	uint64_t output_kill_bytes; /* total stdout+stderr past which the run is killed (OL);
	                             * default 64 MiB */
};

struct swerve_sandbox_opts {
	unsigned int version; /* SWERVE_SANDBOX_OPTS_VERSION */

	/* What to run: argv, fn, or both.
	 * argv: NULL-terminated; argv[0] is a path inside the sandbox, or a name
	 *   looked up in the sandbox's PATH.
	 * fn: called in the isolated child after ALL containment, seccomp
	 *   included; its return value is the exit code. The child is a clone(2)
	 *   copy of the caller (fork semantics: it sees a copy of the caller's
	 *   memory, and no atfork handlers run), so call this from a process
	 *   whose other threads hold no locks fn needs (e.g. malloc's) - a
	 *   single-threaded worker, or a worker process.
	 * both: fn runs first; when it returns 0, argv is exec'd in the same
	 *   process (same containment, the scrubbed environment); otherwise its
	 *   return value is the exit code. (Used to apply patches and run the
	 *   tests in one sandbox start.) An exec that fails then is exit status
	 *   127 with a line on stderr, not XX: fn never holds the error channel. */
	const char *const *argv;
	int (*fn)(void *arg);
	void *fn_arg;

	/* Environment: NULL-terminated "NAME=value" list. Nothing from the
	 * caller's environment leaks in; PATH, HOME, LANG get defaults
	 * (PATH=/usr/local/bin:/usr/bin:/bin, HOME=/tmp, LANG=C.UTF-8) unless
	 * given here. */
	const char *const *env;

	/* Working directory inside the sandbox; default: the workspace mount
	 * point when there is a workspace, else "/". */
	const char *cwd;

	/* The episode workspace, mounted read-write at workspace_mount. Either
	 * (a) workspace: a host directory bound read-write, or
	 * (b) an overlay: workspace_lower (NULL-terminated read-only host dirs,
	 *     top first, e.g. {env_layer, pristine_tree, NULL}), workspace_upper
	 *     and workspace_work (host dirs on one filesystem, empty at first).
	 *     The overlay is mounted inside the sandbox's own mount namespace:
	 *     O(1) in the tree's size, the lower dirs are never modified, and the
	 *     upper dir keeps the run's changes on the host afterwards (so a
	 *     patch applied by one run is seen by the next run given the same
	 *     upper). Fails with XX (SWERVE_EUNSUPPORTED) where overlay-in-userns
	 *     is missing (see swerve_sandbox_probe).
	 * Neither: no workspace. */
	const char *workspace;
	const char *const *workspace_lower;
	const char *workspace_upper;
	const char *workspace_work;
	const char *workspace_mount; /* default "/workspace" */

	/* Extra read-only binds (toolchains, a virtualenv), added to the default
	 * toolchain (/usr and its /bin /lib* /sbin links, selected /etc files). */
	const struct swerve_sandbox_bind *ro_binds;
	size_t n_ro_binds;

	/* Sizes of the private tmpfs /tmp and /dev/shm; default 512 MiB / 64 MiB. */
	uint64_t tmp_bytes;
	uint64_t shm_bytes;

	struct swerve_sandbox_limits limits;

	/* Network: 0 (default) = a private network namespace with only loopback
	 * up. There is no other mode: nothing inside can reach the host's
	 * network or its loopback. */
	int network;

	/* Hostname inside (default "sandbox"). */
	const char *hostname;

	/* A descriptor of the caller's that cancels the run when it becomes
	 * readable or hangs up (e.g. the connection of a client that went
	 * away): the whole tree is killed and the run returns XX ("cancelled",
	 * SWERVE_ERROR), never a model verdict. 0 (the default) = none, so
	 * stdin cannot serve. */
	int cancel_fd;
};

#define SWERVE_SANDBOX_OPTS_INIT                                                                   \
	{                                                                                          \
		.version = SWERVE_SANDBOX_OPTS_VERSION                                             \
	}

/* ---- result ------------------------------------------------------------ */

/* Captured output of one stream. data is NUL-terminated; when the stream
 * was longer than limits.output_bytes, data keeps the first half and the last
 * half of the budget joined by a line "\n[... swerve: N bytes omitted ...]\n",
 * and truncated is 1. total counts every byte the stream produced (up to the
 * kill). */
struct swerve_sandbox_output {
	char *data;
	size_t len;
	uint64_t total;
	int truncated;
};

struct swerve_sandbox_result {
	enum swerve_verdict verdict;
	int exit_code;       /* exit status when the command exited; -1 otherwise */
	int signal;          /* terminating signal (SG, SV, TO kill ...), else 0 */
	char syscall[32];    /* SV: the forbidden syscall's name ("kexec_load") */
	char reason[512];    /* XX: one line naming the cause (same as swerve_error_last());
	                      * other verdicts: a short note ("wall-clock limit 2000 ms") or "" */
	uint64_t wall_us;    /* from clone to the last process gone */
	uint64_t cpu_us;     /* user + system CPU of every process in the sandbox */
	uint64_t max_rss_kb; /* largest resident set of any one process (getrusage) */
	struct swerve_sandbox_output out, err;
	int used_overlay; /* the workspace was an overlay */
};

/* Frees the captured output; safe on a zeroed or already disposed result. */
void swerve_sandbox_result_dispose(struct swerve_sandbox_result *r);

/* ---- the per-worker context -------------------------------------------- */

struct swerve_sandbox;

/* Creates a context that holds what is built once per worker: the compiled
 * seccomp program (exported BPF, loaded by each child without allocating)
 * and, for a root worker from its second run on, a holder process (a child
 * of the caller, killed by swerve_sandbox_free) that keeps the template root
 * and the user/net/uts namespaces every run joins (README "Isolation").
 * SWERVE_SANDBOX_SLOW=1 in the environment disables the holder. The caller
 * must not reap children it did not create (no waitpid(-1)). config is
 * reserved for future options (pass NULL). Returns 0, or
 * SWERVE_EUNSUPPORTED (with the setting to change in the message) where user
 * namespaces or seccomp are known to be missing, or -1. */
int swerve_sandbox_new(struct swerve_sandbox **out, const void *config);

void swerve_sandbox_free(struct swerve_sandbox *sb);

/* Starts the next run's sandbox now, while the caller has nothing else to
 * do (a server between requests): a sandbox with the mounts, working
 * directory and hostname of the context's last run, its command stopped
 * right after the seccomp filter (every containment step done but the
 * limits). The next swerve_sandbox_run() with an argv (no fn) and the same
 * mounts, working directory and hostname starts from it (it then only sets
 * the limits and execs: timing.prepared = 1); any other run discards it.
 * Only on the fast path with the shared-memory start (a root worker, after
 * a run); elsewhere a no-op. Call it from the thread that will call
 * swerve_sandbox_run (the sandbox's init shares that thread's TLS). 0 (ready,
 * or nothing to do), or negative with a message (the next run then starts
 * afresh). */
int swerve_sandbox_prepare(struct swerve_sandbox *sb);

/* Puts a fresh context on its fast path now (a root worker's holder starts
 * at the second run): runs /bin/true until the holder is up, at most twice.
 * For servers and tests that want their first real run warm. 0, or the
 * failed run's negative code (message set). */
int swerve_sandbox_warm(struct swerve_sandbox *sb);

/* Runs opts in a fresh sandbox and waits for it (never longer than the
 * wall-clock limit plus a few milliseconds to reap).
 *
 * Returns 0 when the command ran: result->verdict is then one of OK, RE, SG,
 * TO, ML, OL, SV - the model's outcome, never an infrastructure fault.
 * Returns a negative SWERVE_E* code when the sandbox could not run the
 * command (bad options: SWERVE_EINVAL; missing program, workspace or bind
 * source: SWERVE_ENOTFOUND; host without user namespaces / overlay:
 * SWERVE_EUNSUPPORTED; anything else: -1): result->verdict is then XX and
 * result->reason is the one-line message (also in swerve_error_last()).
 * So: verdict == XX  <=>  return value < 0. result is always filled and
 * must be disposed. */
int swerve_sandbox_run(struct swerve_sandbox_result *result, struct swerve_sandbox *sb,
                       const struct swerve_sandbox_opts *opts);

/* Timing of each step of the last run on this context, in microseconds from
 * the start of swerve_sandbox_run (for benchmarks; 0 = step not reached). */
struct swerve_sandbox_timing {
	uint64_t clone_us;   /* clone(2) returned in the parent */
	uint64_t maps_us;    /* uid/gid maps written, child released (slow path) */
	uint64_t mounts_us;  /* child: new root built (incl. workspace) */
	uint64_t pivot_us;   /* child: pivot_root done, old root detached */
	uint64_t seccomp_us; /* child: all containment done, seccomp loaded */
	uint64_t exec_us;    /* the command exec'd (shared-memory start: init said
	                      * so; otherwise = seccomp_us) */
	uint64_t wait_us;    /* parent: everything reaped */
	int prepared;        /* the run started from swerve_sandbox_prepare's sandbox
	                      * (the steps before exec_us were done then: 0 here) */
};

void swerve_sandbox_last_timing(const struct swerve_sandbox *sb, struct swerve_sandbox_timing *out);

/* The seccomp policy, for docs and tests: one row per rule. */
enum swerve_seccomp_action {
	SWERVE_SECCOMP_ERRNO, /* fail with .err, the process continues */
	SWERVE_SECCOMP_KILL,  /* kill the sandbox, verdict SV naming the syscall */
};

struct swerve_seccomp_rule {
	const char *syscall;
	enum swerve_seccomp_action action;
	int err;            /* errno for SWERVE_SECCOMP_ERRNO */
	const char *reason; /* one line: why */
};

/* The policy table (static storage) and its length. Rules with argument
 * conditions (clone flags, socket families, ioctl TIOCSTI) are listed with a
 * note in .reason. */
const struct swerve_seccomp_rule *swerve_seccomp_policy(size_t *n);

#endif
