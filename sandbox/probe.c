/* probe.c - what this host supports, probed once per process and cached:
 * user namespaces, overlayfs inside a user namespace, a delegated cgroup v2,
 * seccomp with user notification. Each missing feature gets one line naming
 * the setting to change. Probing forks small children; it never changes the
 * host. */
#include "sandbox/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

static struct swerve_sandbox_probe cached;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return (int)n;
}

static void why(struct swerve_sandbox_probe *p, const char *line)
{
	size_t n = strlen(p->why);
	snprintf(p->why + n, sizeof(p->why) - n, "%s%s", n ? "; " : "", line);
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, s, strlen(s));
	close(fd);
	return w == (ssize_t)strlen(s) ? 0 : -1;
}

/* Child: 0 = userns ok, 1 = no userns, 2 = userns ok but overlay failed. */
static int probe_child(const char *dir)
{
	char map[64], lower[512], data[2048], mnt[512];
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		return 1;
	snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
	if (write_str("/proc/self/uid_map", map) < 0)
		return 1;
	write_str("/proc/self/setgroups", "deny");
	snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
	if (write_str("/proc/self/gid_map", map) < 0)
		return 1;
	snprintf(lower, sizeof(lower), "%s/l", dir);
	snprintf(mnt, sizeof(mnt), "%s/m", dir);
	snprintf(data, sizeof(data), "lowerdir=%s,upperdir=%s/u,workdir=%s/w", lower, dir, dir);
	if (mount("overlay", mnt, "overlay", 0, data) < 0)
		return 2;
	return 0;
}

/* cgroup v2: our own cgroup must have the memory and pids controllers
 * and be writable: a delegated subtree (systemd Delegate=yes). Reads
 * /proc only (no fork): the quick probe runs it too, for run.c's cgroups. */
static void probe_cgroup(struct swerve_sandbox_probe *p)
{
	char buf[4096];
	char cg[512] = "", mnt[512] = "";
	if (read_small("/proc/self/cgroup", buf, sizeof(buf)) > 0) {
		char *l = strstr(buf, "0::");
		if (l) {
			char *e = strchr(l, '\n');
			if (e)
				*e = '\0';
			snprintf(cg, sizeof(cg), "%s", l + 3);
		}
	}
	/* the usual mount points first (unified, hybrid): two statfs calls
	 * cost ~4 us, reading mountinfo ~35 us on every sandbox_new */
	const char *usual[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
	for (size_t i = 0; i < 2 && !mnt[0]; i++) {
		struct statfs fs;
		if (statfs(usual[i], &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC)
			snprintf(mnt, sizeof(mnt), "%s", usual[i]);
	}
	FILE *f = mnt[0] ? NULL : fopen("/proc/self/mountinfo", "re");
	if (f) {
		char line[1024];
		while (fgets(line, sizeof(line), f)) {
			char *dash = strstr(line, " - cgroup2 ");
			if (!dash)
				continue;
			char mp[512];
			if (sscanf(line, "%*s %*s %*s %*s %511s", mp) == 1)
				snprintf(mnt, sizeof(mnt), "%s", mp);
			break;
		}
		fclose(f);
	}
	if (!mnt[0] || !cg[0]) {
		why(p, "cgroup v2: not mounted (memory/pids limits use rlimits and the "
		       "supervisor instead)");
	} else {
		char ctl[1400];
		snprintf(p->cgroup2_path, sizeof(p->cgroup2_path), "%s%s", mnt,
		         strcmp(cg, "/") ? cg : "");
		snprintf(ctl, sizeof(ctl), "%s/cgroup.controllers", p->cgroup2_path);
		buf[0] = '\0';
		read_small(ctl, buf, sizeof(buf));
		snprintf(ctl, sizeof(ctl), "%s/cgroup.subtree_control", p->cgroup2_path);
		if (!strstr(buf, "memory") || !strstr(buf, "pids"))
			why(p, "cgroup v2: no memory/pids controllers in this process's cgroup "
			       "(a cgroup v1 or hybrid host; boot with "
			       "systemd.unified_cgroup_hierarchy=1 and run under a unit with "
			       "Delegate=yes)");
		else if (!strcmp(cg, "/") || access(ctl, W_OK) < 0)
			why(p, "cgroup v2: this process's cgroup is not delegated to it (run "
			       "under systemd-run --user -p Delegate=yes or a unit with "
			       "Delegate=yes)");
		else
			p->cgroup2 = 1;
		if (!p->cgroup2)
			p->cgroup2_path[0] = '\0';
	}
}

static void probe_once(void)
{
	struct swerve_sandbox_probe *p = &cached;
	char buf[4096], dir[] = "/tmp/swerve-probe-XXXXXX", sub[600];
	memset(p, 0, sizeof(*p));

	if (read_small("/proc/sys/user/max_user_namespaces", buf, sizeof(buf)) > 0 &&
	    atol(buf) == 0)
		why(p, "user namespaces: disabled (sysctl user.max_user_namespaces=0; set it to "
		       "e.g. 100000)");
	if (geteuid() != 0 &&
	    read_small("/proc/sys/kernel/unprivileged_userns_clone", buf, sizeof(buf)) > 0 &&
	    atoi(buf) == 0)
		why(p, "user namespaces: unprivileged use disabled (sysctl "
		       "kernel.unprivileged_userns_clone=0; set it to 1)");
	if (geteuid() != 0 &&
	    read_small("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", buf, sizeof(buf)) >
	            0 &&
	    atoi(buf) == 1)
		why(p, "user namespaces: restricted by AppArmor (sysctl "
		       "kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile "
		       "allowing userns for this program)");

	int have_dir = mkdtemp(dir) != NULL;
	if (have_dir) {
		const char *subs[] = {"l", "u", "w", "m"};
		for (int i = 0; i < 4; i++) {
			snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
			mkdir(sub, 0700);
		}
	}
	pid_t pid = fork();
	if (pid == 0)
		_exit(probe_child(have_dir ? dir : "/nonexistent"));
	int st = 0;
	if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st)) {
		p->userns = WEXITSTATUS(st) != 1;
		p->overlay_userns = WEXITSTATUS(st) == 0;
	}
	if (!p->userns && !p->why[0])
		why(p, "user namespaces: unshare(CLONE_NEWUSER) failed (check sysctl "
		       "user.max_user_namespaces > 0 and kernel.unprivileged_userns_clone=1)");
	if (p->userns && !p->overlay_userns)
		why(p, "overlayfs in a user namespace: not supported (needs Linux >= 5.11 with "
		       "overlay; workspaces fall back to plain directories)");
	if (have_dir) {
		const char *subs[] = {"l", "u/", "w/work", "w", "u", "m"};
		for (int i = 0; i < 6; i++) {
			snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
			rmdir(sub);
		}
		rmdir(dir);
	}

	/* seccomp with user notification and kill-process */
	if (prctl(PR_GET_SECCOMP) < 0 ||
	    read_small("/proc/sys/kernel/seccomp/actions_avail", buf, sizeof(buf)) <= 0 ||
	    !strstr(buf, "user_notif") || !strstr(buf, "kill_process"))
		why(p, "seccomp: filters with user_notif and kill_process are required (Linux >= "
		       "5.0 with CONFIG_SECCOMP_FILTER)");
	else
		p->seccomp = 1;

	probe_cgroup(p);
}

int sb_probe_quick(struct swerve_sandbox_probe *p)
{
	char buf[4096];
	memset(p, 0, sizeof(*p));
	if (read_small("/proc/sys/user/max_user_namespaces", buf, sizeof(buf)) > 0 &&
	    atol(buf) == 0)
		why(p, "user namespaces: disabled (sysctl user.max_user_namespaces=0; set it to "
		       "e.g. 100000)");
	if (geteuid() != 0 &&
	    read_small("/proc/sys/kernel/unprivileged_userns_clone", buf, sizeof(buf)) > 0 &&
	    atoi(buf) == 0)
		why(p, "user namespaces: unprivileged use disabled (sysctl "
		       "kernel.unprivileged_userns_clone=0; set it to 1)");
	if (read_small("/proc/sys/kernel/seccomp/actions_avail", buf, sizeof(buf)) <= 0 ||
	    !strstr(buf, "user_notif") || !strstr(buf, "kill_process"))
		why(p, "seccomp: filters with user_notif and kill_process are required (Linux >= "
		       "5.0 with CONFIG_SECCOMP_FILTER)");
	if (p->why[0])
		return -1;
	p->userns = p->seccomp = 1; /* presumed; the full probe checks */
	probe_cgroup(p);
	return 0;
}

int swerve_sandbox_probe(struct swerve_sandbox_probe *out)
{
	pthread_once(&once, probe_once);
	*out = cached;
	return 0;
}
