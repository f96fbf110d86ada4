/* decode.c - incremental decoding with the CPU reference model: one token's
 * forward per push instead of a forward pass over the whole prefix. Per
 * layer it keeps what the next token needs from the past:
 *   lightning layers: the recurrent state of each head, S (d x d, double),
 *     S_t = lambda S_{t-1} + k_t^T v_t and o_t = q_t S_t, with the decay
 *     lambda of ref_lightning_lambda (the same recurrence, in the same order,
 *     as ref_lightning_core_fwd);
 *   softmax layers: the key/value cache (n_kv_heads x head_dim per position),
 *     keys rotated at their own position as ref_rotary does.
 * Every other step (norms, projections, MoE) runs on the one new row with
 * ref.c's own functions, so the logits of a push are those of the last row
 * of policy_ref_forward over the same prefix (bit for bit on the same
 * compiler and flags; the tests allow 1e-9 relative). */
#include "policy/ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct policy_decode {
	struct policy_config cfg;
	const struct policy_layout *layout;
	const double *P;
	int pos;        /* tokens pushed so far */
	double **state; /* per layer: lightning S (H, d, d) or softmax K then V cache */
	double *lambda; /* (L, H) lightning decays */
	double *freq;   /* (rotary_dim / 2) rotary frequencies */
	double *x, *nrm, *tmp;
	double *q, *k, *v, *o, *g;
	double *p; /* (max_seq_len) softmax scores */
};

static double sigmoid(double x)
{
	return 1.0 / (1.0 + exp(-x));
}

void policy_decode_free(struct policy_decode *dec)
{
	if (!dec)
		return;
	if (dec->state)
		for (int l = 0; l < dec->cfg.n_layers; l++)
			free(dec->state[l]);
	free(dec->state);
	free(dec->lambda);
	free(dec->freq);
	free(dec->x);
	free(dec->nrm);
	free(dec->tmp);
	free(dec->q);
	free(dec->k);
	free(dec->v);
	free(dec->o);
	free(dec->g);
	free(dec->p);
	free(dec);
}

static size_t state_len(const struct policy_decode *dec, int l)
{
	const struct policy_config *c = &dec->cfg;
	size_t d = (size_t)c->head_dim;
	if (dec->layout->layers[l].softmax)
		return 2 * (size_t)c->max_seq_len * (size_t)c->n_kv_heads * d;
	return (size_t)c->n_heads * d * d;
}

int policy_decode_new(struct policy_decode **out, const struct policy_config *cfg,
                      const struct policy_layout *layout, const double *params)
{
	struct policy_decode *dec;
	int L = cfg->n_layers, H = cfg->n_heads, D = cfg->dim, half = cfg->rotary_dim / 2;
	size_t Hd = (size_t)H * cfg->head_dim;
	int ok;

	*out = NULL;
	if (L < 1 || L > POLICY_MAX_LAYERS || H < 1 || D < 1 || cfg->head_dim < 1 ||
	    cfg->max_seq_len < 1 || cfg->vocab_size < 1)
		return swerve_error_set(SWERVE_EINVAL,
		                        "decode: config not validated (n_layers %d, "
		                        "dim %d, n_heads %d, max_seq_len %d)",
		                        L, D, H, cfg->max_seq_len);
	dec = calloc(1, sizeof(*dec));
	if (!dec)
		return swerve_error_set(SWERVE_ENOMEM, "decode: out of memory");
	dec->cfg = *cfg;
	dec->layout = layout;
	dec->P = params;
	dec->state = calloc((size_t)L, sizeof(double *));
	dec->lambda = calloc((size_t)L * H, sizeof(double));
	dec->freq = calloc((size_t)(half > 0 ? half : 1), sizeof(double));
	dec->x = calloc((size_t)D, sizeof(double));
	dec->nrm = calloc((size_t)D, sizeof(double));
	dec->tmp = calloc((size_t)D, sizeof(double));
	dec->q = calloc(Hd, sizeof(double));
	dec->k = calloc(Hd, sizeof(double));
	dec->v = calloc(Hd, sizeof(double));
	dec->o = calloc(Hd, sizeof(double));
	dec->g = calloc(Hd, sizeof(double));
	dec->p = calloc((size_t)cfg->max_seq_len, sizeof(double));
	ok = dec->state && dec->lambda && dec->freq && dec->x && dec->nrm && dec->tmp && dec->q &&
	     dec->k && dec->v && dec->o && dec->g && dec->p;
	for (int l = 0; ok && l < L; l++)
		ok = (dec->state[l] = calloc(state_len(dec, l), sizeof(double))) != NULL;
	if (!ok) {
		policy_decode_free(dec);
		return swerve_error_set(SWERVE_ENOMEM, "decode: out of memory (max_seq_len %d)",
		                        cfg->max_seq_len);
	}
	for (int l = 0; l < L; l++)
		for (int h = 0; h < H; h++)
			dec->lambda[(size_t)l * H + h] = ref_lightning_lambda(h, H, l, L);
	for (int i = 0; i < half; i++)
		dec->freq[i] = pow(cfg->rope_theta, -2.0 * i / cfg->rotary_dim);
	*out = dec;
	return 0;
}

void policy_decode_reset(struct policy_decode *dec)
{
	for (int l = 0; l < dec->cfg.n_layers; l++)
		memset(dec->state[l], 0, state_len(dec, l) * sizeof(double));
	dec->pos = 0;
}

int policy_decode_pos(const struct policy_decode *dec)
{
	return dec->pos;
}

/* ref_lightning_fwd on one row: y (D) from the normalised input x (D). */
static void lightning_step(struct policy_decode *dec, double *y, const double *x,
                           const struct policy_layer_params *lp, int l)
{
	const struct policy_config *c = &dec->cfg;
	const double *P = dec->P;
	int D = c->dim, H = c->n_heads, d = c->head_dim, Hd = H * d;
	double *q = dec->q, *k = dec->k, *v = dec->v, *o = dec->o, *g = dec->g;

	ref_linear_fwd(q, x, P + lp->wq, 1, D, Hd);
	ref_linear_fwd(k, x, P + lp->wk, 1, D, Hd);
	ref_linear_fwd(v, x, P + lp->wv, 1, D, Hd);
	for (int i = 0; i < Hd; i++) {
		q[i] = q[i] * sigmoid(q[i]);
		k[i] = k[i] * sigmoid(k[i]);
		v[i] = v[i] * sigmoid(v[i]);
	}
	for (int h = 0; h < H; h++) {
		double *S = dec->state[l] + (size_t)h * d * d, lam = dec->lambda[(size_t)l * H + h];
		const double *qh = q + (size_t)h * d, *kh = k + (size_t)h * d,
		             *vh = v + (size_t)h * d;
		double *oh = o + (size_t)h * d;
		for (int i = 0; i < d; i++)
			for (int j = 0; j < d; j++)
				S[i * d + j] = lam * S[i * d + j] + kh[i] * vh[j];
		for (int j = 0; j < d; j++) {
			double s = 0;
			for (int i = 0; i < d; i++)
				s += qh[i] * S[i * d + j];
			oh[j] = s;
		}
	}
	ref_linear_fwd(g, x, P + lp->wgate, 1, D, Hd);
	for (int i = 0; i < Hd; i++)
		g[i] = sigmoid(g[i]);
	ref_rmsnorm_fwd(q, o, P + lp->out_norm, 1, Hd, c->norm_eps); /* q: the normed o */
	for (int i = 0; i < Hd; i++)
		q[i] = g[i] * q[i];
	ref_linear_fwd(y, q, P + lp->wo, 1, Hd, D);
}

/* ref_rotary of one head vector at position pos */
static void rotate(const struct policy_decode *dec, double *v, int pos)
{
	int half = dec->cfg.rotary_dim / 2;
	for (int i = 0; i < half; i++) {
		double ang = pos * dec->freq[i];
		double cs = cos(ang), sn = sin(ang);
		double a = v[i], bb = v[i + half];
		v[i] = a * cs - bb * sn;
		v[i + half] = bb * cs + a * sn;
	}
}

/* ref_softmax_attn_fwd on one row at position pos, with the KV cache. */
static void softmax_step(struct policy_decode *dec, double *y, const double *x,
                         const struct policy_layer_params *lp, int l)
{
	const struct policy_config *c = &dec->cfg;
	const double *P = dec->P;
	int D = c->dim, H = c->n_heads, KV = c->n_kv_heads, d = c->head_dim, pos = dec->pos;
	int grp = H / KV;
	size_t row = (size_t)KV * d;
	double *K = dec->state[l], *V = K + (size_t)c->max_seq_len * row;
	double *q = dec->q, *o = dec->o, *p = dec->p, scale = 1.0 / sqrt((double)d);

	ref_linear_fwd(q, x, P + lp->wq, 1, D, H * d);
	ref_linear_fwd(K + (size_t)pos * row, x, P + lp->wk, 1, D, KV * d);
	ref_linear_fwd(V + (size_t)pos * row, x, P + lp->wv, 1, D, KV * d);
	for (int h = 0; h < H; h++)
		rotate(dec, q + (size_t)h * d, pos);
	for (int h = 0; h < KV; h++)
		rotate(dec, K + (size_t)pos * row + (size_t)h * d, pos);
	memset(o, 0, (size_t)H * d * sizeof(double));
	for (int h = 0; h < H; h++) {
		const double *qt = q + (size_t)h * d;
		double mx = -INFINITY, z = 0, *ot = o + (size_t)h * d;
		for (int s = 0; s <= pos; s++) {
			const double *ks = K + (size_t)s * row + (size_t)(h / grp) * d;
			double dot = 0;
			for (int i = 0; i < d; i++)
				dot += qt[i] * ks[i];
			p[s] = dot * scale;
			if (p[s] > mx)
				mx = p[s];
		}
		for (int s = 0; s <= pos; s++)
			z += (p[s] = exp(p[s] - mx));
		for (int s = 0; s <= pos; s++) {
			const double *vs = V + (size_t)s * row + (size_t)(h / grp) * d;
			for (int i = 0; i < d; i++)
				ot[i] += p[s] / z * vs[i];
		}
	}
	ref_linear_fwd(y, o, P + lp->wo, 1, H * d, D);
}

int policy_decode_push(struct policy_decode *dec, int token, double *logits)
{
	const struct policy_config *c = &dec->cfg;
	const struct policy_layout *L = dec->layout;
	const double *P = dec->P;
	int D = c->dim;

	if (token < 0 || token >= c->vocab_size)
		return swerve_error_set(SWERVE_EINVAL,
		                        "decode: token %d: id %d outside the vocabulary (0..%d)",
		                        dec->pos, token, c->vocab_size - 1);
	if (dec->pos >= c->max_seq_len)
		return swerve_error_set(SWERVE_ELIMIT,
		                        "decode: token %d: sequence longer than max_seq_len (%d)",
		                        dec->pos, c->max_seq_len);
	memcpy(dec->x, P + L->tok_emb + (size_t)token * D, (size_t)D * sizeof(double));
	for (int l = 0; l < c->n_layers; l++) {
		const struct policy_layer_params *lp = &L->layers[l];
		ref_rmsnorm_fwd(dec->nrm, dec->x, P + lp->attn_norm, 1, D, c->norm_eps);
		if (lp->softmax)
			softmax_step(dec, dec->tmp, dec->nrm, lp, l);
		else
			lightning_step(dec, dec->tmp, dec->nrm, lp, l);
		for (int i = 0; i < D; i++)
			dec->x[i] += dec->tmp[i];
		ref_rmsnorm_fwd(dec->nrm, dec->x, P + lp->ffn_norm, 1, D, c->norm_eps);
		ref_moe_fwd(dec->tmp, dec->nrm, P, lp, c, 1);
		for (int i = 0; i < D; i++)
			dec->x[i] += dec->tmp[i];
	}
	dec->pos++;
	if (logits) {
		ref_rmsnorm_fwd(dec->nrm, dec->x, P + L->final_norm, 1, D, c->norm_eps);
		ref_linear_fwd(logits, dec->nrm, P + L->lm_head, 1, D, c->vocab_size);
	}
	return 0;
}
