/* gpu_stream.h - the stream the training step launches on (internal to
 * policy/; included by gpu_util.h and by gpu_rows.cuh, which the row-pass
 * benchmarks include without gpu_util.h's error macros).
 *
 * Round 14 (POLICY_GPU_GRAPH=1, policy/gpu_graph.h): the stream every
 * launch, copy and cuBLAS call of the training step issues on. 0 (the
 * legacy default stream) unless the step of a model in graph mode runs
 * (policy_gpu_step / policy_gpu_adamw set it to that model's stream, which
 * a CUDA graph can capture, and back to 0 on return). Defined in gpu.cu. */
#ifndef SWERVE_POLICY_GPU_STREAM_H
#define SWERVE_POLICY_GPU_STREAM_H

#include <cuda_runtime.h>

extern cudaStream_t policy_gpu_st;
#define PST policy_gpu_st

#endif
