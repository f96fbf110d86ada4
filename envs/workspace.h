/* workspace.h - episode workspaces and applying patches in them.
 *
 * An episode workspace is what one episode may change: by default an overlay
 * whose lower layers are the pristine tree of (repo, commit) [and its
 * environment layer] and whose upper layer is a per-episode scratch
 * directory. Making one is O(1) in the size of the repository (two mkdirs);
 * the overlay itself is mounted by the sandbox inside each run's own mount
 * namespace, so every run of the episode sees the same merged tree at
 * /workspace and the host never has a mount to clean up. Where overlayfs
 * cannot be mounted in a user namespace, the workspace is a copy of the tree
 * (mode "copy"); the mode is reported in ws->mode.
 *
 * Patches are applied INSIDE the episode's sandbox (model patches are
 * model-controlled input: they never run with more privilege than the tests
 * do): libgit2 through the sandbox's in-process entry point, GNU patch as a
 * sandboxed command, with the workspace reset between tries.
 *
 * Layout of one workspace (under <cache>/work/ unless opts say otherwise):
 *   <root>/upper, <root>/work     overlay mode
 *   <root>/tree                   copy mode
 *   <root>/in                     inputs (patch files), bound read-only at /swerve/in */
#ifndef SWERVE_ENVS_WORKSPACE_H
#define SWERVE_ENVS_WORKSPACE_H

#include "envs/layer.h"
#include "envs/patch.h"
#include "envs/repo.h"
#include "sandbox/sandbox.h"

enum swerve_ws_mode {
	SWERVE_WS_AUTO = 0, /* request: overlay where the host supports it, else copy */
	SWERVE_WS_OVERLAY,
	SWERVE_WS_COPY,
};

/* "overlay", "copy", "auto". */
const char *swerve_ws_mode_name(enum swerve_ws_mode m);

#define SWERVE_WS_OPTS_VERSION 1

struct swerve_ws_opts {
	unsigned int version;             /* SWERVE_WS_OPTS_VERSION */
	enum swerve_ws_mode mode;         /* default AUTO */
	const struct swerve_layer *layer; /* environment layer on top of the tree, or NULL */
	const char *scratch_root;         /* where episode directories go; default <cache>/work */
};

#define SWERVE_WS_OPTS_INIT                                                                        \
	{                                                                                          \
		.version = SWERVE_WS_OPTS_VERSION                                                  \
	}

/* Mount points inside the sandbox. */
#define SWERVE_WS_MOUNT    "/workspace"
#define SWERVE_WS_IN_MOUNT "/swerve/in"

struct swerve_workspace {
	enum swerve_ws_mode mode; /* OVERLAY or COPY: what this workspace is */
	char commit[41];          /* the resolved base commit */
	char *root;               /* per-episode directory on the host */
	char *pristine;           /* the pristine tree (shared, read-only) */
	char *git_dir;            /* the bare mirror (read-only) */
	/* overlay: lower layers, top first, NULL-terminated */
	const char *lower[3];
	char *upper, *work; /* overlay mode */
	char *tree;         /* copy mode: the read-write tree */
	char *in;           /* inputs directory (host side) */
	char *layer_dir;    /* the layer's directory (overlay upper or full tree), or NULL */
	int layer_full;     /* the layer is a full tree, not an overlay upper */
	struct swerve_sandbox_bind binds[1]; /* internal: the inputs dir (GNU patch step) */
};

/* Creates the workspace of one episode on (name, commit): resolves the
 * commit, gets its pristine tree (checking it out once, see repo.h), and
 * makes the per-episode directories (copy mode: copies the tree). */
int swerve_workspace_new(struct swerve_workspace **out, struct swerve_repo_cache *cache,
                         const char *name, const char *commit, const struct swerve_ws_opts *opts);

/* Removes the per-episode directories; the pristine tree and layer stay. */
void swerve_workspace_free(struct swerve_workspace *ws);

/* Discards every change made in the workspace (back to pristine [+ layer]). */
int swerve_workspace_reset(struct swerve_workspace *ws);

/* Points opts at the workspace: overlay (lower/upper/work) or the copied
 * tree, mounted at /workspace. The strings are borrowed from ws; no other
 * field of opts is touched (ro_binds stay the caller's). On purpose the
 * repository mirror is NOT visible to runs made with these options: it
 * holds the commits after the base (the fix), which a model's code under
 * test must not read. No sandbox run binds it: the base versions of the
 * test files are read from it on the host (swerve_patch_restore_collect)
 * and written into the workspace by the in-sandbox step. */
void swerve_workspace_sandbox_opts(const struct swerve_workspace *ws,
                                   struct swerve_sandbox_opts *opts);

/* Applies a model patch in the workspace, inside the sandbox sb: static
 * checks, then libgit2 (method git_apply, or already_applied); when libgit2
 * refuses and opts allow it, resets the workspace and tries GNU patch
 * (`patch --batch --forward --fuzz=5 -p1`, method patch_fuzz); when that
 * fails too, resets the workspace again. A refusal is a result (returns 0,
 * out->applied = 0, out->reason "patch did not apply: ..."); < 0 means the
 * sandbox or the host failed (infrastructure). */
int swerve_workspace_apply_patch(struct swerve_patch_outcome *out, struct swerve_workspace *ws,
                                 struct swerve_sandbox *sb, const char *patch, size_t len,
                                 const struct swerve_patch_opts *opts);

/* Both steps of an episode in ONE sandbox run where possible: applies the
 * model patch as swerve_workspace_apply_patch does (out); when it applied,
 * restores every file test_patch touches to the base version and applies
 * test_patch (tout), as swerve_workspace_apply_test_patch does. The GNU
 * patch fallback, when needed, costs its own runs. tout is zeroed (applied
 * 0, reason "") when the model patch did not apply; a test_patch that cannot
 * be parsed is refused in tout, and the model patch is still tried alone.
 * < 0: infrastructure. */
int swerve_workspace_apply_patches(struct swerve_patch_outcome *out,
                                   struct swerve_patch_outcome *tout, struct swerve_workspace *ws,
                                   struct swerve_sandbox *sb, const char *patch, size_t len,
                                   const char *test_patch, size_t tlen,
                                   const struct swerve_patch_opts *opts);

/* The fastest path of an episode: the model patch, the test files and the
 * test_patch applied, then the test command exec'd, all in ONE sandbox start
 * (sandbox fn-then-argv). Usage:
 *   step_new    host-side checks and restore collection; a patch refused by
 *               the checks lands in pout (*out NULL), a refused test_patch
 *               in tout (*out NULL);
 *   step_opts   sets o->fn / o->fn_arg; the caller sets argv (the tests),
 *               env, limits, binds and calls swerve_sandbox_run;
 *   step_result decodes pout / tout from the run's stdout; *tests_at is the
 *               offset in r->out.data where the tests' own output starts
 *               (0: the tests did not run) and *marker_ns the CLOCK_MONOTONIC
 *               time the tests started. When libgit2 refused the patch, the
 *               caller falls back to swerve_workspace_apply_patches (GNU
 *               patch) after swerve_workspace_reset. */
struct swerve_ws_patch_step;
int swerve_workspace_patch_step_new(struct swerve_ws_patch_step **out,
                                    struct swerve_patch_outcome *pout,
                                    struct swerve_patch_outcome *tout, struct swerve_workspace *ws,
                                    const char *patch, size_t len, const char *test_patch,
                                    size_t tlen, const struct swerve_patch_opts *opts);
void swerve_workspace_patch_step_opts(struct swerve_ws_patch_step *st,
                                      struct swerve_sandbox_opts *o);
int swerve_workspace_patch_step_result(struct swerve_patch_outcome *pout,
                                       struct swerve_patch_outcome *tout, size_t *tests_at,
                                       uint64_t *marker_ns, const struct swerve_ws_patch_step *st,
                                       const struct swerve_workspace *ws,
                                       const struct swerve_sandbox_result *r);
void swerve_workspace_patch_step_free(struct swerve_ws_patch_step *st);

/* Restores every file test_patch touches to the base commit's version, then
 * applies test_patch with libgit2, inside the sandbox. A test_patch that does
 * not apply is reported in out (for the caller it is a task error, not the
 * model's fault). */
int swerve_workspace_apply_test_patch(struct swerve_patch_outcome *out, struct swerve_workspace *ws,
                                      struct swerve_sandbox *sb, const char *test_patch,
                                      size_t len);

#endif
