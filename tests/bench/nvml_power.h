/* nvml_power.h - what the card draws while a benchmark runs (round 26,
 * issue 10): the energy NVML's counter reports over a stretch of work and
 * the SM clock sampled by a thread during it, so that a row's time can be
 * read against the power cap it ran under (an H100 SXM throttles at 700 W).
 * NVML is the driver's library, opened at run time (dlopen of
 * libnvidia-ml.so.1): where it or the device's counters are missing, the
 * readings are NaN and the benchmark runs on. */
#ifndef SWERVE_TESTS_BENCH_NVML_POWER_H
#define SWERVE_TESTS_BENCH_NVML_POWER_H

struct gpu_power {
	double joules;  /* energy over the stretch (NaN: no counter) */
	double seconds; /* its wall time */
	double watts;   /* joules / seconds */
	double mhz;     /* mean SM clock of the samples (NaN: none) */
	int samples;
};

/* starts a stretch on CUDA device dev (the sampler thread runs until
 * gpu_power_stop); returns 0, or -1 with a one-line reason on stderr the
 * first time NVML cannot be used (the stretch then reads NaN) */
int gpu_power_start(int dev);
/* ends the stretch started last and fills *p */
void gpu_power_stop(struct gpu_power *p);
/* round 27: the energy counter now (mJ since the driver loaded) and, where
 * mhz is given, the SM clock (0 where unread); 0, or -1 without NVML.
 * The counter moves in steps (tens of ms apart on an H100): a window
 * shorter than a few steps reads from its edges (graph_energy.c) */
int gpu_power_read(int dev, unsigned long long *mj, unsigned *mhz);

#endif
