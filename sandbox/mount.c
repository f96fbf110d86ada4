/* mount.c - the sandbox's filesystem view: a new root on tmpfs.
 *
 * Parent side (sb_mount_plan_build): turns the options into a flat list of
 * steps with every path precomputed, checking that each host source exists
 * so a bad option is reported by name before anything is cloned.
 * Child side (sb_mount_apply): runs the steps with no allocation:
 *   1. make every mount private (nothing propagates back to the host);
 *   2. mount a small tmpfs on /tmp (a private overmount) and pivot_root into
 *      it, the old root kept at /.oldroot so sources are reachable;
 *   3. the steps: read-only nosuid nodev binds of the toolchain (recursive,
 *      with mount_setattr(AT_RECURSIVE) so submounts are read-only too),
 *      generated /etc files, device nodes bound read-only, size-capped tmpfs
 *      /tmp and /dev/shm, a fresh read-only /proc, the workspace (a
 *      read-write bind, or an overlay mounted here, inside the sandbox's own
 *      mount namespace);
 *   4. detach the old root, make the new root read-only.
 * What it does not do: decide what to expose (the caller's options and the
 * default toolchain list below are the policy). */
#include "sandbox/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The default toolchain: host paths bound read-only at the same place (or
 * recreated as the same symlink: Debian's merged /usr makes /bin, /lib... links). */
static const char *const toolchain[] = {"/usr",   "/bin",   "/sbin",  "/lib",
                                        "/lib64", "/lib32", "/libx32"};

/* Selected /etc entries: what the dynamic loader, libc (names, time zone,
 * locale), TLS and the `alternatives` links need. Never shadow, gshadow,
 * /etc/ssl/private or anything else with secrets: the sandbox user may be the
 * worker's own uid on the host, which owns whatever the worker owns. */
static const char *const etc_files[] = {
        "/etc/ld.so.cache",     "/etc/ld.so.conf",    "/etc/ld.so.conf.d", "/etc/alternatives",
        "/etc/localtime",       "/etc/nsswitch.conf", "/etc/ssl/certs",    "/etc/ssl/openssl.cnf",
        "/etc/ca-certificates", "/etc/python3",       "/etc/python3.11",   "/etc/mime.types",
        "/etc/protocols",       "/etc/services",      "/etc/gitconfig",
};

static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom"};

/* ---- plan (parent) ----------------------------------------------------- */

void sb_mount_plan_reset(struct sb_mount_plan *p)
{
	p->n = 0;
	p->arena_len = 0;
	p->used_overlay = 0;
	p->key_len = 0;
	if (p->key)
		p->key[0] = '\0';
}

void sb_mount_plan_dispose(struct sb_mount_plan *p)
{
	free(p->ops);
	free(p->arena);
	free(p->key);
	memset(p, 0, sizeof(*p));
}

/* Strings live in one arena; ops hold offsets until the plan is complete
 * (the arena may move while growing), then fix_pointers() resolves them. */
#define NOSTR ((const char *)(uintptr_t)-1)

static const char *intern(struct sb_mount_plan *p, const char *a, const char *b)
{
	size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0;
	if (!a && !b)
		return NOSTR;
	if (p->arena_len == 0)
		p->arena_len = 1; /* offset 0 would read as NULL */
	if (p->arena_len + la + lb + 1 > p->arena_cap) {
		size_t cap = (p->arena_len + la + lb + 1) * 2 + 4096;
		char *n = realloc(p->arena, cap);
		if (!n)
			return NULL;
		p->arena = n;
		p->arena_cap = cap;
	}
	size_t off = p->arena_len;
	memcpy(p->arena + off, a ? a : "", la);
	memcpy(p->arena + off + la, b ? b : "", lb);
	p->arena[off + la + lb] = '\0';
	p->arena_len += la + lb + 1;
	return (const char *)(uintptr_t)off;
}

static int push(struct sb_mount_plan *p, enum sb_mount_kind kind, const char *src, const char *dst,
                const char *data, int optional)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		struct sb_mount_op *n = realloc(p->ops, cap * sizeof(*n));
		if (!n)
			return swerve_error_set(SWERVE_ENOMEM, "sandbox: out of memory");
		p->ops = n;
		p->cap = cap;
	}
	struct sb_mount_op *op = &p->ops[p->n];
	op->kind = kind;
	/* FULL and TEMPLATE plans run after pivot_root: host paths live under
	 * the old root; RUN plans open them before leaving the host's tree */
	op->src = src ? intern(p, p->mode != SB_PLAN_RUN ? SB_OLDROOT : NULL, src) : NOSTR;
	op->extra = NOSTR;
	op->dst = intern(p, dst, NULL);
	op->data = data ? intern(p, data, NULL) : NOSTR;
	op->optional = optional;
	if (!op->src || !op->dst || !op->data)
		return swerve_error_set(SWERVE_ENOMEM, "sandbox: out of memory");
	p->n++;
	return 0;
}

/* A symlink op's src is the link target, not a host path: no prefix. */
static int push_symlink(struct sb_mount_plan *p, const char *target, const char *dst)
{
	if (push(p, SB_M_SYMLINK, NULL, dst, target, 0) < 0)
		return -1;
	return 0;
}

static int already_dir(const struct sb_mount_plan *p, const char *path)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->ops[i].kind == SB_M_MKDIR &&
		    strcmp(p->arena + (uintptr_t)p->ops[i].dst, path) == 0)
			return 1;
	return 0;
}

/* mkdir -p of path in the new root (each missing component once). */
static int mkdir_p(struct sb_mount_plan *p, const char *path)
{
	char buf[4096];
	size_t len = strlen(path);
	if (len >= sizeof(buf))
		return swerve_error_set(SWERVE_EINVAL, "sandbox: path too long: %.80s...", path);
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (!already_dir(p, buf) && push(p, SB_M_MKDIR, NULL, buf, NULL, 0) < 0)
			return -1;
		buf[i] = c;
	}
	return 0;
}

static int parent_dir(struct sb_mount_plan *p, const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	char *slash = strrchr(buf, '/');
	if (!slash || slash == buf)
		return 0;
	*slash = '\0';
	return mkdir_p(p, buf);
}

static int check_abs(const char *what, const char *path)
{
	if (!path || path[0] != '/')
		return swerve_error_set(SWERVE_EINVAL, "sandbox: %s '%s': must be an absolute path",
		                        what, path ? path : "(null)");
	if (strstr(path, "/../") || (strlen(path) >= 3 && !strcmp(path + strlen(path) - 3, "/..")))
		return swerve_error_set(SWERVE_EINVAL, "sandbox: %s '%s': '..' not allowed", what,
		                        path);
	return 0;
}

/* Records a run-specific mount point ("d:" directory, "f:" file). */
static int key_add(struct sb_mount_plan *p, int dir, const char *dst)
{
	size_t need = strlen(dst) + 4;
	if (p->key_len + need + 2 > p->key_cap) {
		size_t cap = (p->key_len + need + 2) * 2 + 256;
		char *n = realloc(p->key, cap);
		if (!n)
			return swerve_error_set(SWERVE_ENOMEM, "sandbox: out of memory");
		p->key = n;
		p->key_cap = cap;
	}
	if (!p->key_len)
		p->key[p->key_len++] = '\n';
	p->key_len += (size_t)sprintf(p->key + p->key_len, "%c:%s\n", dir ? 'd' : 'f', dst);
	return 0;
}

int sb_mount_key_covered(const struct sb_mount_plan *t, const struct sb_mount_plan *r)
{
	if (!r->key_len)
		return 1;
	if (!t->key_len)
		return 0;
	for (const char *l = r->key + 1; *l;) {
		const char *e = strchr(l, '\n');
		char line[4200];
		size_t n = (size_t)(e - l) + 1;
		if (n + 2 > sizeof(line))
			return 0;
		line[0] = '\n';
		memcpy(line + 1, l, n);
		line[n + 1] = '\0';
		if (!strstr(t->key, line))
			return 0;
		l = e + 1;
	}
	return 1;
}

/* Bind host src (a file or directory) at dst, read-only or read-write. */
static int bind(struct sb_mount_plan *p, const char *what, const char *src, const char *dst, int rw,
                int optional, int dynamic)
{
	struct stat st;
	if (check_abs(what, src) < 0 || check_abs(what, dst) < 0)
		return -1;
	if (stat(src, &st) < 0) {
		if (optional)
			return 0;
		return swerve_error_set(errno == ENOENT ? SWERVE_ENOTFOUND : SWERVE_ERROR,
		                        "sandbox: %s '%s': %s", what, src, strerror(errno));
	}
	if (p->mode != SB_PLAN_FULL && !dynamic) {
		if (p->mode == SB_PLAN_RUN)
			return 0; /* part of the template */
	} else if (p->mode != SB_PLAN_FULL && key_add(p, S_ISDIR(st.st_mode), dst) < 0) {
		return -1;
	}
	if (p->mode != SB_PLAN_RUN) {
		if (parent_dir(p, dst) < 0)
			return -1;
		if (S_ISDIR(st.st_mode)) {
			if (!already_dir(p, dst) && push(p, SB_M_MKDIR, NULL, dst, NULL, 0) < 0)
				return -1;
		} else if (push(p, SB_M_FILE, NULL, dst, NULL, 0) < 0) {
			return -1;
		}
	}
	if (p->mode == SB_PLAN_TEMPLATE && dynamic)
		return 0; /* only the mount point */
	return push(p, rw ? SB_M_BIND_RW : SB_M_BIND_RO, src, dst, NULL, 0);
}

static int lower_ok(const char *path)
{
	return !strchr(path, ':') && !strchr(path, ',') && !strchr(path, '\\');
}

static int overlay(struct sb_mount_plan *p, const struct swerve_sandbox_opts *o, const char *mnt)
{
	char data[8192];
	size_t n = 0;
	struct stat st;
	const char *dirs[3] = {o->workspace_upper, o->workspace_work, NULL};
	const char *names[2] = {"workspace_upper", "workspace_work"};
	if (!o->workspace_lower[0])
		return swerve_error_set(SWERVE_EINVAL, "sandbox: workspace_lower is empty");
	for (int i = 0; i < 2; i++) {
		if (!dirs[i])
			return swerve_error_set(SWERVE_EINVAL,
			                        "sandbox: overlay workspace needs %s", names[i]);
		if (check_abs(names[i], dirs[i]) < 0)
			return -1;
		if (stat(dirs[i], &st) < 0 || !S_ISDIR(st.st_mode))
			return swerve_error_set(SWERVE_ENOTFOUND,
			                        "sandbox: %s '%s': not a directory", names[i],
			                        dirs[i]);
		if (!lower_ok(dirs[i]))
			return swerve_error_set(SWERVE_EINVAL,
			                        "sandbox: %s '%s': ':' ',' '\\' not supported",
			                        names[i], dirs[i]);
	}
	n += (size_t)snprintf(data + n, sizeof(data) - n, "lowerdir=");
	for (size_t i = 0; o->workspace_lower[i]; i++) {
		const char *l = o->workspace_lower[i];
		if (check_abs("workspace_lower", l) < 0)
			return -1;
		if (stat(l, &st) < 0 || !S_ISDIR(st.st_mode))
			return swerve_error_set(SWERVE_ENOTFOUND,
			                        "sandbox: workspace_lower '%s': not a directory",
			                        l);
		if (!lower_ok(l))
			return swerve_error_set(SWERVE_EINVAL,
			                        "sandbox: workspace_lower '%s': ':' ',' '\\' not "
			                        "supported",
			                        l);
		n += (size_t)snprintf(data + n, sizeof(data) - n, "%s%s%s", i ? ":" : "",
		                      p->mode != SB_PLAN_RUN ? SB_OLDROOT : "", l);
	}
	p->used_overlay = 1;
	if (p->mode == SB_PLAN_TEMPLATE)
		return mkdir_p(p, mnt) < 0 || key_add(p, 1, mnt) < 0 ? -1 : 0;
	if (p->mode == SB_PLAN_RUN) {
		if (key_add(p, 1, mnt) < 0 || push(p, SB_M_OVERLAY, NULL, mnt, NULL, 0) < 0)
			return -1;
		struct sb_mount_op *op = &p->ops[p->n - 1];
		/* fsconfig wants the values alone: lowerdir list, upperdir, workdir */
		op->src = intern(p, data + strlen("lowerdir="), NULL);
		op->data = intern(p, o->workspace_upper, NULL);
		op->extra = intern(p, o->workspace_work, NULL);
		return op->src && op->data && op->extra
		               ? 0
		               : swerve_error_set(SWERVE_ENOMEM, "sandbox: out of memory");
	}
	n += (size_t)snprintf(data + n, sizeof(data) - n, ",upperdir=%s%s,workdir=%s%s", SB_OLDROOT,
	                      o->workspace_upper, SB_OLDROOT, o->workspace_work);
	if (n >= sizeof(data) - 1)
		return swerve_error_set(SWERVE_EINVAL, "sandbox: overlay layer paths too long");
	if (mkdir_p(p, mnt) < 0)
		return -1;
	return push(p, SB_M_OVERLAY, NULL, mnt, data, 0);
}

static int plan_build(struct sb_mount_plan *p, const struct swerve_sandbox_opts *o,
                      const char *passwd, const char *group);

int sb_mount_plan_build(struct sb_mount_plan *p, int mode, const struct swerve_sandbox_opts *o,
                        const char *passwd, const char *group)
{
	sb_mount_plan_reset(p);
	p->mode = mode;
	if (mode != SB_PLAN_TEMPLATE)
		p->extra_key = NULL;
	/* inner helpers return -1 after setting the message: report its code */
	return plan_build(p, o, passwd, group) < 0 ? swerve_error_code() : 0;
}

static int plan_build(struct sb_mount_plan *p, const struct swerve_sandbox_opts *o,
                      const char *passwd, const char *group)
{
	char buf[4096];
	struct swerve_sandbox_limits lim;
	int full = p->mode == SB_PLAN_FULL, tmpl = p->mode == SB_PLAN_TEMPLATE,
	    run = p->mode == SB_PLAN_RUN;
	sb_limits_effective(&lim, &o->limits);

	/* the run-independent root: FULL and TEMPLATE */
	for (size_t i = 0; !run && i < sizeof(toolchain) / sizeof(toolchain[0]); i++) {
		struct stat st;
		const char *t = toolchain[i];
		if (lstat(t, &st) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			ssize_t k = readlink(t, buf, sizeof(buf) - 1);
			if (k <= 0)
				continue;
			buf[k] = '\0';
			if (push_symlink(p, buf, t) < 0)
				return -1;
		} else if (bind(p, "toolchain", t, t, 0, 1, 0) < 0) {
			return -1;
		}
	}
	if (!run) {
		if (mkdir_p(p, "/etc") < 0 ||
		    push(p, SB_M_WRITE, NULL, "/etc/passwd", passwd, 0) < 0 ||
		    push(p, SB_M_WRITE, NULL, "/etc/group", group, 0) < 0 ||
		    push(p, SB_M_WRITE, NULL, "/etc/hosts",
		         "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost\n", 0) < 0 ||
		    push(p, SB_M_WRITE, NULL, "/etc/hostname", "sandbox\n", 0) < 0)
			return -1;
		for (size_t i = 0; i < sizeof(etc_files) / sizeof(etc_files[0]); i++)
			if (bind(p, "etc", etc_files[i], etc_files[i], 0, 1, 0) < 0)
				return -1;
		if (mkdir_p(p, "/dev/shm") < 0 || mkdir_p(p, "/tmp") < 0 || mkdir_p(p, "/proc") < 0)
			return -1;
		for (size_t i = 0; i < sizeof(dev_nodes) / sizeof(dev_nodes[0]); i++) {
			char src[64];
			snprintf(src, sizeof(src), "/dev/%s", dev_nodes[i]);
			if (push(p, SB_M_FILE, NULL, src, NULL, 0) < 0 ||
			    push(p, SB_M_BIND_DEV, src, src, NULL, 0) < 0)
				return -1;
		}
		if (push_symlink(p, "/proc/self/fd", "/dev/fd") < 0 ||
		    push_symlink(p, "/proc/self/fd/0", "/dev/stdin") < 0 ||
		    push_symlink(p, "/proc/self/fd/1", "/dev/stdout") < 0 ||
		    push_symlink(p, "/proc/self/fd/2", "/dev/stderr") < 0)
			return -1;
	}

	/* fresh per run: FULL and RUN */
	if (!tmpl) {
		snprintf(buf, sizeof(buf), "mode=1777,size=%llu",
		         (unsigned long long)(o->shm_bytes ? o->shm_bytes : 64ull << 20));
		if (push(p, SB_M_TMPFS, NULL, "/dev/shm", buf, 0) < 0)
			return -1;
		snprintf(buf, sizeof(buf), "mode=1777,size=%llu",
		         (unsigned long long)(o->tmp_bytes ? o->tmp_bytes : 512ull << 20));
		if (push(p, SB_M_TMPFS, NULL, "/tmp", buf, 0) < 0)
			return -1;
		/* pid_max of the new pid namespace: the process cap (see limits.c) */
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)(lim.nproc + 300));
		if (push(p, SB_M_PROC, NULL, "/proc", buf, 0) < 0)
			return -1;
	}

	/* the caller's mounts: all three (TEMPLATE: mount points only) */
	const char *mnt = o->workspace_mount ? o->workspace_mount : "/workspace";
	if (o->workspace_lower) {
		if (o->workspace)
			return swerve_error_set(SWERVE_EINVAL, "sandbox: give either workspace or "
			                                       "workspace_lower, not both");
		if (check_abs("workspace_mount", mnt) < 0 || overlay(p, o, mnt) < 0)
			return -1;
	} else if (o->workspace) {
		struct stat st;
		if (check_abs("workspace", o->workspace) < 0 ||
		    check_abs("workspace_mount", mnt) < 0)
			return -1;
		if (stat(o->workspace, &st) < 0)
			return swerve_error_set(SWERVE_ENOTFOUND, "sandbox: workspace '%s': %s",
			                        o->workspace, strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return swerve_error_set(SWERVE_ENOTFOUND,
			                        "sandbox: workspace '%s': not a directory",
			                        o->workspace);
		if (bind(p, "workspace", o->workspace, mnt, 1, 0, 1) < 0)
			return -1;
	}
	for (size_t i = 0; i < o->n_ro_binds; i++) {
		const struct swerve_sandbox_bind *b = &o->ro_binds[i];
		if (bind(p, "read-only bind", b->src, b->dst ? b->dst : b->src, 0, 0, 1) < 0)
			return -1;
	}
	(void)full;
	/* TEMPLATE: also keep the mount points of earlier templates, so that a
	 * worker alternating between layouts converges on one template */
	for (const char *l = tmpl && p->extra_key ? p->extra_key : ""; *l;) {
		const char *e = strchr(l, '\n');
		size_t n = e ? (size_t)(e - l) : strlen(l);
		if (n > 2 && n < sizeof(buf) && (l[0] == 'd' || l[0] == 'f') && l[1] == ':') {
			memcpy(buf, l + 2, n - 2);
			buf[n - 2] = '\0';
			char line[4200];
			snprintf(line, sizeof(line), "\n%.*s\n", (int)n, l);
			if (!p->key || !strstr(p->key, line)) {
				int dir = l[0] == 'd';
				if ((dir ? mkdir_p(p, buf) : parent_dir(p, buf)) < 0 ||
				    (!dir && push(p, SB_M_FILE, NULL, buf, NULL, 0) < 0) ||
				    key_add(p, dir, buf) < 0)
					return -1;
			}
		}
		l = e ? e + 1 : l + n;
	}

	/* resolve offsets into pointers now that the arena is final */
	for (size_t i = 0; i < p->n; i++) {
		struct sb_mount_op *op = &p->ops[i];
		op->src = op->src == NOSTR ? NULL : p->arena + (uintptr_t)op->src;
		op->dst = p->arena + (uintptr_t)op->dst;
		op->data = op->data == NOSTR ? NULL : p->arena + (uintptr_t)op->data;
		op->extra = op->extra == NOSTR ? NULL : p->arena + (uintptr_t)op->extra;
	}
	return 0;
}

/* ---- apply (child: no allocation, no stdio) ------------------------------ */

static int setattr(const char *path, uint64_t set, int recursive)
{
	struct mount_attr attr = {.attr_set = set};
	return (int)syscall(SYS_mount_setattr, AT_FDCWD, path,
	                    AT_NO_AUTOMOUNT | (recursive ? AT_RECURSIVE : 0), &attr, sizeof(attr));
}

static int write_file(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	size_t len = strlen(data);
	ssize_t w = write(fd, data, len);
	close(fd);
	return w == (ssize_t)len ? 0 : -1;
}

static int apply_one(const struct sb_mount_op *op)
{
	const unsigned long nsd = MS_NOSUID | MS_NODEV;
	int fd;
	switch (op->kind) {
	case SB_M_MKDIR:
		if (mkdir(op->dst, 0755) < 0 && errno != EEXIST)
			return -1;
		return 0;
	case SB_M_FILE:
		fd = open(op->dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			return errno == EEXIST ? 0 : -1;
		close(fd);
		return 0;
	case SB_M_SYMLINK: return symlink(op->data, op->dst);
	case SB_M_WRITE: return write_file(op->dst, op->data);
	case SB_M_BIND_RO:
		if (mount(op->src, op->dst, NULL, MS_BIND | MS_REC, NULL) < 0)
			return -1;
		return setattr(op->dst, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
		               1);
	case SB_M_BIND_DEV:
		if (mount(op->src, op->dst, NULL, MS_BIND, NULL) < 0)
			return -1;
		return setattr(op->dst, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
		               0);
	case SB_M_BIND_RW:
		if (mount(op->src, op->dst, NULL, MS_BIND | MS_REC, NULL) < 0)
			return -1;
		return setattr(op->dst, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 1);
	case SB_M_TMPFS: return mount("tmpfs", op->dst, "tmpfs", nsd, op->data);
	case SB_M_OVERLAY: return mount("overlay", op->dst, "overlay", nsd, op->data);
	case SB_M_PROC:
		if (mount("proc", op->dst, "proc", nsd | MS_NOEXEC, NULL) < 0)
			return -1;
		/* the pid namespace's own pid_max (Linux >= 6.14) caps its
		 * processes; older kernels keep the global one (and RLIMIT_NPROC) */
		if (write_file("/proc/sys/kernel/pid_max", op->data) < 0 && errno != EACCES &&
		    errno != EPERM && errno != EROFS)
			return -1;
		/* read-only: no sysctl, sysrq-trigger or /proc/<pid> writes */
		return mount(NULL, op->dst, NULL,
		             MS_REMOUNT | MS_BIND | MS_RDONLY | nsd | MS_NOEXEC, NULL);
	case SB_M_ROOT_RO: return 0;
	}
	errno = EINVAL;
	return -1;
}

int sb_mount_apply(const struct sb_mount_plan *p, int *step, int *index)
{
	*step = SB_STEP_MOUNT;
	*index = -1;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -1;
	if (mount("swerve-root", SB_STAGE, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m") < 0)
		return -1;
	*step = SB_STEP_PIVOT;
	if (mkdir(SB_STAGE SB_OLDROOT, 0700) < 0 || chdir(SB_STAGE) < 0 ||
	    syscall(SYS_pivot_root, ".", "." SB_OLDROOT) < 0 || chdir("/") < 0)
		return -1;
	*step = SB_STEP_MOUNT;
	for (size_t i = 0; i < p->n; i++) {
		*index = (int)i;
		if (apply_one(&p->ops[i]) < 0 && !(p->ops[i].optional && errno == ENOENT))
			return -1;
	}
	*index = -1;
	*step = SB_STEP_PIVOT;
	if (umount2(SB_OLDROOT, MNT_DETACH) < 0 || rmdir(SB_OLDROOT) < 0)
		return -1;
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) <
	    0)
		return -1;
	return 0;
}

/* ---- attach (child, fast path: no allocation) ---------------------------- */

#define SB_MAX_ATTACH 64

static int detached_bind(const struct sb_mount_op *op)
{
	int fd = (int)syscall(SYS_open_tree, AT_FDCWD, op->src,
	                      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (fd < 0)
		return -1;
	/* private: no mount events propagate between the host and the copy */
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
	                          .propagation = MS_PRIVATE};
	if (op->kind == SB_M_BIND_RO)
		attr.attr_set |= MOUNT_ATTR_RDONLY;
	if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) <
	    0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int detached_overlay(const struct sb_mount_op *op)
{
	int fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC), fd = -1, e;
	if (fs < 0)
		return -1;
	if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "lowerdir", op->src, 0) < 0 ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "upperdir", op->data, 0) < 0 ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "workdir", op->extra, 0) < 0 ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		goto done;
	fd = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
done:
	e = errno;
	close(fs);
	errno = e;
	return fd;
}

int sb_mount_attach(const struct sb_mount_plan *p, int template_ns, int *step, int *index)
{
	int fds[SB_MAX_ATTACH];
	size_t n = p->n < SB_MAX_ATTACH ? p->n : SB_MAX_ATTACH;
	*step = SB_STEP_MOUNT;
	/* 1. detached mounts of host paths, while the host's tree is our view */
	for (size_t i = 0; i < n; i++) {
		const struct sb_mount_op *op = &p->ops[i];
		*index = (int)i;
		fds[i] = -1;
		if (op->kind == SB_M_BIND_RO || op->kind == SB_M_BIND_RW)
			fds[i] = detached_bind(op);
		else if (op->kind == SB_M_OVERLAY)
			fds[i] = detached_overlay(op);
		else
			continue;
		if (fds[i] < 0)
			return -1;
	}
	/* 2. a private copy of the prepared root: only its few mounts are copied */
	*index = -1;
	*step = SB_STEP_PIVOT;
	if (setns(template_ns, CLONE_NEWNS) < 0 || unshare(CLONE_NEWNS) < 0 || chdir("/") < 0)
		return -1;
	/* 3. this run's mounts */
	*step = SB_STEP_MOUNT;
	for (size_t i = 0; i < n; i++) {
		const struct sb_mount_op *op = &p->ops[i];
		*index = (int)i;
		if (fds[i] >= 0) {
			if (syscall(SYS_move_mount, fds[i], "", AT_FDCWD, op->dst,
			            MOVE_MOUNT_F_EMPTY_PATH) < 0)
				return -1;
			close(fds[i]);
		} else if (apply_one(op) < 0) {
			return -1;
		}
	}
	*index = -1;
	if (p->n > SB_MAX_ATTACH) {
		errno = E2BIG;
		return -1;
	}
	return 0;
}
