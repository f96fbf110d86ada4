/* policy_loss.c - CPU reference of the fused policy loss (see policy_loss.h).
 *
 * Straightforward and slow on purpose: per token, the full logit row in
 * double, log-sum-exp, entropy, the shared per-token math
 * (swerve_pl_token_eval), then the logit gradient dz = dlogp * (onehot - p)
 * pushed into dX and dW. Every sum is in double; inputs and outputs are
 * float. It is the function the CUDA version is tested against and what a
 * CPU-only model calls. It does not chunk: it holds one row of V logits. */
#include "kernels/policy_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/error.h"

void swerve_pl_opts_init(struct swerve_pl_opts *o, enum swerve_pl_variant variant)
{
	memset(o, 0, sizeof(*o));
	o->version = SWERVE_PL_OPTS_VERSION;
	o->variant = variant;
	o->precision = SWERVE_PL_FP32;
	switch (variant) {
	case SWERVE_PL_GRPO:
		o->eps_low = 0.2f;
		o->eps_high = 0.2f;
		o->norm = SWERVE_PL_NORM_SEQUENCE;
		break;
	case SWERVE_PL_DAPO:
		o->eps_low = 0.2f;
		o->eps_high = 0.28f;
		o->norm = SWERVE_PL_NORM_TOKENS;
		break;
	case SWERVE_PL_CISPO:
	default:
		o->eps_low = 0.2f; /* used only with cispo_lower_bound or cispo_mask */
		o->eps_high = 4.0f;
		o->norm = SWERVE_PL_NORM_TOKENS;
		break;
	}
}

float swerve_bf16_to_float(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

uint16_t swerve_float_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN stays a (quiet) NaN */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
	return (uint16_t)(u >> 16);
}

/* up to 2^28 fp32 logits (1 GiB) a chunk, 64..2048 tokens, a multiple of 64 */
static long logit_rows(int vocab)
{
	long c = ((1L << 28) / (vocab > 0 ? vocab : 1)) / 64 * 64;
	return c < 64 ? 64 : c > 2048 ? 2048 : c;
}

int swerve_pl_chunk_tokens(int n_tokens, int vocab, const struct swerve_pl_opts *o)
{
	long c = o->chunk_tokens;
	if (c <= 0 && o->precision == SWERVE_PL_FP32_FWD) {
		/* the chunk holds only the one-part bf16 dZ (the logits are a
		 * sub-chunk): up to 2^28 of them (512 MiB), 64..8192 tokens. H100,
		 * T 8192, V 32000: C 8192 (dX and dW one GEMM each) 3.74 ms against
		 * 3.95 at C 2048, both with R 2048 */
		c = ((1L << 28) / (vocab > 0 ? vocab : 1)) / 64 * 64;
		c = c < 64 ? 64 : c > 8192 ? 8192 : c;
	} else if (c <= 0) {
		/* larger chunks re-read dW less often, smaller ones use less memory */
		c = logit_rows(vocab);
	}
	if (c > n_tokens)
		c = n_tokens;
	return (int)(c > 0 ? c : 1);
}

int swerve_pl_row_tokens(int n_tokens, int vocab, const struct swerve_pl_opts *o)
{
	const int C = swerve_pl_chunk_tokens(n_tokens, vocab, o);
	if (o->precision == SWERVE_PL_TF32) /* dZ is written in place of the logits */
		return C;
	/* automatic: the 1 GiB logits rule (H100, T 8192, V 32000, FP32_FWD:
	 * 256 / 512 / 1024 / 2048 rows gave 4.59 / 4.05 / 3.88 / 3.74 ms; the
	 * forward GEMM re-reads the split W once per sub-chunk) */
	long r = o->row_tokens > 0 ? o->row_tokens : logit_rows(vocab);
	return (int)(r < C ? r : C);
}

/* What can be checked on the host, for both implementations (policy_loss.cu
 * declares it itself: it is not part of the API). */
int swerve_pl_check_args(const struct swerve_pl_out *out, const struct swerve_pl_batch *b,
                         const void *X, const void *W, const struct swerve_pl_opts *o);
int swerve_pl_check_args(const struct swerve_pl_out *out, const struct swerve_pl_batch *b,
                         const void *X, const void *W, const struct swerve_pl_opts *o)
{
	if (!o || o->version != SWERVE_PL_OPTS_VERSION)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "policy loss: opts: version is not %d (call swerve_pl_opts_init)",
		        SWERVE_PL_OPTS_VERSION);
	if (!b || b->n_tokens <= 0 || b->d <= 0 || b->vocab <= 0)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "policy loss: batch: n_tokens, d and vocab must be > 0 (got %d, %d, %d)",
		        b ? b->n_tokens : 0, b ? b->d : 0, b ? b->vocab : 0);
	if ((unsigned)o->variant > SWERVE_PL_DAPO || (unsigned)o->norm > SWERVE_PL_NORM_SEQUENCE ||
	    (unsigned)o->precision > SWERVE_PL_FP32_FWD)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "policy loss: opts: variant (%d), norm (%d) or precision (%d) out of range",
		        (int)o->variant, (int)o->norm, (int)o->precision);
	if (o->chunk_tokens < 0 || o->row_tokens < 0)
		return swerve_error_set(SWERVE_EINVAL,
		                        "policy loss: opts: chunk_tokens (%d) and row_tokens (%d) "
		                        "must be >= 0",
		                        o->chunk_tokens, o->row_tokens);
	if ((unsigned)o->row_reread > SWERVE_PL_ROWS_STREAM_PLAIN)
		return swerve_error_set(SWERVE_EINVAL,
		                        "policy loss: opts: row_reread (%d) must be 0 (registers), "
		                        "1 (two-pass), 2 (prefetch), 3 (lean), 4 (stream) or 5 "
		                        "(stream-plain)",
		                        o->row_reread);
	if (!(o->eps_low >= 0.0f) || !(o->eps_high >= 0.0f))
		return swerve_error_set(SWERVE_EINVAL,
		                        "policy loss: opts: eps_low and eps_high must be >= 0");
	if (!out || !out->logp || !X || !W || !b->targets)
		return swerve_error_set(SWERVE_EINVAL,
		                        "policy loss: X, W, targets and out->logp are required");
	if (b->seq_idx && b->n_seqs < 1)
		return swerve_error_set(SWERVE_EINVAL,
		                        "policy loss: batch: n_seqs must be >= 1 with seq_idx");
	if (b->adv_per_seq && !b->seq_idx)
		return swerve_error_set(SWERVE_EINVAL,
		                        "policy loss: batch: adv_per_seq needs seq_idx");
	if (!o->logprob_only &&
	    (!b->logp_old || !b->advantages || !out->loss || !out->dX || !out->dW))
		return swerve_error_set(SWERVE_EINVAL,
		                        "policy loss: logp_old, advantages, out->loss, out->dX and "
		                        "out->dW are required "
		                        "unless logprob_only");
	return 0;
}

int swerve_policy_loss_cpu(const struct swerve_pl_out *out, const struct swerve_pl_batch *b,
                           const float *X, const float *W, const struct swerve_pl_opts *o)
{
	int rc = swerve_pl_check_args(out, b, X, W, o);
	if (rc)
		return rc;
	const int N = b->n_tokens, d = b->d, V = b->vocab;
	const int S = b->seq_idx ? b->n_seqs : 1;
	for (int t = 0; t < N; t++) {
		if (b->targets[t] < 0 || b->targets[t] >= V)
			return swerve_error_set(SWERVE_EINVAL,
			                        "policy loss: targets[%d] = %d is outside 0..%d", t,
			                        b->targets[t], V - 1);
		if (b->seq_idx && (b->seq_idx[t] < 0 || b->seq_idx[t] >= S))
			return swerve_error_set(SWERVE_EINVAL,
			                        "policy loss: seq_idx[%d] = %d is outside 0..%d", t,
			                        b->seq_idx[t], S - 1);
	}

	double *z = malloc(sizeof(double) * (size_t)V);  /* (V) one logit row */
	double *dx = malloc(sizeof(double) * (size_t)d); /* (d) */
	double *dw = NULL;                               /* (V, d) */
	long *count = calloc((size_t)S, sizeof(long));   /* masked tokens per sequence */
	if (!o->logprob_only)
		dw = calloc((size_t)V * (size_t)d, sizeof(double));
	if (!z || !dx || !count || (!o->logprob_only && !dw)) {
		rc = swerve_error_set(SWERVE_ENOMEM,
		                      "policy loss: out of memory for V = %d, d = %d", V, d);
		goto done;
	}

	long total = 0;
	for (int t = 0; t < N; t++) {
		if (b->mask && !b->mask[t])
			continue;
		count[b->seq_idx ? b->seq_idx[t] : 0]++;
		total++;
	}

	double loss = 0.0;
	for (int t = 0; t < N; t++) {
		const float *x = X + (size_t)t * d; /* (d) */
		double m = -INFINITY;
		for (int v = 0; v < V; v++) {
			const float *w = W + (size_t)v * d;
			double acc = 0.0;
			for (int k = 0; k < d; k++)
				acc += (double)x[k] * (double)w[k];
			z[v] = acc;
			if (acc > m)
				m = acc;
		}
		double s = 0.0, sz = 0.0;
		for (int v = 0; v < V; v++) {
			double e = exp(z[v] - m);
			s += e;
			sz += e * (z[v] - m);
		}
		double lse = m + log(s);
		double logp = z[b->targets[t]] - lse;
		out->logp[t] = (float)logp;
		if (out->entropy)
			out->entropy[t] = (float)(log(s) - sz / s);
		if (o->logprob_only)
			continue;

		int seq = b->seq_idx ? b->seq_idx[t] : 0;
		int on = !b->mask || b->mask[t];
		double norm = 0.0;
		if (on && o->norm == SWERVE_PL_NORM_SEQUENCE)
			norm = 1.0 / ((double)S * (double)count[seq]);
		else if (on)
			norm = 1.0 / (double)total;
		double A = b->advantages[b->adv_per_seq ? seq : t];
		struct swerve_pl_token tk = swerve_pl_token_eval(o, logp, b->logp_old[t], A, norm);
		if (out->ratio)
			out->ratio[t] = (float)tk.ratio;
		if (out->clipped)
			out->clipped[t] = (uint8_t)tk.clipped;
		loss += tk.loss;

		memset(dx, 0, sizeof(double) * (size_t)d);
		if (tk.dlogp != 0.0) {
			for (int v = 0; v < V; v++) {
				double g = tk.dlogp *
				           ((v == b->targets[t] ? 1.0 : 0.0) - exp(z[v] - lse));
				const float *w = W + (size_t)v * d;
				double *gw = dw + (size_t)v * d;
				for (int k = 0; k < d; k++) {
					dx[k] += g * (double)w[k];
					gw[k] += g * (double)x[k];
				}
			}
		}
		for (int k = 0; k < d; k++)
			out->dX[(size_t)t * d + k] = (float)dx[k];
	}
	if (!o->logprob_only) {
		*out->loss = (float)loss;
		for (size_t i = 0; i < (size_t)V * (size_t)d; i++)
			out->dW[i] = (float)(o->accumulate_dw ? (double)out->dW[i] + dw[i] : dw[i]);
	}
done:
	free(z);
	free(dx);
	free(dw);
	free(count);
	return rc;
}
