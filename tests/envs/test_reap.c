/* test_reap.c - envs/reap.c: the ended worker's slot and status, idle calls
 * while none has ended, other children passed over, -1 when none is left,
 * and the lost-episode reasons. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "envs/reap.h"

struct pool {
	pid_t pids[3];
	int idles;
};

static pid_t pid_at(void *arg, int i)
{
	return ((struct pool *)arg)->pids[i];
}

static void idle(void *arg)
{
	((struct pool *)arg)->idles++;
}

static pid_t child(int ms, int code)
{
	pid_t p = fork();
	if (p == 0) {
		usleep((useconds_t)ms * 1000);
		_exit(code);
	}
	cr_assert_gt(p, 0);
	return p;
}

Test(reap, slots_statuses_idle_and_strangers)
{
	struct pool pl = {{0, 0, 0}, 0};
	pid_t stranger = child(0, 9); /* no slot's worker: passed over */
	pl.pids[1] = child(150, 3);
	pl.pids[2] = fork();
	if (pl.pids[2] == 0) {
		pause();
		_exit(0);
	}
	struct swerve_reap r = {3, pid_at, idle, &pl, 10};
	int st = 0;
	kill(pl.pids[2], SIGKILL);
	int first = swerve_reap_next(&r, &st);
	cr_assert_eq(first, 2);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	pl.pids[2] = 0;
	int second = swerve_reap_next(&r, &st);
	cr_assert_eq(second, 1);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 3);
	cr_assert_gt(pl.idles, 3, "idle ran %d times while slot 1 slept 150 ms", pl.idles);
	pl.pids[1] = 0;
	cr_assert_eq(swerve_reap_next(&r, &st), -1, "no child left");
	cr_assert_eq(waitpid(stranger, NULL, WNOHANG), -1, "the stranger was reaped too");
}

Test(reap, lost_episode_reasons)
{
	char b[128];
	swerve_worker_death(b, sizeof(b), 9); /* signalled by SIGKILL */
	cr_assert_str_eq(b, "worker died (signal 9) during the episode");
	swerve_worker_death(b, sizeof(b), 3 << 8);
	cr_assert_str_eq(b, "worker exited (status 3) during the episode");
}
