/* gpu_util.h - error-checking macros shared by the policy's CUDA sources
 * (internal to policy/): each returns a negative code with a one-line
 * message naming the call, as every swerve module does. */
#ifndef SWERVE_POLICY_GPU_UTIL_H
#define SWERVE_POLICY_GPU_UTIL_H

#ifdef __cplusplus
extern "C" {
#endif
#include "sandbox/error.h"
#ifdef __cplusplus
}
#endif

#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cuda_runtime.h>

#define CK(call)                                                                                   \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess)                                                             \
			return swerve_error_set(SWERVE_ERROR, "gpu: %s:%d: %s: %s", __FILE__,      \
			                        __LINE__, #call, cudaGetErrorString(e_));          \
	} while (0)
#define CKB(call)                                                                                  \
	do {                                                                                       \
		cublasStatus_t s_ = (call);                                                        \
		if (s_ != CUBLAS_STATUS_SUCCESS)                                                   \
			return swerve_error_set(SWERVE_ERROR, "gpu: %s:%d: cuBLAS status %d",      \
			                        __FILE__, __LINE__, (int)s_);                      \
	} while (0)
#define LAUNCHED() CK(cudaGetLastError())
#define CKR(x)                                                                                     \
	do {                                                                                       \
		int r_ = (x);                                                                      \
		if (r_)                                                                            \
			return r_;                                                                 \
	} while (0)

#include "policy/gpu_stream.h" /* PST: the stream the training step launches on */
/* bumped by every reallocation of a device buffer that a captured step may
 * use (grown scratch): the captured graphs hold its old address */
extern unsigned policy_gpu_alloc_gen;

/* a 1-D launch of n threads in blocks of 256 */
#define GRID(n) (unsigned)(((n) + 255) / 256), 256

/* An environment switch that picks one of n named values: the index of
 * getenv(var) in names, def where var is unset or empty; any other value is
 * SWERVE_EINVAL with a message naming var, the value and what it may be. */
static inline int policy_env_choice(const char *var, const char *const *names, int n, int def)
{
	const char *v = getenv(var);
	char list[256];
	size_t len = 0;
	if (!v || !*v)
		return def;
	for (int i = 0; i < n; i++)
		if (!strcmp(v, names[i]))
			return i;
	list[0] = 0;
	for (int i = 0; i < n && len < sizeof(list); i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
		                        names[i]);
	return swerve_error_set(SWERVE_EINVAL, "%s=%s: not one of %s", var, v, list);
}

/* An environment switch that holds a count of what (0 to max): *out = its
 * value, 0 where var is unset or empty; any other value is SWERVE_EINVAL
 * with a message naming var, the value and what it counts. */
static inline int policy_env_count(const char *var, const char *what, long max, int *out)
{
	const char *v = getenv(var);
	char *end;
	long n;
	*out = 0;
	if (!v || !*v)
		return 0;
	n = strtol(v, &end, 10);
	if (*end || n < 0 || n > max)
		return swerve_error_set(SWERVE_EINVAL, "%s=%s: not a count of %s", var, v, what);
	*out = (int)n;
	return 0;
}

#endif
