/* config.c - the model config: defaults, validation, and the parameter /
 * FLOP counts the benchmark's MFU uses. libc only (GPU binaries link it);
 * the JSON form is in config_json.c. */
#include "policy/policy.h"

#include <math.h>
#include <string.h>

void policy_config_default(struct policy_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->vocab_size = POLICY_BYTE_VOCAB;
	cfg->dim = 64;
	cfg->n_layers = 2;
	cfg->n_heads = 4;
	cfg->head_dim = 16;
	cfg->n_kv_heads = 2;
	cfg->rotary_dim = 8;
	cfg->softmax_every = 8;
	cfg->n_experts = 4;
	cfg->top_k = 2;
	cfg->expert_hidden = 64;
	cfg->max_seq_len = 2048;
	cfg->rope_theta = 1e7;
	cfg->norm_eps = 1e-6;
	cfg->aux_loss_coef = 0.001;
}

static int bad(const char *field, const char *why, long v)
{
	return swerve_error_set(SWERVE_EINVAL, "model config: field %s: %s (got %ld)", field, why,
	                        v);
}

int policy_config_validate(struct policy_config *c)
{
	if (c->vocab_size < 2)
		return bad("vocab_size", "must be at least 2", c->vocab_size);
	if (c->dim < 1)
		return bad("dim", "must be positive", c->dim);
	if (c->n_layers < 1 || c->n_layers > POLICY_MAX_LAYERS)
		return bad("n_layers", "must be 1..256", c->n_layers);
	if (c->n_heads < 1)
		return bad("n_heads", "must be positive", c->n_heads);
	if (c->head_dim < 2)
		return bad("head_dim", "must be at least 2", c->head_dim);
	if (c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads)
		return bad("n_kv_heads", "must divide n_heads", c->n_kv_heads);
	if (c->rotary_dim < 0 || c->rotary_dim > c->head_dim || c->rotary_dim % 2)
		return bad("rotary_dim", "must be even and at most head_dim", c->rotary_dim);
	if (c->n_experts < 1)
		return bad("n_experts", "must be positive", c->n_experts);
	if (c->top_k < 1 || c->top_k > c->n_experts)
		return bad("top_k", "must be 1..n_experts", c->top_k);
	if (c->expert_hidden < 1)
		return bad("expert_hidden", "must be positive", c->expert_hidden);
	if (c->max_seq_len < 1)
		return bad("max_seq_len", "must be positive", c->max_seq_len);
	if (!(c->rope_theta > 0))
		return bad("rope_theta", "must be positive", (long)c->rope_theta);
	if (!(c->norm_eps > 0))
		return swerve_error_set(SWERVE_EINVAL,
		                        "model config: field norm_eps: must be positive");
	if (!(c->aux_loss_coef >= 0))
		return swerve_error_set(SWERVE_EINVAL,
		                        "model config: field aux_loss_coef: must be >= 0");
	/* softmax_every == 0 means "softmax_layer is given explicitly" */
	if (c->softmax_every < 0)
		return bad("softmax_every", "must be >= 0", c->softmax_every);
	if (c->softmax_every > 0)
		for (int l = 0; l < c->n_layers; l++)
			c->softmax_layer[l] = (l + 1) % c->softmax_every == 0;
	for (int l = c->n_layers; l < POLICY_MAX_LAYERS; l++)
		c->softmax_layer[l] = 0;
	return 0;
}

double policy_config_active_params(const struct policy_config *c)
{
	double D = c->dim, Hd = (double)c->n_heads * c->head_dim;
	double KVd = (double)c->n_kv_heads * c->head_dim, F = c->expert_hidden;
	double total = D /* embedding row (a gather, counted as in llm.c) */ + D /* final norm */ +
	               (double)c->vocab_size * D /* LM head */;
	for (int l = 0; l < c->n_layers; l++) {
		if (c->softmax_layer[l])
			total += D * Hd + 2 * D * KVd + Hd * D;
		else
			total += 4 * D * Hd + Hd + Hd * D;
		total += 2 * D + c->n_experts * D + (double)c->top_k * 3 * D * F;
	}
	return total;
}

double policy_config_flops_per_token(const struct policy_config *c, int seq)
{
	double f = 6.0 * policy_config_active_params(c);
	double Hd = (double)c->n_heads * c->head_dim;
	for (int l = 0; l < c->n_layers; l++) {
		if (c->softmax_layer[l])
			f += 6.0 * 2.0 * Hd * seq / 2.0; /* QK^T and PV, fwd+bwd, causal */
		else
			f += 6.0 * 2.0 * Hd * c->head_dim; /* k^T v update and q S, fwd+bwd */
	}
	return f;
}
