/* nvml_power.c - NVML's energy counter and SM clock around a stretch of
 * benchmark work; see nvml_power.h. NVML's few entry points are looked up by
 * name in the driver's libnvidia-ml.so.1 (their C signatures as nvml.h
 * declares them: an int status, 0 = NVML_SUCCESS; the device an opaque
 * pointer), so the benchmark builds where the header is not installed. */
#include "tests/bench/nvml_power.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#define NVML_CLOCK_SM 1 /* nvmlClockType_t's NVML_CLOCK_SM */
#define SAMPLE_NS     2000000L

typedef void *nvml_dev;
static struct {
	int tried, ok;
	nvml_dev dev;
	int (*energy)(nvml_dev, unsigned long long *); /* mJ since the driver loaded */
	int (*clock)(nvml_dev, int, unsigned int *);   /* MHz now */
} nv;

static struct {
	pthread_t th;
	atomic_int run; /* the sampler runs while set */
	double sum;
	int n, have_e, running;
	unsigned long long e0;
	struct timespec t0;
} st;

static int nvml_open(int dev)
{
	int (*init)(void);
	int (*by_pci)(const char *, nvml_dev *);
	char bus[32];
	void *h;
	if (nv.tried)
		return nv.ok ? 0 : -1;
	nv.tried = 1;
	h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "nvml_power: no power readings: libnvidia-ml.so.1: %s\n",
		        dlerror());
		return -1;
	}
	init = (int (*)(void))dlsym(h, "nvmlInit_v2");
	by_pci = (int (*)(const char *, nvml_dev *))dlsym(h, "nvmlDeviceGetHandleByPciBusId_v2");
	nv.energy = (int (*)(nvml_dev, unsigned long long *))dlsym(
	        h, "nvmlDeviceGetTotalEnergyConsumption");
	nv.clock = (int (*)(nvml_dev, int, unsigned int *))dlsym(h, "nvmlDeviceGetClockInfo");
	if (!init || !by_pci || !nv.energy || !nv.clock) {
		fprintf(stderr, "nvml_power: no power readings: libnvidia-ml.so.1 lacks an entry "
		                "point\n");
		return -1;
	}
	if (cudaDeviceGetPCIBusId(bus, sizeof bus, dev) != cudaSuccess || init() != 0 ||
	    by_pci(bus, &nv.dev) != 0) {
		fprintf(stderr, "nvml_power: no power readings: NVML does not know device %d\n",
		        dev);
		return -1;
	}
	nv.ok = 1;
	return 0;
}

static void *sampler(void *arg)
{
	const struct timespec d = {0, SAMPLE_NS};
	(void)arg;
	while (atomic_load(&st.run)) {
		unsigned int mhz;
		if (nv.clock(nv.dev, NVML_CLOCK_SM, &mhz) == 0) {
			st.sum += mhz;
			st.n++;
		}
		nanosleep(&d, NULL);
	}
	return NULL;
}

int gpu_power_start(int dev)
{
	st.sum = 0;
	st.n = 0;
	st.have_e = 0;
	st.running = 0;
	clock_gettime(CLOCK_MONOTONIC, &st.t0);
	if (nvml_open(dev))
		return -1;
	st.have_e = nv.energy(nv.dev, &st.e0) == 0;
	atomic_store(&st.run, 1);
	st.running = pthread_create(&st.th, NULL, sampler, NULL) == 0;
	return 0;
}

void gpu_power_stop(struct gpu_power *p)
{
	struct timespec t1;
	unsigned long long e1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	p->seconds =
	        (double)(t1.tv_sec - st.t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - st.t0.tv_nsec);
	p->joules = p->watts = p->mhz = NAN;
	p->samples = 0;
	if (!nv.ok)
		return;
	if (st.have_e && nv.energy(nv.dev, &e1) == 0 && e1 >= st.e0) {
		p->joules = (double)(e1 - st.e0) * 1e-3;
		p->watts = p->seconds > 0 ? p->joules / p->seconds : NAN;
	}
	atomic_store(&st.run, 0);
	if (st.running)
		pthread_join(st.th, NULL);
	st.running = 0;
	p->samples = st.n;
	if (st.n)
		p->mhz = st.sum / st.n;
}

int gpu_power_read(int dev, unsigned long long *mj, unsigned *mhz)
{
	if (nvml_open(dev) || nv.energy(nv.dev, mj) != 0)
		return -1;
	if (mhz && nv.clock(nv.dev, NVML_CLOCK_SM, mhz) != 0)
		*mhz = 0;
	return 0;
}
