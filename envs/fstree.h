/* fstree.h - directory-tree helpers for the repository cache and workspaces:
 * create parents, remove a tree, copy a tree. They never follow symbolic
 * links (a link is created, removed or copied as a link), so a tree that
 * holds model-written links cannot make them touch anything outside it. */
#ifndef SWERVE_ENVS_FSTREE_H
#define SWERVE_ENVS_FSTREE_H

#include <sys/types.h>

/* mkdir -p path (mode for the directories it creates). */
int swerve_fs_mkdirs(const char *path, mode_t mode);

/* rm -rf path; a missing path is success. Makes directories writable first
 * (a tree may hold read-only directories). */
int swerve_fs_rmtree(const char *path);

/* cp -a src dst (dst must not exist): regular files (data, mode), directories,
 * symbolic links (as links), times; other file types are skipped. */
int swerve_fs_copytree(const char *src, const char *dst);

/* Applies an overlayfs upper directory onto a plain tree dst, as the
 * overlay would show it: whiteouts (0/0 character devices) delete, opaque
 * directories (trusted.overlay.opaque or user.overlay.opaque = "y") replace,
 * everything else is copied over. */
int swerve_fs_overlay_merge(const char *upper, const char *dst);

/* Counts the entries (files, links, directories) under path, excluding path. */
int swerve_fs_count(long *out, const char *path);

#endif
