/* graph_energy.h - where a training step's energy goes (round 27, issue
 * 10): every kernel node of a captured CUDA graph run alone, back to back
 * for a window, with NVML's energy counter around it (nvml_power.h).
 *
 * At the H100's 700 W cap a step's time follows its energy, so the kernels
 * worth changing are those whose joules are large, not only those whose
 * time is. Each node runs in a copy of the graph with every other node
 * removed (its launch attributes kept), so a kernel repeated alone reads
 * what the step left in memory: kernels that accumulate (dW += ...) keep
 * adding, which changes their values, not their work; the caller's step,
 * run again after each node, puts back what a step leaves. A kernel alone
 * settles at its own clock (a GEMM at the cap's, a memory-bound pass
 * higher than inside the step), so its joules are an estimate of its
 * share, checked against the whole step's measured energy. */
#ifndef SWERVE_TESTS_BENCH_GRAPH_ENERGY_H
#define SWERVE_TESTS_BENCH_GRAPH_ENERGY_H

#include <stdio.h>

#define GE_MAX_KERNELS 256

struct ge_kernel {
	char name[112];
	const char *cls; /* its class (graph_energy.c's table, as ncu_util.py's) */
	int calls;       /* nodes of this kernel a step */
	double ms;       /* summed time a call alone, over its calls */
	double j;        /* summed energy a call alone */
	double mhz_ms;   /* mean SM clock x ms, summed */
};

struct ge_table {
	int n;
	struct ge_kernel k[GE_MAX_KERNELS];
	double idle_w; /* the card's draw with nothing running */
	int skipped;   /* kernel nodes not run alone (graph_energy.c's unsafe_alone) */
};

/* the card's draw at rest, between two moves of the energy counter at
 * least 0.5 s apart, into t->idle_w (NaN without NVML) */
void graph_energy_idle(struct ge_table *t, int dev);
/* runs every kernel node of graph (a cudaGraph_t) alone on a stream of
 * its own, back to back for window_ms after a warm-up, adding a row per
 * kernel name to *t, and after each node restore(rctx) (NULL: none; the
 * caller's whole step again, so that the next kernel reads the values a
 * step leaves, not those of a kernel repeated thousands of times, whose
 * accumulated or overflowed values draw different power); stops the
 * benchmark on a CUDA error or a node still running 10 s after its
 * launches */
void graph_energy_add(struct ge_table *t, void *graph, double window_ms, int dev,
                      void (*restore)(void *), void *rctx);
/* launch(ctx) called back to back (20 ms of work ahead of the clock,
 * est_ms a call) until NVML's energy counter has moved twice at least
 * window_ms apart (30 ms after the start): the draw between those two
 * moves, *w (the counter moves in steps tens of ms apart, so a window is
 * read from its edges, not its ends); the mean time a call from the first
 * launch to the synchronised end, *call_ms; the mean SM clock read between
 * the edges, *mhz. 0, or -1 without NVML. */
int graph_energy_edges(void (*launch)(void *), void *ctx, double est_ms, double window_ms, int dev,
                       double *w, double *call_ms, double *mhz);
/* adds a row measured elsewhere (e.g. a host call looped by the caller) */
void graph_energy_row(struct ge_table *t, const char *name, const char *cls, int calls, double ms,
                      double j, double mhz);
/* prints the kernels (the top by energy) and the classes, each with its
 * time and energy alone and their shares; step_ms and step_j: the step as
 * measured looped (graph_energy_edges), to compare the sums against (0: not
 * given) */
void graph_energy_print(const struct ge_table *t, FILE *f, int top, double step_ms, double step_j);

#endif
