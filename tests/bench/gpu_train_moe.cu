/* gpu_train_moe.cu - the grouped MoE kernels of policy/gpu_moe.cu alone, at
 * the training benchmark's shape (T 8192 tokens, top-2 of 8 experts, D 768,
 * F 1024): each projection's time and TFLOP/s for a balanced routing and for
 * the benchmark's skewed one (44% of the rows to one expert), on each kernel
 * variant (POLICY_GPU_MOE_KERNEL=wg, wgt, wgtd, wgm, wgp, ws2, mma, wg256;
 * round 8: wgtd+tma = wgtd with POLICY_GPU_MOE_EPI=tma; round 9: wgtdp,
 * wgtdp/c132 (persistent CTAs, see all_env); round 10: wsb, wsb/c66, wsb2;
 * round 11: wsb3; round 12: wsb4, wsb4a, wsb4d; round 13: wsb5 (wsb2 with
 * down dX in k_ws, h1 / h3 by TMA); round 14: wsb6, wsb6u (wsb2 with the
 * epilogues of up, down and up dX / of up only deferred under the next
 * tile's main loop); round 16: wsb7 (wsb2 with up and down in the
 * ping-pong kernel run by 2-CTA clusters sharing B by TMA multicast),
 * wsb7d (only down), wsb7u (only up), wsb7dx (wsb7 + up dX there: wrong
 * results on an H100, timing only); round 19: wsb8 (wsb3w with down dX
 * as wsb5's k_ws plus the tile's h1 / h3 prefetched into L2 before its k
 * blocks; "wsb8@P" = POLICY_GPU_MOE_WSB8_PF=P: next (one tile ahead), none
 * (no prefetch)), wsb8g (wsb3w with wgtd's down dX prefetching its h1 / h3
 * tile into L2), wsb8r (round 11's k_ws down dX, h1 / h3 into registers, plus
 * the L2 prefetch), wsb8h (wgtd's down dX under L2 eviction priorities: W2
 * evict_last, h1 / h3 and dh13 evict_first), wsb8k (wsb5's k_ws down dX under
 * the same), wsb3w (round 16's default, named for the comparison); round
 * 19b: wsb9a, wsb9b, wsb9p, wsb9c (wsb3w with down dX in k_mgx: wgtd's with a
 * producer warp and no CTA barrier a k block; a: a block's wgmma in flight,
 * b: each waited for, p: a + dyp prefetched into L2 a ring ahead, c: a with
 * dh13 packed by cvt.rn.bf16x2), wsb9d (b with c's packing), wsb9e (d with
 * the row-tile walk's offs loaded at once); round 20: wsb10, wsb10b
 * (wsb3w with down dX in k_mgy: persistent, two consumer warpgroups taking
 * tiles in turn, a tile's epilogue under the next tile's k blocks; 10: a
 * block's wgmma in flight, 10b: each waited for), wsb10c / wsb10d (10b /
 * 10 with a 5-stage ring and one h1 / h3 buffer the consumers share);
 * round 23: wsb3w!red (wsb3w with POLICY_GPU_MOE_DW_ADD=red: the weight
 * gradients added in L2 by red.global.add instead of load + add + store);
 * argv: a number, how
 * many of these to run from the first, or the variants by name; default
 * all), median of 20
 * launches after 3 warm-ups (CUDA events), random bf16 inputs. Round 7:
 * also the gather pass (x -> xg in row order) and up / up dW reading xg
 * (POLICY_GPU_MOE_GATHER=copy), and the layer with them. Prints a table
 * last (x = the first variant run's time / this; then each projection side
 * by side). */
#include "policy/gpu_moe.h"
#include "tests/bench/gpu_bench.cuh"

#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *dev_rand(size_t n, float scale)
{
	uint16_t *h = (uint16_t *)malloc(n * 2);
	void *d;
	for (size_t i = 0; i < n; i++) {
		float f = scale * ((float)rand() / RAND_MAX * 2 - 1);
		uint32_t u;
		memcpy(&u, &f, 4);
		h[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
	}
	if (cudaMalloc(&d, n * 2 + 16) != cudaSuccess)
		DIE("cudaMalloc");
	cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice);
	free(h);
	return d;
}

static int cmpf(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

#define NVAR 49
#define NP   17

int main(int argc, char **argv)
{
	/* GPU_TRAIN_MOE_T: the tokens (default 8192; round 24: 4 x 8192 is one
	 * weight-gradient launch over a whole 4-micro-batch window) */
	const char *tenv = getenv("GPU_TRAIN_MOE_T");
	const int T = tenv && atoi(tenv) > 0 ? atoi(tenv) : 8192, K = 2, E = 8, D = 768, F = 1024,
	          R = T * K;
	/* rows 6, 7: the weight gradients stored (beta 0, round 6: an arena just
	 * cleared), not in the layer's total (which adds, as every micro-batch
	 * after a window's first); row 12 (round 23): two layers' down dW (the
	 * same inputs twice) in one launch (POLICY_GPU_MOE_DW_PAIR), against
	 * twice row 3 */
	const char *names[NP] = {"up (w1|w3 + SwiGLU)",    "down (w2, slot rows)",
	                         "down dX (+SwiGLU bwd)",  "down dW",
	                         "up dX (slot rows)",      "up dW (w1|w3)",
	                         "down dW stored",         "up dW stored",
	                         "gather x -> xg (pass)",  "up, A = xg",
	                         "up dW, B = xg",          "up dW xg stored",
	                         "down dW, 2 layers in 1", "up dW xg, 4 x T/4",
	                         "up dW xg, 4 x T/4 in 1", "down dW, 4 x T/4",
	                         "down dW, 4 x T/4 in 1"};
	const double fl[NP] = {2.0 * R * D * 2 * F, 2.0 * R * F * D,     2.0 * R * D * F,
	                       2.0 * R * D * F,     2.0 * R * 2 * F * D, 2.0 * R * 2 * F * D,
	                       2.0 * R * D * F,     2.0 * R * 2 * F * D, 0,
	                       2.0 * R * D * 2 * F, 2.0 * R * 2 * F * D, 2.0 * R * 2 * F * D,
	                       4.0 * R * D * F,     2.0 * R * 2 * F * D, 2.0 * R * 2 * F * D,
	                       2.0 * R * D * F,     2.0 * R * D * F};
	double ms_tab[2 * NVAR][NP]; /* (kernel, routing) */
	double lay[NVAR][2], layg[NVAR][2], lay_f = 0;
	/* round 9: wgtdp = wgtd + EPI=tma with up (A = xg) and down dX in
	 * persistent CTAs (its other rows are wgtd+tma's kernels); wgtdp/c132 =
	 * the same with at most 132 CTAs (POLICY_GPU_MOE_CTAS: one an SM on an
	 * H100 SXM); round 10: wsb = up (A = xg) in policy/gpu_moe_ws.cu's
	 * warp-specialised persistent 128 x 256 tiles, its other rows wgtd+tma's
	 * kernels; wsb/c66 = the same on half the SMs (is the grid the limit);
	 * wsb2 = wsb with down and up dX in that kernel too; round 11: wsb3 =
	 * wsb2 with down dX, down dW and up dW from xg there too; round 12:
	 * wsb4 = wsb2's three products + down dX with ping-pong consumers (64 x
	 * 256 tiles), wsb4a = wsb4 with wgtd's down dX, wsb4d = wsb2 with only
	 * down in the ping-pong kernel; round 13: wsb5 = wsb2 with down dX in
	 * k_ws, the tile's h1 / h3 by TMA into the ring (its row "down dX"
	 * against wsb2's = wgtd+tma's kernel); round 14: wsb6 = wsb2 with up
	 * (A = xg), down and up dX's epilogues deferred under the next tile's
	 * main loop, wsb6u = only up's (rows "up, A = xg", "down", "up dX"
	 * against wsb2's; name a variant twice to interleave repeats); wsb6r =
	 * wsb6 with each chunk after the previous block's release; round 15:
	 * "wsb2:S" = wsb2 with POLICY_GPU_MOE_WSB_SILU=S (fast: up's epilogue
	 * with fewer MUFU ops and stmatrix; stsm: only the stmatrix stores;
	 * fastshfl: only the math; ftz: wsb2's epilogue with e^-x by
	 * ex2.approx.ftz, bit for bit; the row "up, A = xg" against wsb2's) */
	static const char *const all_env[NVAR] = {
	        "wg",         "wgt",       "wgtd",      "wgm",       "wgp",
	        "ws2",        "mma",       "wg256",     "wgtd+tma",  "wgtdp",
	        "wgtdp/c132", "wsb",       "wsb/c66",   "wsb2",      "wsb3",
	        "wsb4",       "wsb4a",     "wsb4d",     "wsb5",      "wsb6",
	        "wsb6u",      "wsb6r",     "wsb2:fast", "wsb2:stsm", "wsb2:fastshfl",
	        "wsb2:ftz",   "wsb7",      "wsb7d",     "wsb7u",     "wsb7dx",
	        "wsb8",       "wsb8@next", "wsb8@none", "wsb8g",     "wsb3w",
	        "wsb8r",      "wsb8h",     "wsb8k",     "wsb9a",     "wsb9b",
	        "wsb9p",      "wsb9c",     "wsb9d",     "wsb9e",     "wsb10",
	        "wsb10b",     "wsb10c",    "wsb10d",    "wsb3w!red"};
	const char *var_env[NVAR];
	int ndev = 0, nvar = 0;
	if (argc > 1 && argv[1][0] >= '0' && argv[1][0] <= '9') { /* the first n */
		int n = atoi(argv[1]);
		if (n < 1 || n > NVAR)
			n = NVAR;
		for (; nvar < n; nvar++)
			var_env[nvar] = all_env[nvar];
	} else if (argc > 1) { /* by name */
		for (int i = 1; i < argc && nvar < NVAR; i++) {
			int k = 0;
			while (k < NVAR && strcmp(argv[i], all_env[k]))
				k++;
			if (k == NVAR)
				DIE("unknown variant %s", argv[i]);
			var_env[nvar++] = all_env[k];
		}
	} else {
		for (; nvar < NVAR; nvar++)
			var_env[nvar] = all_env[nvar];
	}
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
		printf("gpu_train_moe: skipped: no CUDA device\n");
		return 0;
	}
	size_t wsz = (size_t)E * F * D;
	uint16_t *x = (uint16_t *)dev_rand((size_t)T * D, 1),
	         *w1 = (uint16_t *)dev_rand(wsz, 0.04f);
	uint16_t *w3 = (uint16_t *)dev_rand(wsz, 0.04f), *w2 = (uint16_t *)dev_rand(wsz, 0.03f);
	uint16_t *dyp = (uint16_t *)dev_rand((size_t)R * D, 1);
	uint16_t *h1, *h3, *hh, *dh13, *xg;
	float *yp, *dxp, *dw1, *dw3, *dw2;
	int *offs, *perm, *offw; /* offw: round 24's window, 4 segments of R / 4 rows */
	if (cudaMalloc(&h1, (size_t)R * F * 2) || cudaMalloc(&h3, (size_t)R * F * 2) ||
	    cudaMalloc(&hh, (size_t)R * F * 2) || cudaMalloc(&dh13, (size_t)R * 2 * F * 2) ||
	    cudaMalloc(&xg, (size_t)R * D * 2 + 16) || cudaMalloc(&yp, (size_t)R * D * 4) ||
	    cudaMalloc(&dxp, (size_t)R * D * 4) || cudaMalloc(&dw1, wsz * 4) ||
	    cudaMalloc(&dw3, wsz * 4) || cudaMalloc(&dw2, wsz * 4) ||
	    cudaMalloc(&offs, (E + 1) * 4) || cudaMalloc(&offw, 4 * (E + 2) * 4) ||
	    cudaMalloc(&perm, R * 4))
		DIE("cudaMalloc");
	cudaMemset(dw1, 0, wsz * 4);
	cudaMemset(dw3, 0, wsz * 4);
	cudaMemset(dw2, 0, wsz * 4);
	{
		int *p = (int *)malloc(R * 4);
		for (int i = 0; i < R; i++)
			p[i] = i;
		for (int i = R - 1; i > 0; i--) {
			int j = rand() % (i + 1), t = p[i];
			p[i] = p[j];
			p[j] = t;
		}
		cudaMemcpy(perm, p, R * 4, cudaMemcpyHostToDevice);
		free(p);
	}
	cudaEvent_t e0, e1;
	cudaEventCreate(&e0);
	cudaEventCreate(&e1);
	struct policy_moe_dims d = {T, K, E, D, F, offs, perm, 0, 0, 0, 0, NULL};
	/* round 7: up and up dW reading the gathered copy xg (R, D) */
	struct policy_moe_dims dg = {T, K, E, D, F, offs, perm, 1, 0, 0, 0, NULL};
	/* round 24 (POLICY_GPU_MOE_DW_WIN): the same rows as 4 micro-batches of
	 * T / 4 tokens (each routed in the same proportions), a launch each
	 * (the first stored, as the step's) or the 4 in one launch */
	struct policy_moe_dims dw4 = {T / 4, K, E, D, F, offw, perm, 1, 4, R / 4, E + 2, NULL};
	for (int v = 0; v < 2 * nvar; v++) {
		int o[9], skew = v & 1;
		{ /* "NAME+EPI": NAME with POLICY_GPU_MOE_EPI=EPI */
			char k[32];
			snprintf(k, sizeof(k), "%s", var_env[v >> 1]);
			char *silu = strchr(k, ':');
			if (silu) { /* "NAME:S": POLICY_GPU_MOE_WSB_SILU=S */
				*silu = 0;
				setenv("POLICY_GPU_MOE_WSB_SILU", silu + 1, 1);
			} else {
				unsetenv("POLICY_GPU_MOE_WSB_SILU");
			}
			char *add = strchr(k, '!');
			if (add) { /* "NAME!A": POLICY_GPU_MOE_DW_ADD=A (round 23) */
				*add = 0;
				setenv("POLICY_GPU_MOE_DW_ADD", add + 1, 1);
			} else {
				unsetenv("POLICY_GPU_MOE_DW_ADD");
			}
			char *pf = strchr(k, '@');
			if (pf) { /* "NAME@P": POLICY_GPU_MOE_WSB8_PF=P (round 19) */
				*pf = 0;
				setenv("POLICY_GPU_MOE_WSB8_PF", pf + 1, 1);
			} else {
				unsetenv("POLICY_GPU_MOE_WSB8_PF");
			}
			char *plus = strchr(k, '+'), *cap = strstr(k, "/c");
			unsetenv("POLICY_GPU_MOE_CTAS");
			if (cap) { /* "NAME/cN": at most N persistent CTAs */
				*cap = 0;
				setenv("POLICY_GPU_MOE_CTAS", cap + 2, 1);
			}
			if (plus) {
				*plus = 0;
				setenv("POLICY_GPU_MOE_EPI", plus + 1, 1);
			} else { /* round 7's epilogues (EPI=tma the default since round 8);
				  * wgtdp is persistent only with EPI=tma; wsb's other
				  * products are the default's (wgtd + tma) */
				setenv("POLICY_GPU_MOE_EPI",
				       strcmp(k, "wgtdp") && strncmp(k, "wsb", 3) ? "smem" : "tma",
				       1);
			}
			setenv("POLICY_GPU_MOE_KERNEL", k, 1);
		}
		o[0] = 0;
		for (int e = 0; e < E; e++) {
			int c = skew ? (e == 0 ? (int)(0.44 * R) : (R - (int)(0.44 * R)) / (E - 1))
			             : R / E;
			o[e + 1] = o[e] + c;
		}
		o[E] = R;
		cudaMemcpy(offs, o, sizeof(o), cudaMemcpyHostToDevice);
		{
			int ow[4 * 10] = {0};
			for (int sg = 0; sg < 4; sg++) {
				for (int e = 0; e <= E; e++)
					ow[sg * (E + 2) + e] = e == E ? R / 4 : o[e] / 4;
			}
			cudaMemcpy(offw, ow, 4 * (E + 2) * 4, cudaMemcpyHostToDevice);
		}
		for (int k = 0; k < NP; k++) {
			float t[20];
			/* the window's one launch (rows 14, 16) runs where the
			 * variant takes it (policy_moe_dw_window_supported: wsb3w,
			 * wsb3 and the forms built on wsb3w); the other variants'
			 * rows are left out (nan) */
			if ((k == 14 || k == 16) && !policy_moe_dw_window_supported()) {
				ms_tab[v][k] = NAN;
				continue;
			}
			for (int it = 0; it < 23; it++) {
				cudaEventRecord(e0, 0);
				switch (k) {
				case 0: SW(policy_moe_up(&d, h1, h3, hh, x, w1, w3)); break;
				case 1: SW(policy_moe_down(&d, yp, hh, w2)); break;
				case 2: SW(policy_moe_down_dx(&d, dh13, dyp, w2, h1, h3)); break;
				case 3: SW(policy_moe_down_dw(&d, dw2, dyp, hh, 1)); break;
				case 4: SW(policy_moe_up_dx(&d, dxp, dh13, w1, w3)); break;
				case 5: SW(policy_moe_up_dw(&d, dw1, dw3, dh13, x, 1)); break;
				case 6: SW(policy_moe_down_dw(&d, dw2, dyp, hh, 0)); break;
				case 7: SW(policy_moe_up_dw(&d, dw1, dw3, dh13, x, 0)); break;
				case 8: SW(policy_moe_gather(&d, xg, x)); break;
				case 9: SW(policy_moe_up(&dg, h1, h3, hh, xg, w1, w3)); break;
				case 10: SW(policy_moe_up_dw(&dg, dw1, dw3, dh13, xg, 1)); break;
				case 11: SW(policy_moe_up_dw(&dg, dw1, dw3, dh13, xg, 0)); break;
				case 12: /* round 23: two layers' down dW (the second into dw1) */
					SW(policy_moe_down_dw_pair(&d, dw2, dyp, hh, &d, dw1, dyp,
					                           hh, 1));
					break;
				case 13:
				case 15: /* round 24: 4 micro-batches, a launch each */
					for (int sg = 0; sg < 4; sg++) {
						struct policy_moe_dims d1 = dw4;
						d1.offs = offw + sg * (E + 2);
						d1.nseg = 0;
						const size_t r0 = (size_t)sg * (R / 4);
						if (k == 13)
							SW(policy_moe_up_dw(&d1, dw1, dw3,
							                    dh13 + r0 * 2 * F,
							                    xg + r0 * D, sg > 0));
						else
							SW(policy_moe_down_dw(&d1, dw2,
							                      dyp + r0 * D,
							                      hh + r0 * F, sg > 0));
					}
					break;
				case 14: SW(policy_moe_up_dw(&dw4, dw1, dw3, dh13, xg, 0)); break;
				default: SW(policy_moe_down_dw(&dw4, dw2, dyp, hh, 0)); break;
				}
				cudaEventRecord(e1, 0);
				if (cudaEventSynchronize(e1) != cudaSuccess)
					DIE("kernel failed: %s",
					    cudaGetErrorString(cudaGetLastError()));
				if (it >= 3)
					cudaEventElapsedTime(&t[it - 3], e0, e1);
			}
			qsort(t, 20, sizeof(float), cmpf);
			ms_tab[v][k] = (t[9] + t[10]) / 2;
		}
	}
	cudaDeviceProp prop;
	cudaGetDeviceProperties(&prop, 0);
	printf("card: %s; grouped MoE GEMMs, T %d top-%d of %d experts, D %d, F %d\n", prop.name, T,
	       K, E, D, F);
	for (int w = 0; w < nvar; w++) {
		double tot[2] = {0, 0}, ftot = 0;
		printf("%-6s %-19s %9s %9s %12s %12s\n", var_env[w], "projection", "bal. ms",
		       "skew ms", "bal. TFLOP/s", "skew TFLOP/s");
		for (int k = 0; k < NP; k++) {
			printf("%-26s %9.3f %9.3f %12.1f %12.1f\n", names[k], ms_tab[2 * w][k],
			       ms_tab[2 * w + 1][k], fl[k] / ms_tab[2 * w][k] / 1e9,
			       fl[k] / ms_tab[2 * w + 1][k] / 1e9);
			if (k >= 6)
				continue;
			tot[0] += ms_tab[2 * w][k];
			tot[1] += ms_tab[2 * w + 1][k];
			ftot += fl[k];
		}
		printf("%-26s %9.3f %9.3f %12.1f %12.1f\n", "one layer fwd+bwd", tot[0], tot[1],
		       ftot / tot[0] / 1e9, ftot / tot[1] / 1e9);
		lay[w][0] = tot[0];
		lay[w][1] = tot[1];
		lay_f = ftot;
		/* with the gathered copy: the pass, up and up dW (added) from xg */
		for (int s = 0; s < 2; s++)
			layg[w][s] = tot[s] - ms_tab[2 * w + s][0] - ms_tab[2 * w + s][5] +
			             ms_tab[2 * w + s][8] + ms_tab[2 * w + s][9] +
			             ms_tab[2 * w + s][10];
		printf("%-26s %9.3f %9.3f %12.1f %12.1f\n", "layer, GATHER=copy", layg[w][0],
		       layg[w][1], ftot / layg[w][0] / 1e9, ftot / layg[w][1] / 1e9);
	}
	/* each projection, the variants side by side (ms balanced / skewed) */
	printf("\nper projection, ms balanced / skewed\n%-26s", "projection");
	for (int w = 0; w < nvar; w++)
		printf(" %17s", var_env[w]);
	printf("\n");
	for (int k = 0; k < NP; k++) {
		printf("%-26s", names[k]);
		for (int w = 0; w < nvar; w++)
			printf("     %6.3f/%6.3f", ms_tab[2 * w][k], ms_tab[2 * w + 1][k]);
		printf("\n");
	}
	/* the variants side by side, against the first one run */
	printf("\none layer's six products (%.1f GFLOP), per variant; x = %s's time / this;\n"
	       "+xg = POLICY_GPU_MOE_GATHER=copy (the gather pass counted in)\n",
	       lay_f / 1e9, var_env[0]);
	printf("%-15s %9s %9s %12s %12s %7s %7s\n", "variant", "bal. ms", "skew ms", "bal. TFLOP/s",
	       "skew TFLOP/s", "x bal", "x skew");
	for (int w = 0; w < nvar; w++)
		for (int g = 0; g < 2; g++) {
			double(*L)[2] = g ? layg : lay;
			char nm[24];
			snprintf(nm, sizeof(nm), "%s%s", var_env[w], g ? " +xg" : "");
			printf("%-15s %9.3f %9.3f %12.1f %12.1f %7.2f %7.2f\n", nm, L[w][0],
			       L[w][1], lay_f / L[w][0] / 1e9, lay_f / L[w][1] / 1e9,
			       lay[0][0] / L[w][0], lay[0][1] / L[w][1]);
		}
	return 0;
}
