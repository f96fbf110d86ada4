/* clock.h - monotonic time and short sleeps for the runner's loops. */
#ifndef SWERVE_ENVS_CLOCK_H
#define SWERVE_ENVS_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in seconds / microseconds. Can't fail. */
double swerve_now_s(void);
uint64_t swerve_now_us(void);

/* Sleeps ms milliseconds (a signal may end it early). */
void swerve_sleep_ms(int ms);

#endif
