/* bench_clone.c - why the sandbox starts its init and command with CLONE_VM
 * (sandbox/spawn.c, "shared-memory start"): the cost of starting and
 * reaping a child of this process (which maps the same libraries as a
 * swerve worker) by fork, against a clone(CLONE_VM) child on its own stack,
 * each with no namespace and with the pid, ipc and cgroup namespaces a run
 * creates. Median of N (default 500) fork/clone + _exit + waitpid, in us.
 * Usage: bench_clone [N] (the namespace rows need root; skipped otherwise) */
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int child_exit(void *arg)
{
	(void)arg;
	_exit(0);
}

/* median us of n starts+reaps; -1 when the start is refused */
static double median_us(int n, int vm, unsigned long flags, char *stack_top, uint64_t *t)
{
	for (int i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		pid_t p = vm ? clone(child_exit, stack_top, (int)(CLONE_VM | flags | SIGCHLD), NULL)
		             : (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, NULL, NULL, 0);
		if (p == 0)
			_exit(0);
		if (p < 0)
			return -1;
		waitpid(p, NULL, 0);
		t[i] = now_ns() - t0;
	}
	qsort(t, (size_t)n, sizeof(*t), cmp);
	return (double)t[n / 2] / 1000.0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 500;
	if (n < 10)
		n = 10;
	uint64_t *t = calloc((size_t)n, sizeof(*t));
	char *stack = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
	                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (!t || stack == MAP_FAILED)
		return 1;
	printf("start + reap of a child of a process mapping %s, median of %d (us)\n",
	       "libswerve's libraries (as a worker does)", n);
	printf("%-34s %10s %16s\n", "namespaces", "fork", "clone(CLONE_VM)");
	const struct {
		const char *name;
		unsigned long flags;
	} rows[] = {
	        {"none", 0},
	        {"pid + ipc + cgroup (a run's)", CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWCGROUP}};
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		double f = median_us(n, 0, rows[r].flags, NULL, t);
		double v = median_us(n, 1, rows[r].flags, stack + (1 << 20), t);
		if (f < 0 || v < 0) {
			printf("%-34s skipped (needs root)\n", rows[r].name);
			continue;
		}
		printf("%-34s %10.1f %16.1f\n", rows[r].name, f, v);
	}
	return 0;
}
