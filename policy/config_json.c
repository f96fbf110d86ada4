/* config_json.c - the model config as JSON (jansson): load, parse, save.
 * Unknown fields are errors (a typo must not silently fall back to a
 * default). */
#include "policy/policy.h"

#include <jansson.h>
#include <string.h>

static int bad(const char *field, const char *why, long v)
{
	return swerve_error_set(SWERVE_EINVAL, "model config: field %s: %s (got %ld)", field, why,
	                        v);
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
