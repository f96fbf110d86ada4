/* wlock.c - a blocking, crash-safe writer lock shared by every swerve process
 * on one database: a robust, process-shared pthread mutex in a small sidecar
 * file (<db>-wlock, next to -wal and -shm).
 *
 * Why: SQLite's own write lock cannot be waited on, only polled (its busy
 * handler sleeps and retries). With 8 writers on 2 cores the lock sat idle
 * between a commit and the next poll, and a preempted holder made everyone
 * sleep: 1,360-2,191 results/s with 8 processes against ~2,900 with one, on
 * 2 pinned cores. Waiters blocked on a futex are woken the moment the holder
 * unlocks: ~2,950/s with 8 (tests/bench/RESULTS.md).
 *
 * Safety: the mutex is ROBUST: if its holder dies (SIGKILL mid-transaction)
 * the next locker gets EOWNERDEAD, marks it consistent and goes on; SQLite
 * itself rolls back the dead holder's uncommitted transaction. The mutex only
 * orders swerve's writers: SQLite's lock (BEGIN IMMEDIATE, taken after this
 * one) still guards the file against any other writer (sqlite3, Python).
 * Does not: protect against writers on other machines (SQLite over a network
 * file system is unsupported anyway). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WLOCK_MAGIC 0x73776c32u /* "swl2": layout version 2 */
#define WLOCK_SIZE  4096

struct wlock_page {
	uint32_t magic;
	uint32_t size;
	pthread_mutex_t mutex;
};

/* Initialises the mutex; the caller holds flock() on the file. */
static int wlock_init(struct wlock_page *p)
{
	pthread_mutexattr_t a;
	int rc;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
	rc = pthread_mutex_init(&p->mutex, &a);
	pthread_mutexattr_destroy(&a);
	if (rc)
		return rc;
	p->size = (uint32_t)sizeof(*p);
	__atomic_store_n(&p->magic, WLOCK_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

int db_wlock_open(struct swerve_db *db)
{
	char *lp = NULL;
	struct stat sb;
	void *map = MAP_FAILED;
	int fd = -1, err = 0;

	if (asprintf(&lp, "%s-wlock", db->path) < 0)
		return swerve_error_set(SWERVE_ENOMEM, "database %s: out of memory", db->path);
	fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		err = swerve_error_set(SWERVE_EIO, "database %s: writer lock %s: %s", db->path, lp,
		                       strerror(errno));
		goto done;
	}
	/* flock serialises the first-time set-up between processes; it is
	 * released by the kernel if we die here. */
	while (flock(fd, LOCK_EX) != 0)
		if (errno != EINTR) {
			err = swerve_error_set(SWERVE_EIO, "database %s: flock %s: %s", db->path,
			                       lp, strerror(errno));
			goto done;
		}
	if (fstat(fd, &sb) != 0 || sb.st_size < WLOCK_SIZE) {
		/* Real blocks, not a hole: touching a hole on a full disk through
		 * the mapping would be SIGBUS later. */
		static const char zero[WLOCK_SIZE];
		if (pwrite(fd, zero, sizeof(zero), 0) != (ssize_t)sizeof(zero)) {
			err = swerve_error_set(SWERVE_EIO, "database %s: writer lock %s: %s",
			                       db->path, lp,
			                       errno == ENOSPC ? "disk full" : strerror(errno));
			goto unlock;
		}
	}
	map = mmap(NULL, WLOCK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		err = swerve_error_set(SWERVE_EIO, "database %s: mmap %s: %s", db->path, lp,
		                       strerror(errno));
		goto unlock;
	}
	struct wlock_page *p = map;
	if (__atomic_load_n(&p->magic, __ATOMIC_ACQUIRE) != WLOCK_MAGIC || p->size != sizeof(*p)) {
		int rc = wlock_init(p);
		if (rc) {
			err = swerve_error_set(SWERVE_ERROR, "database %s: writer lock: %s",
			                       db->path, strerror(rc));
			goto unlock;
		}
	}
	flock(fd, LOCK_UN);
	db->wlock = p;
	db->wlock_fd = fd;
	free(lp);
	return 0;
unlock:
	flock(fd, LOCK_UN);
done:
	if (map != MAP_FAILED)
		munmap(map, WLOCK_SIZE);
	if (fd >= 0)
		close(fd);
	free(lp);
	return err;
}

void db_wlock_close(struct swerve_db *db)
{
	if (db->wlock_held)
		db_wlock_release(db);
	if (db->wlock)
		munmap(db->wlock, WLOCK_SIZE);
	if (db->wlock_fd >= 0)
		close(db->wlock_fd);
	db->wlock = NULL;
	db->wlock_fd = -1;
}

int db_wlock_acquire(struct swerve_db *db, const char *what)
{
	struct timespec deadline;
	int rc;

	if (!db->wlock || db->wlock_held)
		return 0;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += db->busy_timeout_ms / 1000;
	deadline.tv_nsec += (long)(db->busy_timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	for (;;) {
		rc = pthread_mutex_timedlock(&db->wlock->mutex, &deadline);
		if (rc == 0)
			break;
		if (rc == EOWNERDEAD) {
			/* The previous holder died mid-transaction; SQLite rolls
			 * its transaction back, the mutex is ours. */
			pthread_mutex_consistent(&db->wlock->mutex);
			break;
		}
		if (rc == ENOTRECOVERABLE) {
			/* A holder died between EOWNERDEAD and consistent():
			 * rebuild the mutex under the set-up lock. */
			if (flock(db->wlock_fd, LOCK_EX) == 0) {
				if (pthread_mutex_trylock(&db->wlock->mutex) == ENOTRECOVERABLE)
					wlock_init(db->wlock);
				flock(db->wlock_fd, LOCK_UN);
			}
			continue;
		}
		if (rc == ETIMEDOUT)
			return swerve_error_set(SWERVE_EBUSY,
			                        "database %s: %s: locked by another process for "
			                        "more than %d ms (swerve writer lock)",
			                        db->path, what, db->busy_timeout_ms);
		if (rc == EDEADLK)
			return swerve_error_set(SWERVE_EBUSY,
			                        "database %s: %s: this thread already writes "
			                        "through another handle",
			                        db->path, what);
		return swerve_error_set(SWERVE_ERROR, "database %s: %s: writer lock: %s", db->path,
		                        what, strerror(rc));
	}
	db->wlock_held = 1;
	return 0;
}

void db_wlock_release(struct swerve_db *db)
{
	if (db->wlock && db->wlock_held) {
		pthread_mutex_unlock(&db->wlock->mutex);
		db->wlock_held = 0;
	}
}
