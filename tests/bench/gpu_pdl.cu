/* gpu_pdl.cu - what programmatic dependent launch (kernels/pdl.cuh) saves
 * between dependent kernels on this card: a chain of N small kernels, each
 * reading what the one before wrote (a grid of 4 blocks an SM doing a few
 * microseconds of work), timed as <<<>>> launches, with the PDL attribute
 * and pdl::enter() at each kernel's top, and both as a CUDA graph; us a
 * kernel, the median of 7 runs. Prints that it skipped where there is no
 * GPU. */
#include <cuda_runtime.h>

#include <algorithm>
#include <stdio.h>
#include <vector>

#include "kernels/pdl.cuh"
#include "tests/bench/gpu_bench.cuh"

template <bool P> __global__ void k_step(float *x, int n, int iters)
{
	if (P)
		pdl::enter();
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		float v = x[i];
		for (int k = 0; k < iters; k++)
			v = v * 0.999f + 0.001f;
		x[i] = v;
	}
}

static float chain(bool pdl_on, bool graph, float *x, int n, int iters, int N, cudaStream_t s)
{
	swerve_gpu_pdl = pdl_on;
	auto launch_all = [&] {
		for (int i = 0; i < N; i++) {
			if (pdl_on)
				CK(pdl::launch(k_step<true>, dim3(132 * 4), dim3(256), 0, s, x, n,
				               iters));
			else
				k_step<false><<<132 * 4, 256, 0, s>>>(x, n, iters);
		}
	};
	cudaGraphExec_t ge = nullptr;
	if (graph) {
		cudaGraph_t g;
		CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
		launch_all();
		CK(cudaStreamEndCapture(s, &g));
		CK(cudaGraphInstantiate(&ge, g, 0));
		CK(cudaGraphDestroy(g));
	}
	cudaEvent_t a, b;
	CK(cudaEventCreate(&a));
	CK(cudaEventCreate(&b));
	std::vector<float> t;
	for (int r = 0; r < 8; r++) {
		CK(cudaEventRecord(a, s));
		if (graph)
			CK(cudaGraphLaunch(ge, s));
		else
			launch_all();
		CK(cudaEventRecord(b, s));
		CK(cudaEventSynchronize(b));
		float ms;
		CK(cudaEventElapsedTime(&ms, a, b));
		if (r)
			t.push_back(ms);
	}
	CK(cudaGetLastError());
	if (ge)
		cudaGraphExecDestroy(ge);
	cudaEventDestroy(a);
	cudaEventDestroy(b);
	std::sort(t.begin(), t.end());
	swerve_gpu_pdl = 0;
	return t[t.size() / 2] * 1e3f / N;
}

int main(void)
{
	int nd = 0;
	if (cudaGetDeviceCount(&nd) != cudaSuccess || nd == 0) {
		printf("gpu_pdl: skipped: no CUDA device\n");
		return 0;
	}
	cudaDeviceProp p;
	CK(cudaGetDeviceProperties(&p, 0));
	const int n = 1 << 20, N = 400;
	float *x;
	cudaStream_t s;
	CK(cudaMalloc(&x, n * 4));
	CK(cudaMemset(x, 0, n * 4));
	CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	printf("card: %s; a chain of %d dependent kernels of %d blocks x 256 threads over %d "
	       "floats; us a kernel (median of 7 runs)\n",
	       p.name, N, 132 * 4, n);
	printf("%-10s %10s %10s %10s %10s %10s\n", "work", "<<<>>>", "PDL", "graph", "graph+PDL",
	       "saved");
	for (int iters : {1, 16, 64, 256}) {
		float a = chain(false, false, x, n, iters, N, s),
		      b = chain(true, false, x, n, iters, N, s);
		float c = chain(false, true, x, n, iters, N, s),
		      d = chain(true, true, x, n, iters, N, s);
		printf("%-10d %10.2f %10.2f %10.2f %10.2f %10.2f\n", iters, a, b, c, d, a - b);
	}
	return 0;
}
