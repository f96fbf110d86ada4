/* config.c - the model config: defaults, validation, JSON load/save (jansson),
 * and the parameter / FLOP counts the benchmark's MFU uses.
 * It does not allocate parameters (params.c does). */
#include "policy/policy.h"

#include <jansson.h>
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

static int get_int(json_t *o, const char *k, int *dst, const char *what)
{
	json_t *v = json_object_get(o, k);
	if (!v)
		return 0;
	if (!json_is_integer(v))
		return swerve_error_set(SWERVE_EINVAL, "%s: field %s: not an integer", what, k);
	*dst = (int)json_integer_value(v);
	return 0;
}

static int get_real(json_t *o, const char *k, double *dst, const char *what)
{
	json_t *v = json_object_get(o, k);
	if (!v)
		return 0;
	if (!json_is_number(v))
		return swerve_error_set(SWERVE_EINVAL, "%s: field %s: not a number", what, k);
	*dst = json_number_value(v);
	return 0;
}

static const char *const known_keys[] = {
        "vocab_size",
        "dim",
        "n_layers",
        "n_heads",
        "head_dim",
        "n_kv_heads",
        "rotary_dim",
        "softmax_every",
        "softmax_layers",
        "n_experts",
        "top_k",
        "expert_hidden",
        "max_seq_len",
        "rope_theta",
        "norm_eps",
        "aux_loss_coef",
        NULL,
};

int policy_config_parse(struct policy_config *out, const char *text, const char *what)
{
	json_error_t je;
	json_t *o = json_loads(text, 0, &je);
	struct policy_config c;
	const char *key;
	json_t *val;
	int rc = -1;

	if (!o)
		return swerve_error_set(SWERVE_EINVAL, "%s:%d: %s", what, je.line, je.text);
	if (!json_is_object(o)) {
		rc = swerve_error_set(SWERVE_EINVAL, "%s: not a JSON object", what);
		goto done;
	}
	json_object_foreach(o, key, val)
	{
		int known = 0;
		for (int i = 0; known_keys[i]; i++)
			known |= strcmp(key, known_keys[i]) == 0;
		if (!known) {
			rc = swerve_error_set(SWERVE_EINVAL, "%s: unknown field %s", what, key);
			goto done;
		}
	}
	policy_config_default(&c);
	if ((rc = get_int(o, "vocab_size", &c.vocab_size, what)) ||
	    (rc = get_int(o, "dim", &c.dim, what)) ||
	    (rc = get_int(o, "n_layers", &c.n_layers, what)) ||
	    (rc = get_int(o, "n_heads", &c.n_heads, what)) ||
	    (rc = get_int(o, "head_dim", &c.head_dim, what)) ||
	    (rc = get_int(o, "n_kv_heads", &c.n_kv_heads, what)) ||
	    (rc = get_int(o, "rotary_dim", &c.rotary_dim, what)) ||
	    (rc = get_int(o, "softmax_every", &c.softmax_every, what)) ||
	    (rc = get_int(o, "n_experts", &c.n_experts, what)) ||
	    (rc = get_int(o, "top_k", &c.top_k, what)) ||
	    (rc = get_int(o, "expert_hidden", &c.expert_hidden, what)) ||
	    (rc = get_int(o, "max_seq_len", &c.max_seq_len, what)) ||
	    (rc = get_real(o, "rope_theta", &c.rope_theta, what)) ||
	    (rc = get_real(o, "norm_eps", &c.norm_eps, what)) ||
	    (rc = get_real(o, "aux_loss_coef", &c.aux_loss_coef, what)))
		goto done;
	val = json_object_get(o, "softmax_layers");
	if (val) {
		size_t i;
		json_t *e;
		if (!json_is_array(val)) {
			rc = swerve_error_set(SWERVE_EINVAL,
			                      "%s: field softmax_layers: not an array", what);
			goto done;
		}
		if (c.n_layers < 1 || c.n_layers > POLICY_MAX_LAYERS) {
			rc = bad("n_layers", "must be 1..256", c.n_layers);
			goto done;
		}
		c.softmax_every = 0;
		memset(c.softmax_layer, 0, sizeof(c.softmax_layer));
		json_array_foreach(val, i, e)
		{
			long l = json_is_integer(e) ? (long)json_integer_value(e) : -1;
			if (l < 0 || l >= c.n_layers) {
				rc = swerve_error_set(SWERVE_EINVAL,
				                      "%s: field softmax_layers[%zu]: not a layer "
				                      "index in 0..%d",
				                      what, i, c.n_layers - 1);
				goto done;
			}
			c.softmax_layer[l] = 1;
		}
	}
	if ((rc = policy_config_validate(&c))) {
		swerve_error_wrap("%s", what);
		goto done;
	}
	*out = c;
	rc = 0;
done:
	json_decref(o);
	return rc;
}

int policy_config_load(struct policy_config *out, const char *path)
{
	json_error_t je;
	json_t *o = json_load_file(path, 0, &je);
	char *text;
	int rc;
	if (!o)
		return swerve_error_set(je.line < 0 ? SWERVE_ENOTFOUND : SWERVE_EINVAL, "%s:%d: %s",
		                        path, je.line, je.text);
	text = json_dumps(o, 0);
	json_decref(o);
	if (!text)
		return swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", path);
	rc = policy_config_parse(out, text, path);
	free(text);
	return rc;
}

int policy_config_save(const struct policy_config *c, const char *path)
{
	json_t *o = json_object(), *sl = json_array();
	int rc;
	for (int l = 0; l < c->n_layers; l++)
		if (c->softmax_layer[l])
			json_array_append_new(sl, json_integer(l));
	json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
	json_object_set_new(o, "dim", json_integer(c->dim));
	json_object_set_new(o, "n_layers", json_integer(c->n_layers));
	json_object_set_new(o, "n_heads", json_integer(c->n_heads));
	json_object_set_new(o, "head_dim", json_integer(c->head_dim));
	json_object_set_new(o, "n_kv_heads", json_integer(c->n_kv_heads));
	json_object_set_new(o, "rotary_dim", json_integer(c->rotary_dim));
	json_object_set_new(o, "softmax_layers", sl);
	json_object_set_new(o, "n_experts", json_integer(c->n_experts));
	json_object_set_new(o, "top_k", json_integer(c->top_k));
	json_object_set_new(o, "expert_hidden", json_integer(c->expert_hidden));
	json_object_set_new(o, "max_seq_len", json_integer(c->max_seq_len));
	json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
	json_object_set_new(o, "norm_eps", json_real(c->norm_eps));
	json_object_set_new(o, "aux_loss_coef", json_real(c->aux_loss_coef));
	rc = json_dump_file(o, path, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
	json_decref(o);
	if (rc)
		return swerve_error_set(SWERVE_EIO, "%s: cannot write the model config", path);
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
