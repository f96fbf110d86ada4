/* reap.h - waiting for a worker pool's processes (envs/pool.c for swerve
 * eval/work, envs/validate.c): which worker ended, and the one-line reason
 * an episode it held was lost. */
#ifndef SWERVE_ENVS_REAP_H
#define SWERVE_ENVS_REAP_H

#include <stddef.h>
#include <sys/types.h>

struct swerve_reap {
	int n;                             /* worker slots */
	pid_t (*pid_at)(void *arg, int i); /* slot i's worker, 0 when empty */
	void (*idle)(void *arg);           /* called while none has ended (may be NULL) */
	void *arg;
	int idle_ms; /* pause between two looks */
};

/* Waits until one of the slots' workers ends: returns its slot (its wait
 * status in *status), or -1 when the caller has no child left. Children
 * that are no slot's worker are reaped and passed over; EINTR is retried. */
int swerve_reap_next(const struct swerve_reap *r, int *status);

/* "worker died (signal 9) during the episode" or "worker exited (status 3)
 * during the episode", from a wait status. */
void swerve_worker_death(char *buf, size_t len, int status);

#endif
