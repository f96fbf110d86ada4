/* reap.c - see reap.h. */
#include "envs/reap.h"
#include "envs/clock.h"

#include <errno.h>
#include <stdio.h>
#include <sys/wait.h>

int swerve_reap_next(const struct swerve_reap *r, int *status)
{
	for (;;) {
		pid_t pid = waitpid(-1, status, WNOHANG);
		if (pid == 0) {
			if (r->idle)
				r->idle(r->arg);
			swerve_sleep_ms(r->idle_ms);
			continue;
		}
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		for (int i = 0; i < r->n; i++)
			if (r->pid_at(r->arg, i) == pid)
				return i;
	}
}

void swerve_worker_death(char *buf, size_t len, int status)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "worker died (signal %d) during the episode", WTERMSIG(status));
	else
		snprintf(buf, len, "worker exited (status %d) during the episode",
		         WEXITSTATUS(status));
}
