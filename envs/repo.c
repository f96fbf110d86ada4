/* repo.c - the repository cache: bare mirrors (libgit2) and pristine trees.
 *
 * Does: import/fetch mirrors, resolve commits, check out one read-only tree
 * per (repository, commit) exactly once across threads and processes.
 * Does not: build environments (layer.c), make workspaces (workspace.c), or
 * apply patches (patch.c).
 *
 * Invariants:
 *  1. repos/<o>/<n>.git exists only when an import finished (temp + rename).
 *  2. trees/<o>/<n>/<sha> exists only when its checkout finished (temp +
 *     rename), and is never modified afterwards.
 *  3. A checkout runs only while holding flock(LOCK_EX) on <sha>.lock; the
 *     holder re-checks invariant 2 first, so waiters never repeat the work.
 *  4. Stale temporary directories (a crashed checkout) are removed by the
 *     next lock holder. */
#include "repo.h"

#include "fstree.h"
#include "sandbox/error.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct swerve_repo_cache {
	char *home;
};

static pthread_once_t git_once = PTHREAD_ONCE_INIT;

static void git_init_once(void)
{
	git_libgit2_init();
	/* Never read ~/.gitconfig, $XDG_CONFIG_HOME/git or /etc/gitconfig. */
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_SYSTEM, "");
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_XDG, "");
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_GLOBAL, "");
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_PROGRAMDATA, "");
}

void swerve_git_init(void)
{
	pthread_once(&git_once, git_init_once);
}

/* The libgit2 error of the failed call, as text. */
static const char *git_msg(void)
{
	const git_error *e = git_error_last();
	return e && e->message ? e->message : "unknown libgit2 error";
}

int swerve_repo_name_valid(const char *name)
{
	int slashes = 0;
	if (!name || !*name || strlen(name) > 200)
		return 0;
	for (const char *p = name; *p; p++) {
		int start = p == name || p[-1] == '/';
		if (*p == '/') {
			if (start || !p[1])
				return 0;
			slashes++;
		} else if (start && *p == '.') {
			return 0;
		} else if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') {
			return 0;
		}
	}
	return slashes == 1;
}

int swerve_repo_cache_open(struct swerve_repo_cache **out, const char *home)
{
	struct swerve_repo_cache *c;
	char *path = NULL, real[PATH_MAX];
	int rc;

	swerve_git_init();
	if (home && *home)
		path = strdup(home);
	else if (getenv("SWERVE_HOME") && *getenv("SWERVE_HOME"))
		path = strdup(getenv("SWERVE_HOME"));
	else if (getenv("XDG_CACHE_HOME") && *getenv("XDG_CACHE_HOME"))
		rc = asprintf(&path, "%s/swerve", getenv("XDG_CACHE_HOME")), (void)rc;
	else if (getenv("HOME") && *getenv("HOME"))
		rc = asprintf(&path, "%s/.cache/swerve", getenv("HOME")), (void)rc;
	else
		return swerve_error_set(SWERVE_EINVAL,
		                        "repository cache: set SWERVE_HOME (no HOME either)");
	if (!path)
		return swerve_error_set(SWERVE_ENOMEM, "repository cache: out of memory");
	if ((rc = swerve_fs_mkdirs(path, 0755)) < 0) {
		free(path);
		return swerve_error_wrap("repository cache");
	}
	if (!realpath(path, real)) {
		rc = swerve_error_set(SWERVE_EIO, "repository cache %s: %s", path, strerror(errno));
		free(path);
		return rc;
	}
	free(path);
	c = calloc(1, sizeof(*c));
	if (!c || !(c->home = strdup(real))) {
		free(c);
		return swerve_error_set(SWERVE_ENOMEM, "repository cache: out of memory");
	}
	*out = c;
	return 0;
}

void swerve_repo_cache_free(struct swerve_repo_cache *cache)
{
	if (!cache)
		return;
	free(cache->home);
	free(cache);
}

const char *swerve_repo_cache_home(const struct swerve_repo_cache *cache)
{
	return cache->home;
}

static int check_name(const char *name)
{
	if (!swerve_repo_name_valid(name))
		return swerve_error_set(SWERVE_EINVAL,
		                        "repo '%s': not a valid owner/name (letters, digits, "
		                        "'.', '_', '-', one '/')",
		                        name ? name : "");
	return 0;
}

static char *git_dir_path(const struct swerve_repo_cache *c, const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/repos/%s.git", c->home, name) < 0)
		return NULL;
	return p;
}

int swerve_repo_git_dir(char **out, struct swerve_repo_cache *cache, const char *name)
{
	struct stat st;
	char *p;
	int rc;

	if ((rc = check_name(name)) < 0)
		return rc;
	if (!(p = git_dir_path(cache, name)))
		return swerve_error_set(SWERVE_ENOMEM, "repo %s: out of memory", name);
	if (stat(p, &st) < 0) {
		free(p);
		return swerve_error_set(SWERVE_ENOTFOUND,
		                        "repo %s: not in the cache %s (run swerve repo add)", name,
		                        cache->home);
	}
	*out = p;
	return 0;
}

static int open_repo(git_repository **out, struct swerve_repo_cache *c, const char *name)
{
	char *dir;
	int rc;

	if ((rc = swerve_repo_git_dir(&dir, c, name)) < 0)
		return rc;
	if (git_repository_open_bare(out, dir) < 0)
		rc = swerve_error_set(SWERVE_ECORRUPT, "repo %s: %s: %s", name, dir, git_msg());
	free(dir);
	return rc;
}

/* A local source is given to libgit2 as an absolute path; a URL as is. */
static char *source_url(const char *source)
{
	char real[PATH_MAX];
	if (strstr(source, "://") || (strchr(source, ':') && !strchr(source, '/')))
		return strdup(source);
	if (strchr(source, ':') && strchr(source, ':') < strchr(source, '/'))
		return strdup(source); /* scp-like user@host:path */
	if (!realpath(source, real))
		return NULL;
	return strdup(real);
}

/* Fetches every ref from the URL recorded as remote.origin.url. An
 * anonymous remote is used because git_remote_lookup leaks pcre2 match data
 * in libgit2 1.5 (seen under LeakSanitizer). */
static int do_fetch(git_repository *repo, const char *name)
{
	git_remote *remote = NULL;
	git_config *cfg = NULL, *snap = NULL;
	git_fetch_options fo;
	const char *url;
	char *spec = "+refs/*:refs/*";
	git_strarray specs = {&spec, 1};
	int rc = 0;

	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_ALL;
	fo.prune = GIT_FETCH_PRUNE;
	if (git_repository_config_snapshot(&snap, repo) < 0 ||
	    git_config_get_string(&url, snap, "remote.origin.url") < 0) {
		rc = swerve_error_set(SWERVE_ECORRUPT, "repo %s: no recorded source: %s", name,
		                      git_msg());
		goto done;
	}
	if (git_remote_create_anonymous(&remote, repo, url) < 0 ||
	    git_remote_fetch(remote, &specs, &fo, "swerve repo fetch") < 0)
		rc = swerve_error_set(SWERVE_EIO, "repo %s: fetch from %s: %s", name, url,
		                      git_msg());
done:
	git_remote_free(remote);
	git_config_free(snap);
	git_config_free(cfg);
	return rc;
}

int swerve_repo_add(struct swerve_repo_cache *cache, const char *name, const char *source)
{
	git_repository *repo = NULL;
	git_remote *remote = NULL;
	char *final = NULL, *tmp = NULL, *url = NULL, *parent = NULL;
	struct stat st;
	int rc;

	if ((rc = check_name(name)) < 0)
		return rc;
	if (!source || !*source)
		return swerve_error_set(SWERVE_EINVAL, "repo %s: empty source", name);
	if (!(final = git_dir_path(cache, name)) ||
	    asprintf(&tmp, "%s.tmp.%d.%ld", final, (int)getpid(), (long)syscall(SYS_gettid)) < 0) {
		rc = swerve_error_set(SWERVE_ENOMEM, "repo %s: out of memory", name);
		goto done;
	}
	if (stat(final, &st) == 0) {
		rc = swerve_error_set(SWERVE_EEXIST,
		                      "repo %s: already in the cache (use swerve repo fetch)",
		                      name);
		goto done;
	}
	if (!(url = source_url(source))) {
		rc = swerve_error_set(SWERVE_ENOTFOUND, "repo %s: source %s: %s", name, source,
		                      strerror(errno));
		goto done;
	}
	parent = strdup(final);
	*strrchr(parent, '/') = '\0';
	if ((rc = swerve_fs_mkdirs(parent, 0755)) < 0)
		goto done;
	if (git_repository_init(&repo, tmp, 1) < 0 ||
	    git_remote_create_with_fetchspec(&remote, repo, "origin", url, "+refs/*:refs/*") < 0) {
		rc = swerve_error_set(SWERVE_EIO, "repo %s: init %s: %s", name, tmp, git_msg());
		goto done;
	}
	if ((rc = do_fetch(repo, name)) < 0)
		goto done;
	if (rename(tmp, final) < 0) {
		rc = swerve_error_set(errno == ENOTEMPTY || errno == EEXIST ? SWERVE_EEXIST
		                                                            : SWERVE_EIO,
		                      "repo %s: rename into %s: %s", name, final, strerror(errno));
		goto done;
	}
done:
	git_remote_free(remote);
	git_repository_free(repo);
	if (rc < 0 && tmp)
		swerve_fs_rmtree(tmp);
	free(final);
	free(tmp);
	free(url);
	free(parent);
	return rc;
}

int swerve_repo_fetch(struct swerve_repo_cache *cache, const char *name)
{
	git_repository *repo;
	int rc;

	if ((rc = open_repo(&repo, cache, name)) < 0)
		return rc;
	rc = do_fetch(repo, name);
	git_repository_free(repo);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void swerve_repo_list_free(char **names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

int swerve_repo_list(char ***out, size_t *count, struct swerve_repo_cache *cache)
{
	char path[PATH_MAX], **names = NULL;
	size_t n = 0, cap = 0;
	DIR *owners, *repos;
	struct dirent *o, *r;

	snprintf(path, sizeof(path), "%s/repos", cache->home);
	if (!(owners = opendir(path))) {
		*out = NULL;
		*count = 0;
		return errno == ENOENT ? 0
		                       : swerve_error_set(SWERVE_EIO, "repo list %s: %s", path,
		                                          strerror(errno));
	}
	while ((o = readdir(owners))) {
		if (o->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/repos/%s", cache->home, o->d_name);
		if (!(repos = opendir(path)))
			continue;
		while ((r = readdir(repos))) {
			size_t len = strlen(r->d_name);
			char *full;
			if (len < 5 || strcmp(r->d_name + len - 4, ".git") != 0)
				continue;
			if (asprintf(&full, "%s/%.*s", o->d_name, (int)(len - 4), r->d_name) < 0)
				continue;
			if (!swerve_repo_name_valid(full)) {
				free(full);
				continue;
			}
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				names = realloc(names, cap * sizeof(*names));
			}
			names[n++] = full;
		}
		closedir(repos);
	}
	closedir(owners);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	*out = names;
	*count = n;
	return 0;
}

static int is_full_hex(const char *s)
{
	if (strlen(s) != 40)
		return 0;
	for (; *s; s++)
		if (!isxdigit((unsigned char)*s))
			return 0;
	return 1;
}

static int resolve_in(char out[41], git_repository *repo, const char *name, const char *rev)
{
	git_object *obj = NULL, *commit = NULL;
	git_oid oid;
	int rc = 0, e;

	if (!rev || !*rev)
		return swerve_error_set(SWERVE_EINVAL, "repo %s: empty commit", name);
	if (is_full_hex(rev)) {
		git_oid_fromstr(&oid, rev);
		e = git_object_lookup(&obj, repo, &oid, GIT_OBJECT_ANY);
	} else {
		e = git_revparse_single(&obj, repo, rev);
	}
	if (e == GIT_EAMBIGUOUS) {
		rc = swerve_error_set(SWERVE_EINVAL, "repo %s: commit %s: ambiguous", name, rev);
		goto done;
	}
	if (e < 0) {
		rc = swerve_error_set(SWERVE_ENOTFOUND,
		                      "repo %s: commit %s: not found in the cache "
		                      "(swerve repo fetch %s?)",
		                      name, rev, name);
		goto done;
	}
	if (git_object_peel(&commit, obj, GIT_OBJECT_COMMIT) < 0) {
		rc = swerve_error_set(SWERVE_EINVAL, "repo %s: %s: not a commit", name, rev);
		goto done;
	}
	git_oid_tostr(out, 41, git_object_id(commit));
done:
	git_object_free(commit);
	git_object_free(obj);
	return rc;
}

int swerve_repo_resolve(char out[41], struct swerve_repo_cache *cache, const char *name,
                        const char *rev)
{
	git_repository *repo;
	char id[41];
	int rc;

	if ((rc = open_repo(&repo, cache, name)) < 0)
		return rc;
	rc = resolve_in(id, repo, name, rev);
	git_repository_free(repo);
	if (rc == 0)
		memcpy(out, id, 41);
	return rc;
}

/* Removes <sha>.tmp.* leftovers of crashed checkouts (lock held). */
static void remove_stale(const char *dir, const char *sha)
{
	char prefix[64], path[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d)
		return;
	snprintf(prefix, sizeof(prefix), "%s.tmp.", sha);
	while ((e = readdir(d)))
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			swerve_fs_rmtree(path);
		}
	closedir(d);
}

static int checkout_to(git_repository *repo, const char *name, const char *sha, const char *dir)
{
	git_checkout_options co;
	git_object *commit = NULL;
	git_oid oid;
	int rc = 0;

	git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
	co.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_UPDATE_INDEX |
	                       GIT_CHECKOUT_DONT_WRITE_INDEX | GIT_CHECKOUT_DONT_REMOVE_EXISTING;
	co.target_directory = dir;
	co.dir_mode = 0755;
	git_oid_fromstr(&oid, sha);
	if (git_object_lookup(&commit, repo, &oid, GIT_OBJECT_COMMIT) < 0 ||
	    git_checkout_tree(repo, commit, &co) < 0)
		rc = swerve_error_set(SWERVE_EIO, "repo %s: checkout %s into %s: %s", name, sha,
		                      dir, git_msg());
	git_object_free(commit);
	return rc;
}

int swerve_repo_pristine(char **out, int *did_checkout, struct swerve_repo_cache *cache,
                         const char *name, const char *commit)
{
	git_repository *repo = NULL;
	char sha[41], *dir = NULL, *final = NULL, *lock = NULL, *tmp = NULL;
	struct stat st;
	int fd = -1, rc, did = 0;

	if ((rc = open_repo(&repo, cache, name)) < 0)
		return rc;
	if ((rc = resolve_in(sha, repo, name, commit)) < 0)
		goto done;
	if (asprintf(&dir, "%s/trees/%s", cache->home, name) < 0 ||
	    asprintf(&final, "%s/%s", dir, sha) < 0 || asprintf(&lock, "%s.lock", final) < 0 ||
	    asprintf(&tmp, "%s.tmp.%d.%ld", final, (int)getpid(), (long)syscall(SYS_gettid)) < 0) {
		rc = swerve_error_set(SWERVE_ENOMEM, "repo %s: out of memory", name);
		goto done;
	}
	if (stat(final, &st) == 0)
		goto found;
	if ((rc = swerve_fs_mkdirs(dir, 0755)) < 0)
		goto done;
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = swerve_error_set(SWERVE_EIO, "repo %s: lock %s: %s", name, lock,
		                      strerror(errno));
		goto done;
	}
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			rc = swerve_error_set(SWERVE_EIO, "repo %s: flock %s: %s", name, lock,
			                      strerror(errno));
			goto done;
		}
	if (stat(final, &st) == 0)
		goto found; /* made by the caller we waited for */
	remove_stale(dir, sha);
	if (mkdir(tmp, 0755) < 0) {
		rc = swerve_error_set(SWERVE_EIO, "repo %s: mkdir %s: %s", name, tmp,
		                      strerror(errno));
		goto done;
	}
	if ((rc = checkout_to(repo, name, sha, tmp)) < 0)
		goto done;
	if (rename(tmp, final) < 0) {
		rc = swerve_error_set(SWERVE_EIO, "repo %s: rename %s: %s", name, final,
		                      strerror(errno));
		goto done;
	}
	did = 1;
found:
	*out = final;
	final = NULL;
	if (did_checkout)
		*did_checkout = did;
	rc = 0;
done:
	if (rc < 0 && tmp)
		swerve_fs_rmtree(tmp);
	if (fd >= 0)
		close(fd); /* releases the lock */
	git_repository_free(repo);
	free(dir);
	free(final);
	free(lock);
	free(tmp);
	return rc;
}
