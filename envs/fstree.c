/* fstree.c - mkdir -p, rm -rf and cp -a without a shell.
 * Does: walk trees with nftw(FTW_PHYS) so links are never followed.
 * Does not: copy ownership, xattrs or special files (workspaces need none). */
#include "fstree.h"

#include "sandbox/error.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

int swerve_fs_mkdirs(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return swerve_error_set(SWERVE_EINVAL, "mkdir %s: bad path", path);
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return swerve_error_set(SWERVE_EIO, "mkdir %s: %s", buf, strerror(errno));
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return swerve_error_set(SWERVE_EIO, "mkdir %s: %s", buf, strerror(errno));
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Pre-order pass: make every directory writable and searchable so the
 * removal pass can enter and empty it. */
static int chmod_dir(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_D && (st->st_mode & 0700) != 0700)
		chmod(path, (st->st_mode & 07777) | 0700);
	return 0;
}

int swerve_fs_rmtree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT
		               ? 0
		               : swerve_error_set(SWERVE_EIO, "rm %s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0)
			return swerve_error_set(SWERVE_EIO, "rm %s: %s", path, strerror(errno));
		return 0;
	}
	nftw(path, chmod_dir, 64, FTW_PHYS);
	if (nftw(path, rm_one, 64, FTW_DEPTH | FTW_PHYS) < 0)
		return swerve_error_set(SWERVE_EIO, "rm -r %s: %s", path, strerror(errno));
	return 0;
}

static int copy_file(const char *src, const char *dst, const struct stat *st)
{
	int in = -1, out = -1, rc = -1;

	in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		goto done;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, st->st_mode & 07777);
	if (out < 0)
		goto done;
	for (off_t left = st->st_size; left > 0;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL)) {
			char buf[65536];
			n = read(in, buf, sizeof(buf));
			if (n > 0 && write(out, buf, (size_t)n) != n)
				goto done;
		}
		if (n < 0)
			goto done;
		if (n == 0)
			break;
		left -= n;
	}
	rc = 0;
done:
	if (rc < 0)
		swerve_error_set(SWERVE_EIO, "copy %s: %s", src, strerror(errno));
	if (in >= 0)
		close(in);
	if (out >= 0 && close(out) < 0 && rc == 0)
		rc = swerve_error_set(SWERVE_EIO, "copy %s: %s", dst, strerror(errno));
	return rc;
}

/* nftw has no user pointer: the copy's roots live in thread-local storage. */
static _Thread_local const char *copy_src, *copy_dst;

static int copy_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	char dst[PATH_MAX];
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	(void)ftw;

	if (snprintf(dst, sizeof(dst), "%s%s", copy_dst, path + strlen(copy_src)) >=
	    (int)sizeof(dst)) {
		swerve_error_set(SWERVE_EINVAL, "copy %s: path too long", path);
		return -1;
	}
	switch (type) {
	case FTW_D:
		/* owner rwx while copying; the real mode is set in post-order */
		if (mkdir(dst, 0700) < 0) {
			swerve_error_set(SWERVE_EIO, "mkdir %s: %s", dst, strerror(errno));
			return -1;
		}
		return 0;
	case FTW_SL:
	case FTW_SLN: {
		char target[PATH_MAX];
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n < 0 || (target[n] = '\0', symlink(target, dst) < 0)) {
			swerve_error_set(SWERVE_EIO, "copy link %s: %s", path, strerror(errno));
			return -1;
		}
		utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW);
		return 0;
	}
	case FTW_F:
		if (!S_ISREG(st->st_mode))
			return 0;
		if (copy_file(path, dst, st) < 0)
			return -1;
		utimensat(AT_FDCWD, dst, ts, 0);
		return 0;
	default: swerve_error_set(SWERVE_EIO, "copy %s: cannot read", path); return -1;
	}
}

/* Second, post-order pass: directories get their mode and times once their
 * contents are written (a read-only directory could not be filled). */
static int copy_dir_attrs(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	char dst[PATH_MAX];
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	(void)ftw;

	if (type != FTW_DP)
		return 0;
	snprintf(dst, sizeof(dst), "%s%s", copy_dst, path + strlen(copy_src));
	chmod(dst, st->st_mode & 07777);
	utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW);
	return 0;
}

int swerve_fs_copytree(const char *src, const char *dst)
{
	copy_src = src;
	copy_dst = dst;
	swerve_error_clear();
	if (nftw(src, copy_one, 64, FTW_PHYS | FTW_MOUNT) != 0 ||
	    nftw(src, copy_dir_attrs, 64, FTW_PHYS | FTW_MOUNT | FTW_DEPTH) != 0) {
		if (swerve_error_code() == SWERVE_OK)
			swerve_error_set(SWERVE_EIO, "copy %s: %s", src, strerror(errno));
		return swerve_error_code() ? swerve_error_code() : SWERVE_ERROR;
	}
	return 0;
}

static _Thread_local long count_n;

static int count_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path;
	(void)st;
	(void)type;
	if (ftw->level > 0)
		count_n++;
	return 0;
}

int swerve_fs_count(long *out, const char *path)
{
	count_n = 0;
	if (nftw(path, count_one, 64, FTW_PHYS) != 0)
		return swerve_error_set(SWERVE_EIO, "count %s: %s", path, strerror(errno));
	*out = count_n;
	return 0;
}

static int is_opaque(const char *dir)
{
	char v[4];
	ssize_t n = lgetxattr(dir, "trusted.overlay.opaque", v, sizeof(v));
	if (n < 0)
		n = lgetxattr(dir, "user.overlay.opaque", v, sizeof(v));
	return n == 1 && v[0] == 'y';
}

static _Thread_local const char *merge_src, *merge_dst;

static int merge_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	char dst[PATH_MAX];
	struct stat dt;

	if (ftw->level == 0)
		return 0;
	if (snprintf(dst, sizeof(dst), "%s%s", merge_dst, path + strlen(merge_src)) >=
	    (int)sizeof(dst)) {
		swerve_error_set(SWERVE_EINVAL, "merge %s: path too long", path);
		return -1;
	}
	int exists = lstat(dst, &dt) == 0;
	if (S_ISCHR(st->st_mode) && major(st->st_rdev) == 0 && minor(st->st_rdev) == 0)
		return exists && swerve_fs_rmtree(dst) < 0 ? -1 : 0; /* whiteout */
	if (type == FTW_D) {
		if (exists && (!S_ISDIR(dt.st_mode) || is_opaque(path))) {
			if (swerve_fs_rmtree(dst) < 0)
				return -1;
			exists = 0;
		}
		if (!exists && mkdir(dst, st->st_mode & 07777) < 0) {
			swerve_error_set(SWERVE_EIO, "mkdir %s: %s", dst, strerror(errno));
			return -1;
		}
		chmod(dst, (st->st_mode & 07777) | 0700);
		return 0;
	}
	if (exists && swerve_fs_rmtree(dst) < 0)
		return -1;
	copy_src = merge_src;
	copy_dst = merge_dst;
	return copy_one(path, st, type, ftw);
}

int swerve_fs_overlay_merge(const char *upper, const char *dst)
{
	merge_src = upper;
	merge_dst = dst;
	swerve_error_clear();
	if (nftw(upper, merge_one, 64, FTW_PHYS | FTW_MOUNT) != 0) {
		if (swerve_error_code() == SWERVE_OK)
			swerve_error_set(SWERVE_EIO, "merge %s: %s", upper, strerror(errno));
		return swerve_error_code();
	}
	return 0;
}
