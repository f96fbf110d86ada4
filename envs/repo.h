/* repo.h - the repository cache: bare mirrors and pristine trees.
 *
 * A cache lives in one directory ($SWERVE_HOME, default ~/.cache/swerve):
 *
 *   repos/<owner>/<name>.git            bare mirror (every ref), filled by libgit2
 *   trees/<owner>/<name>/<commit>/      pristine checkout of one commit
 *   trees/<owner>/<name>/<commit>.lock  flock(2) lock serialising its checkout
 *
 * A pristine tree is checked out once, into a temporary directory renamed
 * into place, and never written again: episodes see it only as an overlay
 * lower layer (or copy it). Callers that need a tree being checked out by
 * another thread or process wait on the lock instead of repeating the work.
 *
 * Offline use is the normal case: `add` imports from a local path (or a URL
 * where the network allows), `fetch` updates from the recorded source, and
 * nothing else touches the network. The host's git configuration is never
 * read (libgit2's search paths are emptied), so a user's core.autocrlf
 * cannot change what a tree or a patch looks like.
 *
 * A cache object is immutable after open and may be shared by threads;
 * every call opens its own libgit2 handles. */
#ifndef SWERVE_ENVS_REPO_H
#define SWERVE_ENVS_REPO_H

#include <stddef.h>

struct swerve_repo_cache;

/* One-time libgit2 initialisation for every envs/ module (idempotent, thread
 * safe): git_libgit2_init() plus empty config search paths. */
void swerve_git_init(void);

/* Opens (creating directories as needed) the cache at home; home NULL or ""
 * means $SWERVE_HOME, else $XDG_CACHE_HOME/swerve, else ~/.cache/swerve. */
int swerve_repo_cache_open(struct swerve_repo_cache **out, const char *home);
void swerve_repo_cache_free(struct swerve_repo_cache *cache);

/* The cache's absolute directory. Borrowed. */
const char *swerve_repo_cache_home(const struct swerve_repo_cache *cache);

/* True when name is a valid "owner/name" (letters, digits, '.', '_', '-';
 * no leading '.'; exactly one '/'). */
int swerve_repo_name_valid(const char *name);

/* Imports the repository `name` ("owner/name") from source (a local path,
 * bare or not, or a URL) as a bare mirror of every ref. Atomic: a failed
 * import leaves nothing behind. SWERVE_EEXIST if it is already cached. */
int swerve_repo_add(struct swerve_repo_cache *cache, const char *name, const char *source);

/* Fetches every ref again from the source recorded by swerve_repo_add.
 * SWERVE_ENOTFOUND if the repository is not cached. */
int swerve_repo_fetch(struct swerve_repo_cache *cache, const char *name);

/* The cached repositories, sorted ("owner/name" strings; free each and the
 * array with swerve_repo_list_free). */
int swerve_repo_list(char ***out, size_t *count, struct swerve_repo_cache *cache);
void swerve_repo_list_free(char **names, size_t count);

/* Path of the bare mirror of name (caller frees). SWERVE_ENOTFOUND if absent. */
int swerve_repo_git_dir(char **out, struct swerve_repo_cache *cache, const char *name);

/* Resolves rev to a commit id (40 hex digits + NUL in out). A full 40-digit
 * id must name a commit in the cache exactly; otherwise rev is a ref name or
 * an unambiguous abbreviation (git rev-parse syntax). Unknown or ambiguous:
 * SWERVE_ENOTFOUND / SWERVE_EINVAL with the repository and rev named. */
int swerve_repo_resolve(char out[41], struct swerve_repo_cache *cache, const char *name,
                        const char *rev);

/* Path of the pristine tree of (name, commit), checked out on first use
 * (caller frees *out). commit is resolved as by swerve_repo_resolve. When
 * did_checkout is not NULL it is set to 1 if this call checked the tree out
 * and 0 if it was already there (or another caller made it while we waited). */
int swerve_repo_pristine(char **out, int *did_checkout, struct swerve_repo_cache *cache,
                         const char *name, const char *commit);

#endif
