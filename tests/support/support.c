/* support.c - process and file helpers for tests. Aborts on setup failures:
 * a test that cannot set itself up must not pass. */
#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *ts_build_dir(void)
{
	const char *b = getenv("BUILD");
	return b && *b ? b : "build";
}

const char *ts_swerve_bin(void)
{
	static char path[PATH_MAX];
	char rel[PATH_MAX];
	if (!path[0]) {
		snprintf(rel, sizeof(rel), "%s/swerve", ts_build_dir());
		if (!realpath(rel, path)) {
			fprintf(stderr, "support: %s: %s\n", rel, strerror(errno));
			abort();
		}
	}
	return path;
}

struct buf {
	char *p;
	size_t n, cap;
};

static void buf_add(struct buf *b, const char *d, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
	b->p[b->n] = '\0';
}

int ts_run(char **out, char **err, char *const argv[])
{
	int po[2], pe[2], status;
	struct buf bo = {0}, be = {0};
	pid_t pid;

	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC))
		abort();
	pid = fork();
	if (pid < 0)
		abort();
	if (pid == 0) {
		int dn = open("/dev/null", O_RDONLY);
		dup2(dn, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	buf_add(&bo, "", 0);
	buf_add(&be, "", 0);
	struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
	int open_fds = 2;
	while (open_fds > 0) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			abort();
		}
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char tmp[65536];
			ssize_t r = read(fds[i].fd, tmp, sizeof(tmp));
			if (r <= 0) {
				close(fds[i].fd);
				fds[i].fd = -1;
				open_fds--;
			} else {
				buf_add(i == 0 ? &bo : &be, tmp, (size_t)r);
			}
		}
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			abort();
	if (out)
		*out = bo.p;
	else
		free(bo.p);
	if (err)
		*err = be.p;
	else
		free(be.p);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

int ts_sh(char **out, char **err, const char *fmt, ...)
{
	char *cmd;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		abort();
	va_end(ap);
	char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	int rc = ts_run(out, err, argv);
	free(cmd);
	return rc;
}

char *ts_mkdtemp(void)
{
	const char *base = getenv("TMPDIR");
	char *p;
	if (asprintf(&p, "%s/swerve-test-XXXXXX", base && *base ? base : "/tmp") < 0)
		abort();
	if (!mkdtemp(p))
		abort();
	return p;
}

void ts_rmtree(const char *path)
{
	if (!path || !*path || strcmp(path, "/") == 0)
		return;
	ts_sh(NULL, NULL, "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", path, path);
}

int ts_write_file(const char *path, const void *data, size_t len)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		ts_sh(NULL, NULL, "mkdir -p '%s'", dir);
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(data, 1, len, f);
	return (fclose(f) == 0 && w == len) ? 0 : -1;
}

char *ts_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b = {0};
	char tmp[65536];
	size_t r;
	if (!f)
		return NULL;
	buf_add(&b, "", 0);
	while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_add(&b, tmp, r);
	fclose(f);
	if (len)
		*len = b.n;
	return b.p;
}
