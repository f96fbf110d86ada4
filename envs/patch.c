/* patch.c - safe patch application on a directory with libgit2.
 *
 * Does: static safety checks of patch text; `git apply` semantics through
 * libgit2 on a plain directory (a throwaway repository object whose work dir
 * is that directory, objects in memory, index in a scratch file); detection
 * of already-applied patches (the reversed patch applies); restoring the
 * files a test patch touches from the cached base commit.
 * Does not: run GNU patch or the sandbox (workspace.c does), or decide what
 * a refused test patch means (the pipeline does).
 *
 * Why paths are checked twice: libgit2 and GNU patch read file names from
 * different header lines, so every header either program could act on is
 * checked on the raw text, and the paths libgit2 parsed are checked again. */
#include "patch.h"

#include "fstree.h"
#include "repo.h"
#include "sandbox/error.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

const char *swerve_patch_method_name(enum swerve_patch_method m)
{
	switch (m) {
	case SWERVE_PATCH_GIT_APPLY: return "git_apply";
	case SWERVE_PATCH_FUZZ: return "patch_fuzz";
	case SWERVE_PATCH_ALREADY_APPLIED: return "already_applied";
	default: return "not_applied";
	}
}

static const char *git_msg(void)
{
	const git_error *e = git_error_last();
	return e && e->message ? e->message : "unknown libgit2 error";
}

/* Marks the outcome refused with a formatted reason; returns 0 (a result). */
__attribute__((format(printf, 2, 3))) static int refuse(struct swerve_patch_outcome *out,
                                                        const char *fmt, ...)
{
	char why[440];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	for (char *p = why; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	out->applied = 0;
	out->method = SWERVE_PATCH_NOT_APPLIED;
	snprintf(out->reason, sizeof(out->reason), "patch did not apply: %s", why);
	return 0;
}

/* ---- static checks ------------------------------------------------------- */

/* NULL if path is safe inside the tree, else why not. */
static const char *path_problem(const char *path, size_t len)
{
	if (len == 0)
		return "empty path";
	if (len > 4096)
		return "path too long";
	if (path[0] == '/')
		return "absolute path";
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
			return "control character in path";
	for (size_t i = 0; i < len;) {
		size_t j = i;
		while (j < len && path[j] != '/')
			j++;
		size_t n = j - i;
		if (n == 2 && memcmp(path + i, "..", 2) == 0)
			return "path with '..'";
		if (n == 4 && strncasecmp(path + i, ".git", 4) == 0)
			return "path inside .git";
		i = j + 1;
	}
	return NULL;
}

/* Checks the target of a link created at `link` (both tree-relative):
 * NULL if it resolves inside the tree, else why not. */
static const char *link_problem(const char *link, const char *target, size_t tlen)
{
	int depth = 0;

	if (tlen == 0)
		return "empty symlink target";
	if (target[0] == '/')
		return "symlink to an absolute path";
	for (const char *p = link; *p; p++)
		if (*p == '/')
			depth++; /* directories above the link inside the tree */
	for (size_t i = 0; i < tlen;) {
		size_t j = i;
		while (j < tlen && target[j] != '/')
			j++;
		size_t n = j - i;
		if (n == 2 && memcmp(target + i, "..", 2) == 0)
			depth--;
		else if (n > 0 && !(n == 1 && target[i] == '.'))
			depth++;
		if (depth < 0)
			return "symlink pointing outside the tree";
		if (n == 4 && strncasecmp(target + i, ".git", 4) == 0)
			return "symlink into .git";
		i = j + 1;
	}
	return NULL;
}

/* The file name GNU patch would take from a "--- name\tdate" style line
 * (after -p1), or from "rename from name" (no strip). */
static void header_name(const char *s, size_t n, int strip, const char **name, size_t *len)
{
	size_t e = 0;

	if (n > 0 && s[0] == '/' && !(n >= 9 && memcmp(s, "/dev/null", 9) == 0))
		strip = 0;          /* keep the leading '/': an absolute name is refused */
	if (n > 0 && s[0] == '"') { /* quoted: check the raw text without the quotes */
		s++;
		n--;
		while (e < n && s[e] != '"')
			e++;
	} else {
		while (e < n && s[e] != '\t')
			e++;
		while (e > 0 && s[e - 1] == ' ')
			e--;
	}
	if (strip) {
		const char *slash = memchr(s, '/', e);
		if (slash && !(e == 9 && memcmp(s, "/dev/null", 9) == 0)) {
			e -= (size_t)(slash + 1 - s);
			s = slash + 1;
		}
	}
	*name = s;
	*len = e;
}

/* Scans the raw text as GNU patch reads it: every header that names a file. */
static int scan_text(struct swerve_patch_outcome *out, const char *p, size_t len)
{
	long old_left = 0, new_left = 0;
	size_t lineno = 0;

	for (size_t i = 0; i < len;) {
		const char *line = p + i, *nl = memchr(line, '\n', len - i);
		size_t n = nl ? (size_t)(nl - line) : len - i;
		i += n + 1;
		lineno++;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (old_left > 0 || new_left > 0) { /* inside a unified hunk body */
			if (n == 0 || line[0] == ' ') {
				old_left--;
				new_left--;
			} else if (line[0] == '-') {
				old_left--;
			} else if (line[0] == '+') {
				new_left--;
			} else if (line[0] != '\\') {
				old_left = new_left = 0; /* malformed count: back to headers */
			}
			continue;
		}
		if (n > 4 && memcmp(line, "@@ -", 4) == 0) {
			/* "@@ -a[,b] +c[,d] @@": b and d default to 1. The buffer is
			 * not NUL-terminated: parse a bounded copy. */
			char h[128], *q;
			long b = 1, d = 1;
			snprintf(h, sizeof(h), "%.*s", (int)(n < sizeof(h) - 1 ? n : sizeof(h) - 1),
			         line);
			strtol(h + 4, &q, 10);
			if (*q == ',')
				b = strtol(q + 1, &q, 10);
			if ((q = strstr(q, " +"))) {
				strtol(q + 2, &q, 10);
				if (*q == ',')
					d = strtol(q + 1, &q, 10);
			}
			old_left = b;
			new_left = d;
			continue;
		}
		static const struct {
			const char *tag;
			int strip;
		} hdr[] = {{"--- ", 1},       {"+++ ", 1},         {"*** ", 1},
		           {"Index: ", 0},    {"rename from ", 0}, {"rename to ", 0},
		           {"copy from ", 0}, {"copy to ", 0}};
		for (size_t h = 0; h < sizeof(hdr) / sizeof(hdr[0]); h++) {
			size_t tl = strlen(hdr[h].tag);
			const char *name, *why;
			size_t nlen;
			if (n < tl || memcmp(line, hdr[h].tag, tl) != 0)
				continue;
			header_name(line + tl, n - tl, hdr[h].strip, &name, &nlen);
			if (nlen == 9 && memcmp(name, "/dev/null", 9) == 0)
				break;
			if (hdr[h].tag[0] == '*' && nlen > 0 &&
			    (name[0] == '*' || isdigit((unsigned char)name[0])))
				break; /* "*** 1,5 ****": a context-diff hunk header */
			if ((why = path_problem(name, nlen)))
				return refuse(out, "line %zu: %s: %.*s", lineno, why,
				              (int)(nlen > 200 ? 200 : nlen), name);
			break;
		}
		if (n > 13 && memcmp(line, "Binary files ", 13) == 0)
			return refuse(out,
			              "line %zu: binary change without data "
			              "(make the patch with git diff --binary)",
			              lineno);
	}
	return 0;
}

struct delta_scan {
	struct swerve_patch_outcome *out;
	git_patch *const *patches;
};

/* Checks the parsed deltas: paths, link targets, binary data, and that no
 * path goes through a link the same patch creates. */
static int scan_parsed(struct swerve_patch_outcome *out, git_diff *diff)
{
	size_t n = git_diff_num_deltas(diff);
	int rc = 0;

	for (size_t i = 0; i < n && out->reason[0] == '\0'; i++) {
		const git_diff_delta *d = git_diff_get_delta(diff, i);
		const char *paths[2] = {d->old_file.path, d->new_file.path}, *why;
		for (int k = 0; k < 2; k++)
			if (paths[k] && (why = path_problem(paths[k], strlen(paths[k]))))
				return refuse(out, "%s: %.200s", why, paths[k]);
		if (d->new_file.mode == GIT_FILEMODE_LINK && d->status != GIT_DELTA_DELETED) {
			git_patch *p = NULL;
			if (git_patch_from_diff(&p, diff, i) < 0)
				return swerve_error_set(SWERVE_ERROR, "patch: %s", git_msg());
			/* the target is the text of the added line(s) of the only hunk */
			size_t nh = git_patch_num_hunks(p), tl = 0;
			char tbuf[4096];
			for (size_t h = 0; h < nh; h++) {
				size_t nl = (size_t)git_patch_num_lines_in_hunk(p, h);
				for (size_t l = 0; l < nl; l++) {
					const git_diff_line *ln;
					git_patch_get_line_in_hunk(&ln, p, h, l);
					if (ln->origin != GIT_DIFF_LINE_ADDITION)
						continue;
					size_t cl = ln->content_len;
					if (cl > 0 && ln->content[cl - 1] == '\n')
						cl--;
					if (tl + cl >= sizeof(tbuf))
						cl = sizeof(tbuf) - 1 - tl;
					memcpy(tbuf + tl, ln->content, cl);
					tl += cl;
				}
			}
			git_patch_free(p);
			if ((why = link_problem(d->new_file.path, tbuf, tl)))
				return refuse(out, "%s: %.200s -> %.*s", why, d->new_file.path,
				              (int)(tl > 200 ? 200 : tl), tbuf);
			/* any other delta under this link goes through it */
			size_t ll = strlen(d->new_file.path);
			for (size_t j = 0; j < n; j++) {
				const git_diff_delta *e = git_diff_get_delta(diff, j);
				const char *q[2] = {e->old_file.path, e->new_file.path};
				for (int k = 0; k < 2; k++)
					if (q[k] && strncmp(q[k], d->new_file.path, ll) == 0 &&
					    q[k][ll] == '/')
						return refuse(out,
						              "path %.200s goes through symlink "
						              "%.200s",
						              q[k], d->new_file.path);
			}
		}
	}
	return rc;
}

static int binary_cb(const git_diff_delta *d, const git_diff_binary *b, void *payload)
{
	struct swerve_patch_outcome *out = payload;
	if (!b->contains_data && out->reason[0] == '\0')
		refuse(out,
		       "binary change to %.200s without data (make the patch with git diff "
		       "--binary)",
		       d->new_file.path ? d->new_file.path : d->old_file.path);
	return 0;
}

/* Parses patch text with libgit2; a parse failure is a refusal (*diff NULL). */
static int parse(git_diff **diff, struct swerve_patch_outcome *out, const char *patch, size_t len)
{
	*diff = NULL;
	if (git_diff_from_buffer(diff, patch, len) < 0) {
		*diff = NULL;
		if (strstr(git_msg(), "no patch found"))
			return refuse(out, "no file changes found in the patch");
		return refuse(out, "malformed patch: %s", git_msg());
	}
	if (git_diff_num_deltas(*diff) == 0) {
		git_diff_free(*diff);
		*diff = NULL;
		return refuse(out, "no file changes found in the patch");
	}
	return 0;
}

static size_t cap_of(const struct swerve_patch_opts *opts)
{
	return opts && opts->max_bytes ? opts->max_bytes : SWERVE_PATCH_MAX_BYTES_DEFAULT;
}

/* Text-level and (when libgit2 parses it) delta-level checks. *diffp gets
 * the parsed diff when the patch passed and parses. */
static int check_all(git_diff **diffp, struct swerve_patch_outcome *out, const char *patch,
                     size_t len, const struct swerve_patch_opts *opts)
{
	git_diff *diff = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (diffp)
		*diffp = NULL;
	if (len > cap_of(opts))
		return refuse(out, "patch is %zu bytes, over the %zu-byte cap", len, cap_of(opts));
	if (memchr(patch, '\0', len))
		return refuse(out, "NUL byte in patch text");
	if ((rc = scan_text(out, patch, len)) < 0 || out->reason[0])
		return rc;
	swerve_git_init();
	if (git_diff_from_buffer(&diff, patch, len) < 0)
		return 0; /* unparsable by libgit2: GNU patch may still read it */
	out->files = git_diff_num_deltas(diff);
	if ((rc = scan_parsed(out, diff)) == 0 && !out->reason[0])
		git_diff_foreach(diff, NULL, binary_cb, NULL, NULL, out);
	if (rc == 0 && !out->reason[0] && diffp)
		*diffp = diff;
	else
		git_diff_free(diff);
	return rc;
}

int swerve_patch_check(struct swerve_patch_outcome *out, const char *patch, size_t len,
                       const struct swerve_patch_opts *opts)
{
	return check_all(NULL, out, patch, len, opts);
}

/* ---- applying on a directory --------------------------------------------- */

/* A repository object for dir: objects in memory (mempack), the index in a
 * scratch file, no configuration read from anywhere. */
static int workdir_repo(git_repository **out, char **index_path, const char *dir,
                        const char *scratch)
{
	git_repository *repo = NULL;
	git_odb *odb = NULL;
	git_odb_backend *mem = NULL;
	git_index *index = NULL;
	char *ip = NULL;
	const char *base = scratch ? scratch : getenv("TMPDIR");
	int rc = 0;

	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&ip, "%s/swerve-apply-index.%d.%ld", base, (int)getpid(),
	             (long)syscall(SYS_gettid)) < 0)
		return swerve_error_set(SWERVE_ENOMEM, "patch: out of memory");
	unlink(ip);
	if (git_repository_new(&repo) < 0 || git_odb_new(&odb) < 0 || git_mempack_new(&mem) < 0 ||
	    git_odb_add_backend(odb, mem, 1) < 0) {
		rc = swerve_error_set(SWERVE_ERROR, "patch: libgit2 setup: %s", git_msg());
		goto done;
	}
	mem = NULL; /* owned by odb */
	git_repository_set_odb(repo, odb);
	if (git_repository_set_workdir(repo, dir, 0) < 0 || git_index_open(&index, ip) < 0) {
		rc = swerve_error_set(SWERVE_EIO, "patch: work dir %s: %s", dir, git_msg());
		goto done;
	}
	git_repository_set_index(repo, index);
done:
	if (mem)
		mem->free(mem);
	git_index_free(index);
	git_odb_free(odb);
	if (rc < 0) {
		git_repository_free(repo);
		free(ip);
	} else {
		*out = repo;
		*index_path = ip;
	}
	return rc;
}

static void workdir_repo_free(git_repository *repo, char *index_path)
{
	git_repository_free(repo);
	if (index_path) {
		unlink(index_path);
		char lock[PATH_MAX];
		snprintf(lock, sizeof(lock), "%s.lock", index_path);
		unlink(lock);
	}
	free(index_path);
}

/* Refuses paths that go through a symbolic link existing in dir, and regular
 * file changes to a path that is a link (its content would be read through
 * the link). */
static int check_fs(struct swerve_patch_outcome *out, const char *dir, git_diff *diff)
{
	char full[PATH_MAX];
	struct stat st;

	for (size_t i = 0; i < git_diff_num_deltas(diff); i++) {
		const git_diff_delta *d = git_diff_get_delta(diff, i);
		const git_diff_file *f[2] = {&d->old_file, &d->new_file};
		for (int k = 0; k < 2; k++) {
			const char *path = f[k]->path;
			size_t dl = strlen(dir);
			if (!path)
				continue;
			if (snprintf(full, sizeof(full), "%s/%s", dir, path) >= (int)sizeof(full))
				return refuse(out, "path too long: %.200s", path);
			for (char *s = full + dl + 1; (s = strchr(s, '/')); s++) {
				*s = '\0';
				int islink = lstat(full, &st) == 0 && S_ISLNK(st.st_mode);
				*s = '/';
				if (islink)
					return refuse(out, "path %.200s goes through symlink %.*s",
					              path, (int)(s - full - dl - 1),
					              full + dl + 1);
			}
			if (k == 0 && d->status != GIT_DELTA_ADDED && lstat(full, &st) == 0 &&
			    S_ISLNK(st.st_mode) && f[k]->mode != GIT_FILEMODE_LINK)
				return refuse(out,
				              "%.200s is a symlink in the tree, the patch "
				              "treats it as a file",
				              path);
		}
	}
	return 0;
}

/* Appends printf output to a growing buffer; -1 on out of memory. */
struct sbuf {
	char *p;
	size_t n, cap;
};

static int sb_add(struct sbuf *b, const char *d, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = (b->n + n + 1) * 2;
		char *q = realloc(b->p, cap);
		if (!q)
			return -1;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
	b->p[b->n] = '\0';
	return 0;
}

__attribute__((format(printf, 2, 3))) static int sb_fmt(struct sbuf *b, const char *fmt, ...)
{
	char tmp[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	return sb_add(b, tmp, n < (int)sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* The reverse of a parsed text diff as unified-diff text (old and new sides
 * swapped); 1 when a delta cannot be reversed (binary), 0 ok, -1 no memory. */
static int reverse_text(struct sbuf *b, git_diff *diff)
{
	for (size_t i = 0; i < git_diff_num_deltas(diff); i++) {
		git_patch *p;
		const git_diff_delta *d = git_diff_get_delta(diff, i);
		const char *op = d->old_file.path, *np = d->new_file.path;
		if (d->flags & GIT_DIFF_FLAG_BINARY)
			return 1;
		if (git_patch_from_diff(&p, diff, i) < 0)
			return 1;
		sb_fmt(b, "diff --git a/%s b/%s\n", np, op);
		if (d->status == GIT_DELTA_ADDED)
			sb_fmt(b, "deleted file mode %o\n", d->new_file.mode);
		else if (d->status == GIT_DELTA_DELETED)
			sb_fmt(b, "new file mode %o\n", d->old_file.mode);
		else if (d->old_file.mode != d->new_file.mode && d->old_file.mode &&
		         d->new_file.mode)
			sb_fmt(b, "old mode %o\nnew mode %o\n", d->new_file.mode, d->old_file.mode);
		if (strcmp(op, np) != 0)
			sb_fmt(b, "similarity index %u%%\nrename from %s\nrename to %s\n",
			       d->similarity ? d->similarity : 100, np, op);
		if (git_patch_num_hunks(p) > 0) {
			sb_fmt(b, "--- %s%s\n", d->status == GIT_DELTA_DELETED ? "" : "a/",
			       d->status == GIT_DELTA_DELETED ? "/dev/null" : np);
			sb_fmt(b, "+++ %s%s\n", d->status == GIT_DELTA_ADDED ? "" : "b/",
			       d->status == GIT_DELTA_ADDED ? "/dev/null" : op);
		}
		for (size_t h = 0; h < git_patch_num_hunks(p); h++) {
			const git_diff_hunk *hk;
			size_t nl;
			git_patch_get_hunk(&hk, &nl, p, h);
			sb_fmt(b, "@@ -%d,%d +%d,%d @@\n", hk->new_start, hk->new_lines,
			       hk->old_start, hk->old_lines);
			for (size_t l = 0; l < nl; l++) {
				const git_diff_line *ln;
				git_patch_get_line_in_hunk(&ln, p, h, l);
				char o = ln->origin;
				if (o != GIT_DIFF_LINE_CONTEXT && o != GIT_DIFF_LINE_ADDITION &&
				    o != GIT_DIFF_LINE_DELETION)
					continue;
				o = o == '+' ? '-' : o == '-' ? '+' : ' ';
				sb_add(b, &o, 1);
				sb_add(b, ln->content, ln->content_len);
				if (ln->content_len == 0 ||
				    ln->content[ln->content_len - 1] != '\n')
					sb_fmt(b, "\n\\ No newline at end of file\n");
			}
		}
		git_patch_free(p);
	}
	return b->p ? 0 : 1;
}

/* 1 when the reverse of diff applies cleanly to repo's work dir. */
static int reverse_applies(git_repository *repo, git_diff *diff)
{
	struct sbuf b = {0};
	git_diff *rev = NULL;
	git_apply_options ao;
	int ok = 0;

	if (reverse_text(&b, diff) != 0)
		goto done;
	if (git_diff_from_buffer(&rev, b.p, b.n) < 0)
		goto done;
	git_apply_options_init(&ao, GIT_APPLY_OPTIONS_VERSION);
	ao.flags = GIT_APPLY_CHECK;
	ok = git_apply(repo, rev, GIT_APPLY_LOCATION_WORKDIR, &ao) == 0;
done:
	git_diff_free(rev);
	free(b.p);
	return ok;
}

/* Remembers the file being applied, so a failure can name it. */
static int note_delta(const git_diff_delta *d, void *payload)
{
	const char **cur = payload;
	*cur = d->new_file.path ? d->new_file.path : d->old_file.path;
	return 0;
}

static int apply_parsed(struct swerve_patch_outcome *out, const char *dir, git_diff *diff,
                        const char *scratch)
{
	const char *cur = NULL;
	git_repository *repo = NULL;
	git_apply_options ao;
	char *ip = NULL, why[400];
	int rc;

	if (git_diff_num_deltas(diff) == 0)
		return refuse(out, "no file changes found in the patch");
	if ((rc = check_fs(out, dir, diff)) < 0 || out->reason[0])
		return rc;
	if ((rc = workdir_repo(&repo, &ip, dir, scratch)) < 0)
		return rc;
	git_apply_options_init(&ao, GIT_APPLY_OPTIONS_VERSION);
	ao.delta_cb = note_delta;
	ao.payload = &cur;
	if (git_apply(repo, diff, GIT_APPLY_LOCATION_WORKDIR, &ao) == 0) {
		out->applied = 1;
		out->method = SWERVE_PATCH_GIT_APPLY;
		out->reason[0] = '\0';
		goto done;
	}
	if (cur && !strstr(git_msg(), cur))
		snprintf(why, sizeof(why), "%.200s: %s", cur, git_msg());
	else
		snprintf(why, sizeof(why), "%s", git_msg());
	if (reverse_applies(repo, diff)) {
		out->applied = 1;
		out->method = SWERVE_PATCH_ALREADY_APPLIED;
		out->reason[0] = '\0';
		goto done;
	}
	refuse(out, "%s", why);
done:
	workdir_repo_free(repo, ip);
	return 0;
}

int swerve_patch_apply_dir(struct swerve_patch_outcome *out, const char *dir, const char *patch,
                           size_t len, const char *scratch, const struct swerve_patch_opts *opts)
{
	git_diff *diff = NULL;
	int rc;

	if (len > 0 && patch[len - 1] != '\n' && len <= cap_of(opts)) {
		/* text cut just before its final newline (common in model output):
		 * complete the last line rather than refuse the whole patch */
		char *whole = malloc(len + 1);
		if (!whole)
			return swerve_error_set(SWERVE_ENOMEM, "patch: out of memory");
		memcpy(whole, patch, len);
		whole[len] = '\n';
		struct swerve_patch_opts o =
		        opts ? *opts : (struct swerve_patch_opts)SWERVE_PATCH_OPTS_INIT;
		o.max_bytes = cap_of(opts) + 1;
		rc = swerve_patch_apply_dir(out, dir, whole, len + 1, scratch, &o);
		free(whole);
		return rc;
	}
	if ((rc = check_all(&diff, out, patch, len, opts)) < 0 || out->reason[0])
		return rc;
	if (!diff)
		return parse(&diff, out, patch, len); /* refusal: libgit2 cannot read it */
	rc = apply_parsed(out, dir, diff, scratch);
	git_diff_free(diff);
	return rc;
}

/* ---- restoring test files ------------------------------------------------ */

int swerve_patch_paths(char ***out, size_t *count, const char *patch, size_t len)
{
	git_diff *diff;
	char **v;
	size_t n = 0;

	swerve_git_init();
	if (git_diff_from_buffer(&diff, patch, len) < 0)
		return swerve_error_set(SWERVE_EINVAL, "patch: %s", git_msg());
	v = calloc(2 * git_diff_num_deltas(diff) + 1, sizeof(*v));
	if (!v) {
		git_diff_free(diff);
		return swerve_error_set(SWERVE_ENOMEM, "patch: out of memory");
	}
	for (size_t i = 0; i < git_diff_num_deltas(diff); i++) {
		const git_diff_delta *d = git_diff_get_delta(diff, i);
		const char *p[2] = {d->old_file.path, d->new_file.path};
		for (int k = 0; k < 2; k++) {
			int dup = !p[k];
			for (size_t j = 0; j < n && !dup; j++)
				dup = strcmp(v[j], p[k]) == 0;
			if (!dup)
				v[n++] = strdup(p[k]);
		}
	}
	git_diff_free(diff);
	*out = v;
	*count = n;
	return 0;
}

/* Writes one blob (filtered as checkout would) at dir/path, replacing what
 * is there; parents are created. The path was checked by check_fs. */
/* Reads the base version of path into f (kind ABSENT when the base commit
 * has no file there). Host side: the bare mirror is never visible where a
 * model's patch or code runs. */
static int collect_one(struct swerve_restore_file *f, const char *path, git_repository *repo,
                       const git_oid *commit_id, git_tree *tree)
{
	git_tree_entry *te = NULL;
	git_blob *blob = NULL;
	git_buf buf = {0};
	git_blob_filter_options fo;
	int rc = 0;

	memset(f, 0, sizeof(*f));
	if (!(f->path = strdup(path)))
		return swerve_error_set(SWERVE_ENOMEM, "restore %s: out of memory", path);
	if (git_tree_entry_bypath(&te, tree, path) < 0)
		return 0; /* absent at the base commit: stays removed */
	if (git_tree_entry_type(te) != GIT_OBJECT_BLOB)
		goto done; /* a directory or submodule at the base: nothing to write */
	if (git_blob_lookup(&blob, repo, git_tree_entry_id(te)) < 0) {
		rc = swerve_error_set(SWERVE_ECORRUPT, "restore %s: %s", path, git_msg());
		goto done;
	}
	if (git_tree_entry_filemode(te) == GIT_FILEMODE_LINK) {
		size_t tl = (size_t)git_blob_rawsize(blob);
		f->kind = SWERVE_RESTORE_LINK;
		f->data = malloc(tl + 1);
		if (!f->data) {
			rc = swerve_error_set(SWERVE_ENOMEM, "restore %s: out of memory", path);
			goto done;
		}
		memcpy(f->data, git_blob_rawcontent(blob), tl);
		f->data[tl] = '\0';
		f->len = tl;
		goto done;
	}
	git_blob_filter_options_init(&fo, GIT_BLOB_FILTER_OPTIONS_VERSION);
	fo.flags = GIT_BLOB_FILTER_CHECK_FOR_BINARY | GIT_BLOB_FILTER_ATTRIBUTES_FROM_COMMIT;
	fo.attr_commit_id = *commit_id;
	if (git_blob_filter(&buf, blob, path, &fo) < 0) {
		rc = swerve_error_set(SWERVE_ERROR, "restore %s: %s", path, git_msg());
		goto done;
	}
	f->kind = git_tree_entry_filemode(te) == GIT_FILEMODE_BLOB_EXECUTABLE ? SWERVE_RESTORE_EXEC
	                                                                      : SWERVE_RESTORE_FILE;
	f->data = malloc(buf.size + 1);
	if (!f->data) {
		rc = swerve_error_set(SWERVE_ENOMEM, "restore %s: out of memory", path);
		goto done;
	}
	memcpy(f->data, buf.ptr, buf.size);
	f->data[buf.size] = '\0';
	f->len = buf.size;
done:
	git_buf_dispose(&buf);
	git_blob_free(blob);
	git_tree_entry_free(te);
	return rc;
}

/* Puts the base version of one file back under dir (in the sandbox). */
static int write_one(const char *dir, const struct swerve_restore_file *f)
{
	char full[PATH_MAX];
	struct stat st;
	int rc = 0, fd = -1;

	snprintf(full, sizeof(full), "%s/%s", dir, f->path);
	if (lstat(full, &st) == 0) {
		if (S_ISDIR(st.st_mode) ? swerve_fs_rmtree(full) < 0 : unlink(full) < 0)
			return swerve_error_set(SWERVE_EIO, "restore %s: %s", f->path,
			                        strerror(errno));
	}
	if (f->kind == SWERVE_RESTORE_ABSENT)
		return 0;
	char *slash = strrchr(full, '/');
	*slash = '\0';
	rc = swerve_fs_mkdirs(full, 0755);
	*slash = '/';
	if (rc < 0)
		return rc;
	if (f->kind == SWERVE_RESTORE_LINK) {
		if (symlink(f->data, full) < 0)
			return swerve_error_set(SWERVE_EIO, "restore %s: %s", f->path,
			                        strerror(errno));
		return 0;
	}
	fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	          f->kind == SWERVE_RESTORE_EXEC ? 0755 : 0644);
	if (fd < 0 || write(fd, f->data, f->len) != (ssize_t)f->len)
		rc = swerve_error_set(SWERVE_EIO, "restore %s: %s", f->path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return rc;
}

void swerve_restore_set_free(struct swerve_restore_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++) {
		free(set->files[i].path);
		free(set->files[i].data);
	}
	free(set->files);
	git_diff_free(set->diff_);
	free(set);
}

static int collect_path(struct swerve_restore_set *set, const char *path, git_repository *repo,
                        const git_oid *id, git_tree *tree)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->files[i].path, path) == 0)
			return 0;
	return collect_one(&set->files[set->n++], path, repo, id, tree);
}

int swerve_patch_restore_collect(struct swerve_restore_set **out, struct swerve_patch_outcome *po,
                                 const char *git_dir, const char *commit, const char *test_patch,
                                 size_t len)
{
	git_repository *repo = NULL;
	git_commit *c = NULL;
	git_tree *tree = NULL;
	git_diff *diff = NULL;
	git_oid id;
	struct swerve_patch_opts opts = SWERVE_PATCH_OPTS_INIT;
	struct swerve_restore_set *set = NULL;
	int rc;

	*out = NULL;
	opts.max_bytes = len + 1; /* the task's own patch: no size cap */
	if ((rc = check_all(&diff, po, test_patch, len, &opts)) < 0 || po->reason[0])
		return rc;
	if (!diff)
		return parse(&diff, po, test_patch, len);
	size_t nd = git_diff_num_deltas(diff);
	set = calloc(1, sizeof(*set));
	if (set)
		set->files = calloc(2 * nd + 1, sizeof(*set->files));
	if (!set || !set->files) {
		rc = swerve_error_set(SWERVE_ENOMEM, "restore test files: out of memory");
		goto done;
	}
	if (git_repository_open_bare(&repo, git_dir) < 0 || git_oid_fromstr(&id, commit) < 0 ||
	    git_commit_lookup(&c, repo, &id) < 0 || git_commit_tree(&tree, c) < 0) {
		rc = swerve_error_set(SWERVE_ENOTFOUND, "restore test files: %s at %s: %s", git_dir,
		                      commit, git_msg());
		goto done;
	}
	for (size_t i = 0; i < nd && rc == 0; i++) {
		const git_diff_delta *d = git_diff_get_delta(diff, i);
		if (d->old_file.path)
			rc = collect_path(set, d->old_file.path, repo, &id, tree);
		if (rc == 0 && d->new_file.path)
			rc = collect_path(set, d->new_file.path, repo, &id, tree);
	}
	if (rc == 0) {
		set->diff_ = diff; /* parsed once: the sandboxed step applies it as is */
		diff = NULL;
		*out = set;
		set = NULL;
	}
done:
	swerve_restore_set_free(set);
	git_diff_free(diff);
	git_tree_free(tree);
	git_commit_free(c);
	git_repository_free(repo);
	return rc;
}

int swerve_patch_restore_write(struct swerve_patch_outcome *out, const char *dir,
                               const struct swerve_restore_set *set, const char *test_patch,
                               size_t len, const char *scratch)
{
	git_diff *own = NULL, *diff = set->diff_;
	int rc;

	if (diff) { /* checked and parsed by swerve_patch_restore_collect */
		memset(out, 0, sizeof(*out));
		out->files = git_diff_num_deltas(diff);
	} else {
		struct swerve_patch_opts opts = SWERVE_PATCH_OPTS_INIT;
		opts.max_bytes = len + 1;
		if ((rc = check_all(&own, out, test_patch, len, &opts)) < 0 || out->reason[0])
			return rc;
		if (!own)
			return parse(&own, out, test_patch, len);
		diff = own;
	}
	if ((rc = check_fs(out, dir, diff)) < 0 || out->reason[0])
		goto done;
	for (size_t i = 0; i < set->n && rc == 0; i++)
		rc = write_one(dir, &set->files[i]);
	if (rc == 0)
		rc = apply_parsed(out, dir, diff, scratch);
done:
	git_diff_free(own);
	return rc;
}

int swerve_patch_restore_dir(struct swerve_patch_outcome *out, const char *dir, const char *git_dir,
                             const char *commit, const char *test_patch, size_t len,
                             const char *scratch)
{
	struct swerve_restore_set *set = NULL;
	int rc = swerve_patch_restore_collect(&set, out, git_dir, commit, test_patch, len);
	if (rc < 0 || !set)
		return rc;
	rc = swerve_patch_restore_write(out, dir, set, test_patch, len, scratch);
	swerve_restore_set_free(set);
	return rc;
}
