/* layer.c - environment layers: setup commands run once in the sandbox on
 * top of a pristine tree, cached per (repo, commit, spec).
 *
 * Does: key the spec, serialise builds with flock, run the setup as one
 * sandboxed `/bin/sh -c` (overlay upper = the new layer, or a full copy where
 * overlay is unavailable), keep its log, publish the layer by rename.
 * Does not: decide what the setup commands are (tasks/pipeline do). */
#include "layer.h"

#include "fstree.h"
#include "sandbox/error.h"

#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

void swerve_layer_dispose(struct swerve_layer *layer)
{
	if (!layer)
		return;
	free(layer->dir);
	free(layer->log);
	layer->dir = layer->log = NULL;
}

struct text {
	char *p;
	size_t n, cap;
};

static void text_add(struct text *t, const char *s, size_t n)
{
	if (!t->p && t->cap == (size_t)-1)
		return;
	if (t->n + n + 1 > t->cap) {
		size_t cap = (t->n + n + 1) * 2;
		char *q = realloc(t->p, cap);
		if (!q) {
			free(t->p);
			t->p = NULL;
			t->cap = (size_t)-1; /* remembered failure */
			return;
		}
		t->p = q;
		t->cap = cap;
	}
	memcpy(t->p + t->n, s, n);
	t->n += n;
	t->p[t->n] = '\0';
}

static void text_str(struct text *t, const char *s)
{
	text_add(t, s, strlen(s) + 1); /* keep the NUL: separates fields in the key */
}

/* The spec's key: 16 hex digits of the SHA-1 of its fields; and the script. */
static int spec_key(char key[17], char **script, const struct swerve_layer_spec *spec)
{
	struct text k = {0}, s = {0};
	git_oid oid;
	char hex[41];

	text_add(&s, "set -e\n", 7);
	text_str(&k, "swerve-layer-v1");
	for (const char *const *c = spec->commands; c && *c; c++) {
		text_str(&k, *c);
		text_add(&s, *c, strlen(*c));
		text_add(&s, "\n", 1);
	}
	text_str(&k, "--env");
	for (const char *const *e = spec->env; e && *e; e++)
		text_str(&k, *e);
	text_str(&k, "--binds");
	for (size_t i = 0; i < spec->n_ro_binds; i++) {
		text_str(&k, spec->ro_binds[i].src);
		text_str(&k, spec->ro_binds[i].dst ? spec->ro_binds[i].dst : "");
	}
	if (!k.p || !s.p) {
		free(k.p);
		free(s.p);
		return swerve_error_set(SWERVE_ENOMEM, "layer: out of memory");
	}
	git_odb_hash(&oid, k.p, k.n, GIT_OBJECT_BLOB);
	git_oid_tostr(hex, sizeof(hex), &oid);
	memcpy(key, hex, 16);
	key[16] = '\0';
	free(k.p);
	*script = s.p;
	return 0;
}

static int write_log(const char *path, const struct swerve_sandbox_result *r)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return swerve_error_set(SWERVE_EIO, "layer log %s: %s", path, strerror(errno));
	fprintf(f, "== verdict %s exit %d%s%s\n== stdout\n", swerve_verdict_name(r->verdict),
	        r->exit_code, r->reason[0] ? " " : "", r->reason);
	if (r->out.data)
		fwrite(r->out.data, 1, r->out.len, f);
	fprintf(f, "\n== stderr\n");
	if (r->err.data)
		fwrite(r->err.data, 1, r->err.len, f);
	if (fclose(f) != 0)
		return swerve_error_set(SWERVE_EIO, "layer log %s: %s", path, strerror(errno));
	return 0;
}

/* Fills out from a finished layer directory. */
static int found(struct swerve_layer *out, const char *final)
{
	struct stat st;
	char *dir = NULL, *log = NULL;

	if (asprintf(&dir, "%s/upper", final) < 0 || asprintf(&log, "%s/log", final) < 0)
		goto nomem;
	out->full = 0;
	if (stat(dir, &st) < 0) {
		free(dir);
		if (asprintf(&dir, "%s/tree", final) < 0) {
			dir = NULL;
			goto nomem;
		}
		out->full = 1;
	}
	out->dir = dir;
	out->log = log;
	return 0;
nomem:
	free(dir);
	free(log);
	return swerve_error_set(SWERVE_ENOMEM, "layer: out of memory");
}

static int build(struct swerve_layer *out, struct swerve_sandbox *sb, const char *what,
                 const char *pristine, const char *tmp, const char *final,
                 const struct swerve_layer_spec *spec, const char *script, int overlay)
{
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_result r;
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	const char *lower[] = {pristine, NULL};
	char upper[4096], work[4096], tree[4096], log[4096], failed[4096];
	int rc;

	snprintf(upper, sizeof(upper), "%s/upper", tmp);
	snprintf(work, sizeof(work), "%s/work", tmp);
	snprintf(tree, sizeof(tree), "%s/tree", tmp);
	snprintf(log, sizeof(log), "%s/log", tmp);
	snprintf(failed, sizeof(failed), "%s.failed.log", final);
	if (overlay) {
		if (mkdir(upper, 0755) < 0 || mkdir(work, 0755) < 0)
			return swerve_error_set(SWERVE_EIO, "layer %s: mkdir %s: %s", what, tmp,
			                        strerror(errno));
		o.workspace_lower = lower;
		o.workspace_upper = upper;
		o.workspace_work = work;
	} else {
		if ((rc = swerve_fs_copytree(pristine, tree)) < 0)
			return swerve_error_wrap("layer %s", what);
		o.workspace = tree;
	}
	o.argv = argv;
	o.env = spec->env;
	o.ro_binds = spec->ro_binds;
	o.n_ro_binds = spec->n_ro_binds;
	o.limits.wall_ms = spec->wall_ms ? spec->wall_ms : 600000;
	rc = swerve_sandbox_run(&r, sb, &o);
	if (rc < 0) {
		rc = swerve_error_wrap("layer %s: setup could not run", what);
		goto done;
	}
	if ((rc = write_log(log, &r)) < 0)
		goto done;
	if (r.verdict != SWERVE_VERDICT_OK) {
		rename(log, failed);
		out->log = strdup(failed);
		rc = swerve_error_set(SWERVE_ERROR,
		                      "layer %s: environment setup failed (%s, exit %d): log %s",
		                      what, swerve_verdict_name(r.verdict), r.exit_code, failed);
		goto done;
	}
	if (overlay)
		swerve_fs_rmtree(work);
	if (rename(tmp, final) < 0) {
		rc = swerve_error_set(SWERVE_EIO, "layer %s: rename %s: %s", what, final,
		                      strerror(errno));
		goto done;
	}
	unlink(failed);
	out->built = 1;
	rc = found(out, final);
done:
	swerve_sandbox_result_dispose(&r);
	return rc;
}

int swerve_layer_get(struct swerve_layer *out, struct swerve_repo_cache *cache,
                     struct swerve_sandbox *sb, const char *name, const char *commit,
                     const struct swerve_layer_spec *spec, int overlay)
{
	char sha[41], key[17], *script = NULL, *pristine = NULL, *dir = NULL, *final = NULL,
	                       *lock = NULL, *tmp = NULL, what[300];
	struct stat st;
	int fd = -1, rc;

	memset(out, 0, sizeof(*out));
	if (!spec || !spec->commands || !spec->commands[0])
		return swerve_error_set(SWERVE_EINVAL, "layer %s: no setup commands", name);
	if ((rc = swerve_repo_resolve(sha, cache, name, commit)) < 0)
		return rc;
	if ((rc = spec_key(key, &script, spec)) < 0)
		return rc;
	memcpy(out->key, key, sizeof(key));
	snprintf(what, sizeof(what), "%s@%.12s/%s", name, sha, key);
	if ((rc = swerve_repo_pristine(&pristine, NULL, cache, name, sha)) < 0)
		goto done;
	if (asprintf(&dir, "%s/layers/%s", swerve_repo_cache_home(cache), name) < 0 ||
	    asprintf(&final, "%s/%s-%s", dir, sha, key) < 0 ||
	    asprintf(&lock, "%s.lock", final) < 0 ||
	    asprintf(&tmp, "%s.tmp.%d.%ld", final, (int)getpid(), (long)syscall(SYS_gettid)) < 0) {
		rc = swerve_error_set(SWERVE_ENOMEM, "layer: out of memory");
		goto done;
	}
	if (stat(final, &st) == 0) {
		rc = found(out, final);
		goto done;
	}
	if ((rc = swerve_fs_mkdirs(dir, 0755)) < 0)
		goto done;
	if ((fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		rc = swerve_error_set(SWERVE_EIO, "layer %s: lock %s: %s", what, lock,
		                      strerror(errno));
		goto done;
	}
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			rc = swerve_error_set(SWERVE_EIO, "layer %s: flock: %s", what,
			                      strerror(errno));
			goto done;
		}
	if (stat(final, &st) == 0) {
		rc = found(out, final);
		goto done;
	}
	if (!spec->retry_failed) {
		char *failed = NULL;
		if (asprintf(&failed, "%s.failed.log", final) < 0) {
			rc = swerve_error_set(SWERVE_ENOMEM, "layer: out of memory");
			goto done;
		}
		if (stat(failed, &st) == 0) {
			out->log = failed;
			rc = swerve_error_set(SWERVE_ERROR,
			                      "layer %s: environment setup failed before: log %s "
			                      "(remove it, or set retry_failed, to rebuild)",
			                      what, failed);
			goto done;
		}
		free(failed);
	}
	swerve_fs_rmtree(tmp);
	if (mkdir(tmp, 0755) < 0) {
		rc = swerve_error_set(SWERVE_EIO, "layer %s: mkdir %s: %s", what, tmp,
		                      strerror(errno));
		goto done;
	}
	rc = build(out, sb, what, pristine, tmp, final, spec, script, overlay);
	if (rc < 0)
		swerve_fs_rmtree(tmp);
done:
	if (fd >= 0)
		close(fd);
	free(script);
	free(pristine);
	free(dir);
	free(final);
	free(lock);
	free(tmp);
	return rc;
}
