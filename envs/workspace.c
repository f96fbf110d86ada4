/* workspace.c - episode workspaces (overlay, or copy where overlay is
 * missing) and patch application inside the episode's sandbox.
 *
 * Does: make/reset/remove the per-episode directories; fill sandbox options;
 * run libgit2 patch application in the sandbox (in-process entry point) and
 * GNU patch as a sandboxed command.
 * Does not: mount anything on the host (the sandbox mounts the overlay in its
 * own mount namespace), or run tests (the pipeline does).
 *
 * Result channel of the in-sandbox step: one line on stdout,
 *   "A <method>"   applied        "R <reason>"   refused (a model result)
 *   "E <message>"  infrastructure error inside the sandbox */
#include "workspace.h"

#include "fstree.h"
#include "sandbox/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *swerve_ws_mode_name(enum swerve_ws_mode m)
{
	switch (m) {
	case SWERVE_WS_OVERLAY: return "overlay";
	case SWERVE_WS_COPY: return "copy";
	default: return "auto";
	}
}

void swerve_workspace_free(struct swerve_workspace *ws)
{
	if (!ws)
		return;
	if (ws->root)
		swerve_fs_rmtree(ws->root);
	free(ws->root);
	free(ws->pristine);
	free(ws->git_dir);
	free(ws->upper);
	free(ws->work);
	free(ws->tree);
	free(ws->in);
	free(ws->layer_dir);
	free(ws);
}

/* Copy mode: the tree is pristine [+ layer], copied. */
static int fill_copy(struct swerve_workspace *ws)
{
	int rc;
	if (ws->layer_dir && ws->layer_full)
		return swerve_fs_copytree(ws->layer_dir, ws->tree);
	if ((rc = swerve_fs_copytree(ws->pristine, ws->tree)) < 0)
		return rc;
	if (ws->layer_dir)
		return swerve_fs_overlay_merge(ws->layer_dir, ws->tree);
	return 0;
}

static int make_dirs(struct swerve_workspace *ws)
{
	if (ws->mode == SWERVE_WS_COPY)
		return fill_copy(ws);
	if (mkdir(ws->upper, 0755) < 0 || mkdir(ws->work, 0755) < 0)
		return swerve_error_set(SWERVE_EIO, "workspace %s: mkdir: %s", ws->root,
		                        strerror(errno));
	return 0;
}

int swerve_workspace_new(struct swerve_workspace **out, struct swerve_repo_cache *cache,
                         const char *name, const char *commit, const struct swerve_ws_opts *opts)
{
	struct swerve_ws_opts def = SWERVE_WS_OPTS_INIT;
	struct swerve_workspace *ws;
	char *base = NULL;
	int rc;

	if (!opts)
		opts = &def;
	if (!(ws = calloc(1, sizeof(*ws))))
		return swerve_error_set(SWERVE_ENOMEM, "workspace: out of memory");
	if ((rc = swerve_repo_resolve(ws->commit, cache, name, commit)) < 0 ||
	    (rc = swerve_repo_pristine(&ws->pristine, NULL, cache, name, ws->commit)) < 0 ||
	    (rc = swerve_repo_git_dir(&ws->git_dir, cache, name)) < 0)
		goto fail;
	ws->mode = opts->mode;
	if (ws->mode == SWERVE_WS_AUTO) {
		struct swerve_sandbox_probe p;
		swerve_sandbox_probe(&p);
		ws->mode = p.overlay_userns ? SWERVE_WS_OVERLAY : SWERVE_WS_COPY;
	}
	if (opts->layer && opts->layer->dir) {
		ws->layer_dir = strdup(opts->layer->dir);
		ws->layer_full = opts->layer->full;
	}
	if (opts->scratch_root)
		base = strdup(opts->scratch_root);
	else if (asprintf(&base, "%s/work", swerve_repo_cache_home(cache)) < 0)
		base = NULL;
	char *root = NULL;
	if (base && asprintf(&root, "%s/ep-XXXXXX", base) < 0)
		root = NULL;
	if (!base || !root || (rc = swerve_fs_mkdirs(base, 0755)) < 0 || !mkdtemp(root)) {
		rc = swerve_error_set(SWERVE_EIO, "workspace in %s: %s", base ? base : "?",
		                      strerror(errno));
		free(root); /* not created: nothing to remove */
		goto fail;
	}
	ws->root = root;
	if (asprintf(&ws->in, "%s/in", ws->root) < 0 ||
	    asprintf(&ws->upper, "%s/upper", ws->root) < 0 ||
	    asprintf(&ws->work, "%s/work", ws->root) < 0 ||
	    asprintf(&ws->tree, "%s/tree", ws->root) < 0) {
		rc = swerve_error_set(SWERVE_ENOMEM, "workspace: out of memory");
		goto fail;
	}
	if (mkdir(ws->in, 0755) < 0) {
		rc = swerve_error_set(SWERVE_EIO, "workspace %s: %s", ws->in, strerror(errno));
		goto fail;
	}
	if ((rc = make_dirs(ws)) < 0)
		goto fail;
	if (ws->layer_dir && ws->layer_full) {
		ws->lower[0] = ws->layer_dir;
	} else if (ws->layer_dir) {
		ws->lower[0] = ws->layer_dir;
		ws->lower[1] = ws->pristine;
	} else {
		ws->lower[0] = ws->pristine;
	}
	ws->binds[0].src = ws->in;
	ws->binds[0].dst = SWERVE_WS_IN_MOUNT;
	free(base);
	*out = ws;
	return 0;
fail:
	free(base);
	rc = swerve_error_wrap("workspace %s@%s", name, commit);
	swerve_workspace_free(ws);
	return rc;
}

int swerve_workspace_reset(struct swerve_workspace *ws)
{
	int rc;
	if (ws->mode == SWERVE_WS_COPY)
		rc = swerve_fs_rmtree(ws->tree);
	else if ((rc = swerve_fs_rmtree(ws->upper)) == 0)
		rc = swerve_fs_rmtree(ws->work);
	if (rc == 0)
		rc = make_dirs(ws);
	return rc < 0 ? swerve_error_wrap("workspace reset %s", ws->root) : 0;
}

void swerve_workspace_sandbox_opts(const struct swerve_workspace *ws,
                                   struct swerve_sandbox_opts *opts)
{
	if (ws->mode == SWERVE_WS_COPY) {
		opts->workspace = ws->tree;
		opts->workspace_lower = NULL;
		opts->workspace_upper = opts->workspace_work = NULL;
	} else {
		opts->workspace = NULL;
		opts->workspace_lower = ws->lower;
		opts->workspace_upper = ws->upper;
		opts->workspace_work = ws->work;
	}
	opts->workspace_mount = SWERVE_WS_MOUNT;
}

/* ---- patch application in the sandbox ------------------------------------- */

/* What the in-sandbox step does: apply the model's patch (if any) and, if
 * that applied, restore the test files from the host-read base versions and
 * apply the test_patch (if any). One sandbox start for both. */
struct apply_job {
	const char *patch; /* the model's patch, or NULL */
	size_t len;
	const struct swerve_patch_opts *opts;
	const char *test_patch; /* or NULL */
	size_t tlen;
	const struct swerve_restore_set *restore;
	int then_tests; /* print the marker and let the sandbox exec the tests */
};

/* The line the in-sandbox step prints before it execs the test command:
 * what precedes it is ours, what follows is the tests' (a model cannot
 * forge it: nothing of the model's runs before it is printed). */
#define TESTS_MARKER "\036swerve: tests start "

static void put_line(char tag, const char *text)
{
	char line[700];
	int n = snprintf(line, sizeof(line), "%c %s\n", tag, text);
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (write(1, line, (size_t)n) < 0)
		_exit(3);
}

static void put_outcome(int rc, const struct swerve_patch_outcome *o)
{
	if (rc < 0)
		put_line('E', swerve_error_last());
	else if (o->applied)
		put_line('A', swerve_patch_method_name(o->method));
	else
		put_line('R', o->reason);
}

/* Runs in the sandboxed child (after seccomp). */
static int apply_in_sandbox(void *arg)
{
	const struct apply_job *job = arg;
	struct swerve_patch_outcome o;
	int rc;

	if (job->patch) {
		rc = swerve_patch_apply_dir(&o, SWERVE_WS_MOUNT, job->patch, job->len, "/tmp",
		                            job->opts);
		put_outcome(rc, &o);
		if (rc < 0 || !o.applied)
			return job->then_tests ? 1 : 0;
	}
	if (job->test_patch) {
		rc = swerve_patch_restore_write(&o, SWERVE_WS_MOUNT, job->restore, job->test_patch,
		                                job->tlen, "/tmp");
		put_outcome(rc, &o);
		if (rc < 0 || !o.applied)
			return job->then_tests ? 1 : 0;
	}
	if (job->then_tests) {
		struct timespec ts;
		char line[96];
		clock_gettime(CLOCK_MONOTONIC, &ts);
		int n = snprintf(line, sizeof(line), TESTS_MARKER "%lld\n",
		                 (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec);
		if (write(1, line, (size_t)n) != n)
			_exit(3);
	}
	return 0;
}

static uint64_t wall_of(const struct swerve_patch_opts *opts)
{
	return opts && opts->wall_ms ? opts->wall_ms : 60000;
}

/* Decodes one result line of the in-sandbox step into out; a missing line
 * (the step crashed, hung or blew a limit) is a refusal naming the verdict.
 * < 0 for an infrastructure error reported from inside. */
static int decode_line(struct swerve_patch_outcome *out, const char *line, size_t n,
                       const struct swerve_sandbox_result *r, const char *root)
{
	if (!line || n < 2 || line[1] != ' ') {
		snprintf(out->reason, sizeof(out->reason),
		         "patch did not apply: libgit2 step ended %s (exit %d) %.200s",
		         swerve_verdict_name(r->verdict), r->exit_code, r->reason);
		out->applied = 0;
		out->method = SWERVE_PATCH_NOT_APPLIED;
		return 0;
	}
	if (line[0] == 'A') {
		out->applied = 1;
		out->method = strncmp(line + 2, "already_applied", 15) == 0
		                      ? SWERVE_PATCH_ALREADY_APPLIED
		                      : SWERVE_PATCH_GIT_APPLY;
		out->reason[0] = '\0';
		return 0;
	}
	if (line[0] == 'R') {
		out->applied = 0;
		out->method = SWERVE_PATCH_NOT_APPLIED;
		snprintf(out->reason, sizeof(out->reason), "%.*s", (int)(n - 2), line + 2);
		return 0;
	}
	return swerve_error_set(SWERVE_ERROR, "apply patch in %s: %.*s", root, (int)(n - 2),
	                        line + 2);
}

/* Runs the libgit2 step in the sandbox: out gets the model patch's outcome
 * (when job->patch), tout the test_patch's (when job->test_patch and the
 * model patch applied). The bare mirror is never visible in it. */
static int run_apply(struct swerve_patch_outcome *out, struct swerve_patch_outcome *tout,
                     struct swerve_workspace *ws, struct swerve_sandbox *sb,
                     const struct apply_job *job, uint64_t wall_ms)
{
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_result r;
	int rc;

	swerve_workspace_sandbox_opts(ws, &o);
	o.fn = apply_in_sandbox;
	o.fn_arg = (void *)job;
	o.limits.wall_ms = wall_ms;
	if ((rc = swerve_sandbox_run(&r, sb, &o)) < 0) {
		swerve_sandbox_result_dispose(&r);
		return swerve_error_wrap("apply patch in %s", ws->root);
	}
	const char *line = r.out.data ? r.out.data : "";
	int ok = r.verdict == SWERVE_VERDICT_OK;
	if (job->patch) {
		size_t n = strcspn(line, "\n");
		rc = decode_line(out, ok || line[n] == '\n' ? line : NULL, n, &r, ws->root);
		line += n + (line[n] == '\n');
		if (rc < 0 || !out->applied)
			goto done;
	}
	if (job->test_patch) {
		size_t n = strcspn(line, "\n");
		rc = decode_line(tout, ok || line[n] == '\n' ? line : NULL, n, &r, ws->root);
	}
done:
	swerve_sandbox_result_dispose(&r);
	return rc;
}

/* The last non-empty line of s (for GNU patch's complaint), in buf. */
static void last_line(char *buf, size_t size, const char *s)
{
	const char *end = s + strlen(s), *start;
	while (end > s && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	start = end;
	while (start > s && start[-1] != '\n')
		start--;
	snprintf(buf, size, "%.*s", (int)(end - start), start);
}

static int run_gnu_patch(struct swerve_patch_outcome *out, struct swerve_workspace *ws,
                         struct swerve_sandbox *sb, const char *patch, size_t len, uint64_t wall_ms,
                         const char *git_reason)
{
	static const char *const argv[] = {"patch",
	                                   "--batch",
	                                   "--forward",
	                                   "--fuzz=5",
	                                   "-p1",
	                                   "--no-backup-if-mismatch",
	                                   "--reject-file=-",
	                                   "-i",
	                                   SWERVE_WS_IN_MOUNT "/model.diff",
	                                   NULL};
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_result r;
	char path[4096], tail[300];
	FILE *f;
	int rc;

	snprintf(path, sizeof(path), "%s/model.diff", ws->in);
	/* like swerve_patch_apply_dir, complete a last line cut before its newline */
	if (!(f = fopen(path, "w")) || fwrite(patch, 1, len, f) != len ||
	    (len > 0 && patch[len - 1] != '\n' && fputc('\n', f) == EOF) || fclose(f) != 0)
		return swerve_error_set(SWERVE_EIO, "write %s: %s", path, strerror(errno));
	swerve_workspace_sandbox_opts(ws, &o);
	o.ro_binds = &ws->binds[0]; /* the patch file */
	o.n_ro_binds = 1;
	o.argv = argv;
	o.limits.wall_ms = wall_ms;
	if ((rc = swerve_sandbox_run(&r, sb, &o)) < 0) {
		swerve_sandbox_result_dispose(&r);
		return swerve_error_wrap("GNU patch in %s", ws->root);
	}
	unlink(path);
	if (r.verdict == SWERVE_VERDICT_OK) {
		out->applied = 1;
		out->method = SWERVE_PATCH_FUZZ;
		out->reason[0] = '\0';
	} else {
		last_line(tail, sizeof(tail),
		          r.out.data && r.out.data[0] ? r.out.data
		          : r.err.data                ? r.err.data
		                                      : "");
		snprintf(out->reason, sizeof(out->reason), "%.300s; GNU patch: %s%s%.150s",
		         git_reason,
		         r.verdict == SWERVE_VERDICT_RE ? "" : swerve_verdict_name(r.verdict),
		         r.verdict == SWERVE_VERDICT_RE ? "" : " ", tail);
	}
	swerve_sandbox_result_dispose(&r);
	return 0;
}

int swerve_workspace_apply_patches(struct swerve_patch_outcome *out,
                                   struct swerve_patch_outcome *tout, struct swerve_workspace *ws,
                                   struct swerve_sandbox *sb, const char *patch, size_t len,
                                   const char *test_patch, size_t tlen,
                                   const struct swerve_patch_opts *opts)
{
	struct swerve_restore_set *set = NULL;
	struct apply_job job = {patch, len, opts, NULL, 0, NULL, 0};
	char git_reason[512];
	int rc;

	memset(tout, 0, sizeof(*tout));
	/* text checks in the supervisor: a refused patch never reaches a tool */
	if ((rc = swerve_patch_check(out, patch, len, opts)) < 0 || out->reason[0])
		return rc;
	size_t files = out->files;
	if (test_patch && tlen) {
		rc = swerve_patch_restore_collect(&set, tout, ws->git_dir, ws->commit, test_patch,
		                                  tlen);
		if (rc < 0)
			return rc;
		if (set) {
			job.test_patch = test_patch;
			job.tlen = tlen;
			job.restore = set;
		}
	}
	if ((rc = run_apply(out, tout, ws, sb, &job, wall_of(opts))) < 0)
		goto done;
	out->files = files;
	if (out->applied || (opts && opts->no_fuzz))
		goto done;
	/* libgit2 refused: GNU patch with fuzz on a clean tree, then the test files */
	snprintf(git_reason, sizeof(git_reason), "%s", out->reason);
	if ((rc = swerve_workspace_reset(ws)) < 0)
		goto done;
	if ((rc = run_gnu_patch(out, ws, sb, patch, len, wall_of(opts), git_reason)) < 0)
		goto done;
	if (!out->applied) {
		rc = swerve_workspace_reset(ws);
		goto done;
	}
	if (job.test_patch) {
		struct apply_job tj = {NULL, 0, NULL, test_patch, tlen, set, 0};
		rc = run_apply(NULL, tout, ws, sb, &tj, wall_of(opts));
	}
done:
	swerve_restore_set_free(set);
	return rc;
}

int swerve_workspace_apply_patch(struct swerve_patch_outcome *out, struct swerve_workspace *ws,
                                 struct swerve_sandbox *sb, const char *patch, size_t len,
                                 const struct swerve_patch_opts *opts)
{
	struct swerve_patch_outcome unused;
	return swerve_workspace_apply_patches(out, &unused, ws, sb, patch, len, NULL, 0, opts);
}

int swerve_workspace_apply_test_patch(struct swerve_patch_outcome *out, struct swerve_workspace *ws,
                                      struct swerve_sandbox *sb, const char *test_patch, size_t len)
{
	struct swerve_restore_set *set = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = swerve_patch_restore_collect(&set, out, ws->git_dir, ws->commit, test_patch, len);
	if (rc < 0 || !set)
		return rc;
	struct apply_job job = {NULL, 0, NULL, test_patch, len, set, 0};
	rc = run_apply(NULL, out, ws, sb, &job, 60000);
	swerve_restore_set_free(set);
	return rc;
}

/* ---- patches and tests in one sandbox start ------------------------------------- */

struct swerve_ws_patch_step {
	struct apply_job job;
	struct swerve_restore_set *set;
};

int swerve_workspace_patch_step_new(struct swerve_ws_patch_step **out,
                                    struct swerve_patch_outcome *pout,
                                    struct swerve_patch_outcome *tout, struct swerve_workspace *ws,
                                    const char *patch, size_t len, const char *test_patch,
                                    size_t tlen, const struct swerve_patch_opts *opts)
{
	struct swerve_ws_patch_step *st;
	int rc;

	*out = NULL;
	memset(tout, 0, sizeof(*tout));
	if ((rc = swerve_patch_check(pout, patch, len, opts)) < 0 || pout->reason[0])
		return rc;
	if (!(st = calloc(1, sizeof(*st))))
		return swerve_error_set(SWERVE_ENOMEM, "patch step: out of memory");
	if (test_patch && tlen) {
		rc = swerve_patch_restore_collect(&st->set, tout, ws->git_dir, ws->commit,
		                                  test_patch, tlen);
		if (rc < 0 || !st->set) {
			free(st);
			return rc; /* a refused test_patch stays in tout */
		}
	}
	st->job = (struct apply_job){
	        patch, len, opts, st->set ? test_patch : NULL, st->set ? tlen : 0, st->set, 1};
	*out = st;
	return 0;
}

void swerve_workspace_patch_step_opts(struct swerve_ws_patch_step *st,
                                      struct swerve_sandbox_opts *o)
{
	o->fn = apply_in_sandbox;
	o->fn_arg = &st->job;
}

int swerve_workspace_patch_step_result(struct swerve_patch_outcome *pout,
                                       struct swerve_patch_outcome *tout, size_t *tests_at,
                                       uint64_t *marker_ns, const struct swerve_ws_patch_step *st,
                                       const struct swerve_workspace *ws,
                                       const struct swerve_sandbox_result *r)
{
	const char *data = r->out.data ? r->out.data : "";
	const char *m = strstr(data, TESTS_MARKER);
	int rc;

	*tests_at = 0;
	*marker_ns = 0;
	/* our lines end where the marker starts (or at the end of the output) */
	const char *line = data;
	const char *ours_end = m ? m : data + strlen(data);
	int ok = m != NULL || r->verdict == SWERVE_VERDICT_OK || r->verdict == SWERVE_VERDICT_RE;
	size_t n = strcspn(line, "\n");
	if (line + n > ours_end)
		n = (size_t)(ours_end - line);
	rc = decode_line(pout, ok && line[n] == '\n' ? line : NULL, n, r, ws->root);
	if (rc < 0 || !pout->applied)
		return rc;
	line += n + (line[n] == '\n');
	if (st->job.test_patch) {
		n = strcspn(line, "\n");
		if (line + n > ours_end)
			n = (size_t)(ours_end - line);
		rc = decode_line(tout, ok && line[n] == '\n' ? line : NULL, n, r, ws->root);
		if (rc < 0 || !tout->applied)
			return rc;
	}
	if (m) {
		const char *nl = strchr(m, '\n');
		*marker_ns = strtoull(m + strlen(TESTS_MARKER), NULL, 10);
		*tests_at = (size_t)((nl ? nl + 1 : m + strlen(m)) - data);
	}
	return 0;
}

void swerve_workspace_patch_step_free(struct swerve_ws_patch_step *st)
{
	if (!st)
		return;
	swerve_restore_set_free(st->set);
	free(st);
}
