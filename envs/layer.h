/* layer.h - environment layers: a repository's setup commands (build,
 * install) run once, in the sandbox, on top of a pristine tree; the result is
 * cached and shared by every episode on that (repo, commit, setup).
 *
 * Cache layout: <cache>/layers/<owner>/<name>/<commit>-<key>/ where key is a
 * hash of the setup spec (commands, environment, binds), holding
 *   upper/   the layer (overlay mode: only what setup changed; whiteouts for
 *            deleted files), or
 *   tree/    a full tree (hosts without overlay: setup ran on a copy)
 *   log      the setup's stdout and stderr
 * A failed setup is an environment error (< 0, SWERVE_ERROR) carrying the
 * path of its log (<commit>-<key>.failed.log); it is never a reward. The
 * failure is remembered: later callers get the same error at once (no
 * rebuild for every episode) until the log is removed or retry_failed is
 * set. Builds are serialised per key with flock, like pristine checkouts. */
#ifndef SWERVE_ENVS_LAYER_H
#define SWERVE_ENVS_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "envs/repo.h"
#include "sandbox/sandbox.h"

struct swerve_layer_spec {
	/* Shell command lines, run in order by /bin/sh -c in /workspace with
	 * `set -e`; NULL-terminated. An empty list means "no layer". */
	const char *const *commands;
	const char *const *env;                     /* extra NAME=value, NULL-terminated, or NULL */
	const struct swerve_sandbox_bind *ro_binds; /* toolchains the setup needs */
	size_t n_ro_binds;
	uint64_t wall_ms; /* deadline for the whole setup; 0 = 600 s */
	int retry_failed; /* 1: rebuild even if this spec failed before */
};

struct swerve_layer {
	char *dir;    /* the layer: upper/ or tree/ directory */
	int full;     /* 1: dir is a full tree (copy mode); 0: an overlay upper */
	char *log;    /* path of the setup log */
	char key[17]; /* hash of the spec */
	int built;    /* 1 if this call ran the setup */
};

/* Gets (building once, in sb, when missing) the layer of (name, commit,
 * spec). overlay: 1 to build an overlay layer, 0 for a full tree (use
 * swerve_sandbox_probe's overlay_userns). Fills *out (dispose with
 * swerve_layer_dispose). A failing setup returns SWERVE_ERROR with the
 * verdict and the log path in the message and out->log set. */
int swerve_layer_get(struct swerve_layer *out, struct swerve_repo_cache *cache,
                     struct swerve_sandbox *sb, const char *name, const char *commit,
                     const struct swerve_layer_spec *spec, int overlay);

void swerve_layer_dispose(struct swerve_layer *layer);

#endif
