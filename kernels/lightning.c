/* lightning.c - the CPU reference of lightning attention: the recurrent form,
 * accumulated in double, with float inputs and outputs. It is what the GPU
 * kernels (lightning.cu) are tested against and what the CPU model calls.
 *
 * Forward:  S = lambda S + k_t^T v_t; o_t = q_t S.
 * Backward (the same recurrences run both ways):
 *   dq_t = dout_t S_t^T                         (forward sweep, S_t after step t)
 *   M    = dS_T;  for t = T-1..0: M += q_t^T dout_t; dk_t = v_t M^T; dv_t = k_t M;
 *          M *= lambda                          (reverse sweep)
 *   dS0  = M at the end (= sum_t lambda^(t+1) q_t^T dout_t + lambda^T dS_T).
 * Memory is O(D^2) per call; time O(N H D^2). */
#include "kernels/lightning.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/error.h"

float swerve_lightning_slope(int h, int heads, int layer, int layers)
{
	if (heads <= 0 || h < 0 || h >= heads || layers <= 0 || layer < 0 || layer >= layers)
		return 0.0f;
	double s = pow(pow(2.0, -8.0 / heads), h + 1);
	double depth = layers > 1 ? (double)layer / (layers - 1) : 0.0;
	return (float)(s * (1.0 - depth + 1e-5));
}

static int check_dims(const struct swerve_lightning_dims *d, const int32_t *cu, const float *slopes,
                      const char *fn)
{
	if (!d)
		return swerve_error_set(SWERVE_EINVAL, "%s: dims: NULL", fn);
	if (d->batch <= 0 || d->heads <= 0 || d->dim <= 0)
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: dims: batch %d, heads %d, dim %d: each must be > 0",
		                        fn, d->batch, d->heads, d->dim);
	if (!cu || !slopes)
		return swerve_error_set(SWERVE_EINVAL, "%s: %s: NULL", fn,
		                        cu ? "slopes" : "cu_seqlens");
	if (cu[0] != 0)
		return swerve_error_set(SWERVE_EINVAL, "%s: cu_seqlens[0] is %d, must be 0", fn,
		                        cu[0]);
	for (int b = 0; b < d->batch; b++)
		if (cu[b + 1] < cu[b])
			return swerve_error_set(SWERVE_EINVAL,
			                        "%s: cu_seqlens[%d] = %d < cu_seqlens[%d] = %d: "
			                        "offsets must not decrease",
			                        fn, b + 1, cu[b + 1], b, cu[b]);
	for (int h = 0; h < d->heads; h++)
		if (!(slopes[h] >= 0.0f) || isinf(slopes[h]))
			return swerve_error_set(SWERVE_EINVAL,
			                        "%s: slopes[%d] = %g: must be finite and >= 0", fn,
			                        h, (double)slopes[h]);
	return 0;
}

int swerve_lightning_ref_forward(float *o, float *final_state, const float *q, const float *k,
                                 const float *v, const int32_t *cu_seqlens, const float *slopes,
                                 const float *initial_state,
                                 const struct swerve_lightning_dims *dims)
{
	int rc = check_dims(dims, cu_seqlens, slopes, "lightning forward");
	if (rc)
		return rc;
	if (!o || !q || !k || !v)
		return swerve_error_set(SWERVE_EINVAL,
		                        "lightning forward: o, q, k and v must be set");
	const int H = dims->heads, D = dims->dim;
	const size_t DD = (size_t)D * D;
	double *S = malloc(DD * sizeof(double));
	if (!S)
		return swerve_error_set(SWERVE_ENOMEM, "lightning forward: state of %zu doubles",
		                        DD);
	for (int b = 0; b < dims->batch; b++)
		for (int h = 0; h < H; h++) {
			const double lam = exp(-(double)slopes[h]);
			const size_t sidx = ((size_t)b * H + h) * DD;
			for (size_t i = 0; i < DD; i++)
				S[i] = initial_state ? initial_state[sidx + i] : 0.0;
			for (int t = cu_seqlens[b]; t < cu_seqlens[b + 1]; t++) {
				const size_t row = ((size_t)t * H + h) * D;
				for (int i = 0; i < D; i++) {
					double *Si = S + (size_t)i * D;
					const double ki = k[row + i];
					for (int j = 0; j < D; j++)
						Si[j] = lam * Si[j] + ki * v[row + j];
				}
				for (int j = 0; j < D; j++) {
					double acc = 0.0;
					for (int i = 0; i < D; i++)
						acc += q[row + i] * S[(size_t)i * D + j];
					o[row + j] = (float)acc;
				}
			}
			if (final_state)
				for (size_t i = 0; i < DD; i++)
					final_state[sidx + i] = (float)S[i];
		}
	free(S);
	return 0;
}

int swerve_lightning_ref_backward(float *dq, float *dk, float *dv, float *dinitial_state,
                                  const float *q, const float *k, const float *v, const float *dout,
                                  const float *dfinal_state, const int32_t *cu_seqlens,
                                  const float *slopes, const float *initial_state,
                                  const struct swerve_lightning_dims *dims)
{
	int rc = check_dims(dims, cu_seqlens, slopes, "lightning backward");
	if (rc)
		return rc;
	if (!dq || !dk || !dv || !q || !k || !v || !dout)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "lightning backward: dq, dk, dv, q, k, v and dout must be set");
	const int H = dims->heads, D = dims->dim;
	const size_t DD = (size_t)D * D;
	double *S = malloc(DD * sizeof(double));
	if (!S)
		return swerve_error_set(SWERVE_ENOMEM, "lightning backward: state of %zu doubles",
		                        DD);
	for (int b = 0; b < dims->batch; b++)
		for (int h = 0; h < H; h++) {
			const double lam = exp(-(double)slopes[h]);
			const size_t sidx = ((size_t)b * H + h) * DD;
			/* forward sweep: dq_t[i] = sum_j dout_t[j] S_t[i][j] */
			for (size_t i = 0; i < DD; i++)
				S[i] = initial_state ? initial_state[sidx + i] : 0.0;
			for (int t = cu_seqlens[b]; t < cu_seqlens[b + 1]; t++) {
				const size_t row = ((size_t)t * H + h) * D;
				for (int i = 0; i < D; i++) {
					double *Si = S + (size_t)i * D;
					const double ki = k[row + i];
					double acc = 0.0;
					for (int j = 0; j < D; j++) {
						Si[j] = lam * Si[j] + ki * v[row + j];
						acc += dout[row + j] * Si[j];
					}
					dq[row + i] = (float)acc;
				}
			}
			/* reverse sweep with M (in S's storage) */
			for (size_t i = 0; i < DD; i++)
				S[i] = dfinal_state ? dfinal_state[sidx + i] : 0.0;
			for (int t = cu_seqlens[b + 1] - 1; t >= cu_seqlens[b]; t--) {
				const size_t row = ((size_t)t * H + h) * D;
				for (int i = 0; i < D; i++) {
					double *Mi = S + (size_t)i * D;
					const double qi = q[row + i];
					double ak = 0.0;
					for (int j = 0; j < D; j++) {
						Mi[j] += qi * dout[row + j];
						ak += v[row + j] * Mi[j];
					}
					dk[row + i] = (float)ak;
				}
				for (int j = 0; j < D; j++) {
					double acc = 0.0;
					for (int i = 0; i < D; i++)
						acc += k[row + i] * S[(size_t)i * D + j];
					dv[row + j] = (float)acc;
				}
				for (size_t i = 0; i < DD; i++)
					S[i] *= lam;
			}
			if (dinitial_state)
				for (size_t i = 0; i < DD; i++)
					dinitial_state[sidx + i] = (float)S[i];
		}
	free(S);
	return 0;
}

int swerve_lightning_ref_decode(float *o, float *state, const float *q, const float *k,
                                const float *v, const float *slopes, int batch, int heads, int dim)
{
	if (batch <= 0 || heads <= 0 || dim <= 0)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "lightning decode: batch %d, heads %d, dim %d: each must be > 0", batch,
		        heads, dim);
	if (!o || !state || !q || !k || !v || !slopes)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "lightning decode: o, state, q, k, v and slopes must be set");
	const int H = heads, D = dim;
	for (int b = 0; b < batch; b++)
		for (int h = 0; h < H; h++) {
			const double lam = exp(-(double)slopes[h]);
			float *S = state + ((size_t)b * H + h) * D * D;
			const size_t row = ((size_t)b * H + h) * D;
			for (int i = 0; i < D; i++)
				for (int j = 0; j < D; j++) {
					double s = lam * S[(size_t)i * D + j] +
					           (double)k[row + i] * v[row + j];
					S[(size_t)i * D + j] = (float)s;
				}
			for (int j = 0; j < D; j++) {
				double acc = 0.0;
				for (int i = 0; i < D; i++)
					acc += (double)q[row + i] * S[(size_t)i * D + j];
				o[row + j] = (float)acc;
			}
		}
	return 0;
}
