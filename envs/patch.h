/* patch.h - applying model-written patches (and tasks' test patches) to a
 * work tree, safely, with libgit2 first and GNU patch as the fuzzy fallback.
 *
 * Two layers:
 *  - directory level (swerve_patch_check, swerve_patch_apply_dir,
 *    swerve_patch_restore_dir): pure libgit2 on a directory; this is what
 *    runs INSIDE the episode's sandbox (dir = "/workspace"), and what tests
 *    call on a scratch copy;
 *  - workspace level (swerve_patch_apply_ws, swerve_patch_apply_test_ws in
 *    workspace.h): runs those steps in the sandbox for an episode workspace,
 *    adds the GNU patch fallback and the resets between tries.
 *
 * A patch that cannot be applied is a model result, not an error: the
 * functions return 0 and fill a swerve_patch_outcome with applied = 0 and a
 * reason "patch did not apply: <why>". They return < 0 only for
 * infrastructure faults (I/O, out of memory, sandbox failure).
 *
 * Safety rules for model-controlled patches (checked before anything is
 * written, on the text as libgit2 AND as GNU patch would read it):
 *  - no absolute paths, no '..' component, nothing inside '.git', no control
 *    characters in paths;
 *  - a symbolic link the patch creates must point inside the tree (relative,
 *    never climbing above the root), and no path may go through a link the
 *    patch creates or one that already exists in the tree;
 *  - binary changes must carry their data ("GIT binary patch");
 *  - the patch is at most max_bytes (default 1 MiB). */
#ifndef SWERVE_ENVS_PATCH_H
#define SWERVE_ENVS_PATCH_H

#include <stddef.h>
#include <stdint.h>

#define SWERVE_PATCH_MAX_BYTES_DEFAULT ((size_t)1 << 20)
#define SWERVE_PATCH_OPTS_VERSION      1

struct swerve_patch_opts {
	unsigned int version; /* SWERVE_PATCH_OPTS_VERSION */
	size_t max_bytes;     /* size cap; 0 = SWERVE_PATCH_MAX_BYTES_DEFAULT */
	int no_fuzz;          /* 1: never try GNU patch (workspace level) */
	uint64_t wall_ms;     /* sandbox deadline per step (workspace level); 0 = 60 s */
};

#define SWERVE_PATCH_OPTS_INIT                                                                     \
	{                                                                                          \
		.version = SWERVE_PATCH_OPTS_VERSION                                               \
	}

enum swerve_patch_method {
	SWERVE_PATCH_NOT_APPLIED = 0,
	SWERVE_PATCH_GIT_APPLY,       /* "git_apply": libgit2 applied it exactly */
	SWERVE_PATCH_FUZZ,            /* "patch_fuzz": GNU patch --fuzz=5 applied it */
	SWERVE_PATCH_ALREADY_APPLIED, /* "already_applied": its reverse applies */
};

struct swerve_patch_outcome {
	int applied; /* 1 when method != NOT_APPLIED */
	enum swerve_patch_method method;
	size_t files;     /* files the patch touches */
	char reason[512]; /* "patch did not apply: ..." when not applied */
};

/* "git_apply", "patch_fuzz", "already_applied", "not_applied". */
const char *swerve_patch_method_name(enum swerve_patch_method m);

/* Static checks of patch text (no file system access): size cap, paths,
 * symlink targets, binary data. Sets out->applied = 0 and out->reason when
 * the patch must be refused (returns 0 either way); out->reason is "" when
 * it passed. opts may be NULL. */
int swerve_patch_check(struct swerve_patch_outcome *out, const char *patch, size_t len,
                       const struct swerve_patch_opts *opts);

/* Checks, then applies patch to the files under dir with libgit2 (as
 * `git apply` would, filters and modes included); when that fails, reports
 * ALREADY_APPLIED if the reverse patch applies. A patch whose text ends
 * without a final newline gets one (model output often drops it). Nothing
 * is written when the
 * patch is refused. scratch is a writable directory outside dir for
 * libgit2's temporary index (NULL: $TMPDIR or /tmp). */
int swerve_patch_apply_dir(struct swerve_patch_outcome *out, const char *dir, const char *patch,
                           size_t len, const char *scratch, const struct swerve_patch_opts *opts);

/* Restores every file test_patch touches to its content at commit (read
 * from the bare repository git_dir; a file absent there is removed), then
 * applies test_patch with libgit2. A test_patch that does not apply is
 * reported in out like any patch (the caller decides it is a task error). */
/* The base versions of the files a test_patch touches, read on the host
 * from the bare mirror, so that restoring them in the sandbox needs no view
 * of the mirror (which holds the commits after the base: the fix). */
enum swerve_restore_kind {
	SWERVE_RESTORE_ABSENT = 0, /* not in the base commit: removed */
	SWERVE_RESTORE_FILE,
	SWERVE_RESTORE_EXEC,
	SWERVE_RESTORE_LINK, /* data is the link target */
};
struct swerve_restore_file {
	char *path;
	enum swerve_restore_kind kind;
	char *data; /* NUL-terminated; len bytes */
	size_t len;
};
struct swerve_restore_set {
	struct swerve_restore_file *files;
	size_t n;
	void *diff_; /* private: the parsed test_patch (a git_diff), reused by restore_write */
};

/* Checks test_patch (a refusal lands in po, *out stays NULL) and reads the
 * base version at commit of every path it touches. */
int swerve_patch_restore_collect(struct swerve_restore_set **out, struct swerve_patch_outcome *po,
                                 const char *git_dir, const char *commit, const char *test_patch,
                                 size_t len);
void swerve_restore_set_free(struct swerve_restore_set *set);

/* Writes set's files under dir (removing what the base lacks), then applies
 * test_patch with libgit2; the in-sandbox half of swerve_patch_restore_dir.
 * A set from swerve_patch_restore_collect carries the test_patch already
 * checked and parsed, so it is not parsed a second time. */
int swerve_patch_restore_write(struct swerve_patch_outcome *out, const char *dir,
                               const struct swerve_restore_set *set, const char *test_patch,
                               size_t len, const char *scratch);

int swerve_patch_restore_dir(struct swerve_patch_outcome *out, const char *dir, const char *git_dir,
                             const char *commit, const char *test_patch, size_t len,
                             const char *scratch);

/* The repository-relative paths a patch touches (old and new sides, unique,
 * in patch order), as parsed by libgit2. Caller frees each and the array. */
int swerve_patch_paths(char ***out, size_t *count, const char *patch, size_t len);

#endif
