/* support.h - helpers shared by test binaries (the files in tests/support). */
#ifndef SWERVE_TEST_SUPPORT_H
#define SWERVE_TEST_SUPPORT_H

#include <stddef.h>

/* Path of the build directory ($BUILD, default "build"). */
const char *ts_build_dir(void);

/* Path of the swerve binary ($BUILD/swerve), absolute. */
const char *ts_swerve_bin(void);

/* Runs argv (argv[0] a path) with stdin from /dev/null; captures stdout and
 * stderr (NUL-terminated, caller frees) and returns the exit status, or
 * 128+signal. out/err may be NULL. */
int ts_run(char **out, char **err, char *const argv[]);

/* Runs a shell command line; like ts_run. */
int ts_sh(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Makes a fresh temporary directory (removed by ts_rmtree). Never NULL. */
char *ts_mkdtemp(void);

/* rm -rf path. */
void ts_rmtree(const char *path);

/* Writes len bytes to path (creating parents); returns 0 or -1. */
int ts_write_file(const char *path, const void *data, size_t len);

/* Reads a whole file (NUL-terminated, caller frees); NULL on failure. */
char *ts_read_file(const char *path, size_t *len);

#endif
