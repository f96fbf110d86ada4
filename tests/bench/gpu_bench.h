/* gpu_bench.h - what the C GPU benchmarks (gpu_train.c, gpu_idle.c) share:
 * stop with a message, a monotonic clock, and rows that run under a few
 * environment switches ("VAR=VALUE ..." set for the row, unset after it),
 * and the benchmark config (issue 10's ~125M class: 115M parameters active, at
 * sequence length 2048).
 * Header-only (static inline). The CUDA C++ benchmarks use gpu_bench.cuh. */
#ifndef SWERVE_GPU_BENCH_H
#define SWERVE_GPU_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/policy.h"

/* stop with a printf-style message */
#define DIE(...)                                                                                   \
	do {                                                                                       \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
		exit(1);                                                                           \
	} while (0)

/* seconds on the monotonic clock */
static inline double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* sets (on) or unsets the VAR=VALUE words of env; words without '=' are
 * skipped; env longer than 1023 characters stops the benchmark */
static inline void env_apply(const char *env, int on)
{
	char buf[1024], *save = NULL;
	if (strlen(env) >= sizeof(buf))
		DIE("environment row too long (%zu characters): %.40s...", strlen(env), env);
	snprintf(buf, sizeof(buf), "%s", env);
	for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(w, '=');
		if (!eq)
			continue;
		*eq = 0;
		if (on)
			setenv(w, eq + 1, 1);
		else
			unsetenv(w);
	}
}

/* the benchmarks' model: 12 layers (softmax attention at layer 7, lightning
 * elsewhere), dim 768, 12 heads x 64 (4 KV heads), rotary 32, 8 experts
 * top-2 x 1024, vocab 32000, sequences up to 2048 */
static inline void bench_config(struct policy_config *c)
{
	policy_config_default(c);
	c->vocab_size = 32000;
	c->dim = 768;
	c->n_layers = 12;
	c->n_heads = 12;
	c->head_dim = 64;
	c->n_kv_heads = 4;
	c->rotary_dim = 32;
	c->softmax_every = 8;
	c->n_experts = 8;
	c->top_k = 2;
	c->expert_hidden = 1024;
	c->max_seq_len = 2048;
}

#endif
