/* trainer.c - the trainer's state (fp32 master weights, AdamW moments, rng)
 * and its CPU training steps over the reference model, plus checkpoints:
 *   <dir>/config.json           the model config
 *   <dir>/model.safetensors     the weights (F32), Python-loadable
 *   <dir>/optimizer.safetensors AdamW moments "m.<name>", "v.<name>" (F32)
 *                               and metadata: step, rng, hyper-parameters
 * Everything a step reads is saved, so a resumed run continues bit-exactly.
 * The CPU step casts the fp32 weights to double, runs the reference model,
 * and casts the gradients back to fp32 for AdamW. */
#include "policy/policy.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int policy_trainer_new(struct policy_trainer **out, const struct policy_config *cfg, uint64_t seed)
{
	struct policy_trainer *tr = calloc(1, sizeof(*tr));
	struct policy_adamw opt = POLICY_ADAMW_INIT;
	int rc;
	if (!tr)
		return swerve_error_set(SWERVE_ENOMEM, "trainer: out of memory");
	tr->cfg = *cfg;
	if ((rc = policy_config_validate(&tr->cfg)) ||
	    (rc = policy_layout_init(&tr->layout, &tr->cfg))) {
		free(tr);
		return rc;
	}
	tr->params = calloc(tr->layout.total, sizeof(float));
	tr->m = calloc(tr->layout.total, sizeof(float));
	tr->v = calloc(tr->layout.total, sizeof(float));
	if (!tr->params || !tr->m || !tr->v) {
		policy_trainer_free(tr);
		return swerve_error_set(SWERVE_ENOMEM, "trainer: %zu parameters: out of memory",
		                        tr->layout.total);
	}
	policy_params_init(tr->params, &tr->layout, seed);
	tr->opt = opt;
	tr->rng = seed * 0x9e3779b97f4a7c15ULL + 1;
	*out = tr;
	return 0;
}

void policy_trainer_free(struct policy_trainer *tr)
{
	if (!tr)
		return;
	free(tr->params);
	free(tr->m);
	free(tr->v);
	free(tr->pd);
	free(tr->gd);
	policy_layout_dispose(&tr->layout);
	free(tr);
}

static int scratch(struct policy_trainer *tr)
{
	if (!tr->pd)
		tr->pd = malloc(tr->layout.total * sizeof(double));
	if (!tr->gd)
		tr->gd = malloc(tr->layout.total * sizeof(double));
	if (!tr->pd || !tr->gd)
		return swerve_error_set(SWERVE_ENOMEM, "trainer: out of memory");
	for (size_t i = 0; i < tr->layout.total; i++) {
		tr->pd[i] = tr->params[i];
		tr->gd[i] = 0;
	}
	return 0;
}

/* Casts gradients to fp32 (into the double buffer's storage is not possible:
 * use a separate float buffer) and applies AdamW. */
static int apply(struct policy_step_stats *st, struct policy_trainer *tr)
{
	float *g = malloc(tr->layout.total * sizeof(float));
	if (!g)
		return swerve_error_set(SWERVE_ENOMEM, "trainer: out of memory");
	for (size_t i = 0; i < tr->layout.total; i++)
		g[i] = (float)tr->gd[i];
	st->grad_norm = policy_adamw_step(&tr->opt, tr->params, g, tr->m, tr->v, &tr->layout);
	free(g);
	return 0;
}

int policy_trainer_sft_step(struct policy_step_stats *st, struct policy_trainer *tr,
                            const struct policy_batch *b, const int *targets)
{
	struct policy_ref_tape *tape = NULL;
	struct policy_loss_stats ls;
	double *dl = NULL;
	int rc;
	memset(st, 0, sizeof(*st));
	if ((rc = scratch(tr)) ||
	    (rc = policy_ref_forward(&tape, &tr->cfg, &tr->layout, tr->pd, b)))
		return rc;
	dl = malloc((size_t)b->n_tokens * tr->cfg.vocab_size * sizeof(double));
	if (!dl) {
		rc = swerve_error_set(SWERVE_ENOMEM, "trainer: out of memory");
		goto done;
	}
	if ((rc = policy_loss_xent(&ls, dl, policy_ref_logits(tape), b->n_tokens,
	                           tr->cfg.vocab_size, targets)))
		goto done;
	if ((rc = policy_ref_backward(tape, dl, 1.0, tr->gd)) || (rc = apply(st, tr)))
		goto done;
	st->loss = ls.loss;
	st->aux = policy_ref_aux_loss(tape);
	st->n_tokens = ls.n_tokens;
	st->entropy = ls.n_tokens > 0 ? ls.entropy_sum / ls.n_tokens : 0;
done:
	free(dl);
	policy_ref_tape_free(tape);
	return rc;
}

int policy_trainer_logprobs(double *out, struct policy_trainer *tr, const struct policy_batch *b,
                            const int *targets)
{
	struct policy_ref_tape *tape = NULL;
	int rc;
	if ((rc = scratch(tr)) ||
	    (rc = policy_ref_forward(&tape, &tr->cfg, &tr->layout, tr->pd, b)))
		return rc;
	policy_logprobs(out, policy_ref_logits(tape), b->n_tokens, tr->cfg.vocab_size, targets);
	policy_ref_tape_free(tape);
	return 0;
}

int policy_trainer_pg_step(struct policy_step_stats *st, struct policy_trainer *tr,
                           const struct policy_batch *b, const int *targets, const double *logp_old,
                           const double *adv, const struct policy_loss_opts *opts)
{
	struct policy_ref_tape *tape = NULL;
	struct policy_loss_stats ls;
	double *dl = NULL;
	int rc;
	memset(st, 0, sizeof(*st));
	if ((rc = scratch(tr)) ||
	    (rc = policy_ref_forward(&tape, &tr->cfg, &tr->layout, tr->pd, b)))
		return rc;
	dl = malloc((size_t)b->n_tokens * tr->cfg.vocab_size * sizeof(double));
	if (!dl) {
		rc = swerve_error_set(SWERVE_ENOMEM, "trainer: out of memory");
		goto done;
	}
	if ((rc = policy_loss_pg(&ls, dl, policy_ref_logits(tape), b->n_tokens, tr->cfg.vocab_size,
	                         targets, logp_old, adv, opts)))
		goto done;
	if ((rc = policy_ref_backward(tape, dl, 1.0, tr->gd)) || (rc = apply(st, tr)))
		goto done;
	st->loss = ls.loss;
	st->aux = policy_ref_aux_loss(tape);
	st->n_tokens = ls.n_tokens;
	st->entropy = ls.n_tokens > 0 ? ls.entropy_sum / ls.n_tokens : 0;
	st->clipped_frac = ls.n_tokens > 0 ? ls.clipped / ls.n_tokens : 0;
done:
	free(dl);
	policy_ref_tape_free(tape);
	return rc;
}

/* ---- checkpoints ---------------------------------------------------------- */

static void path_join(char *dst, size_t n, const char *dir, const char *file)
{
	snprintf(dst, n, "%s/%s", dir, file);
}

int policy_checkpoint_save(const struct policy_trainer *tr, const char *dir)
{
	char p[4096], v[8][64];
	const float *arena[2];
	const char *prefix[2];
	const char *meta[20];
	int rc;

	if (mkdir(dir, 0755) && errno != EEXIST)
		return swerve_error_set(SWERVE_EIO, "%s: cannot create: %s", dir, strerror(errno));
	path_join(p, sizeof(p), dir, "config.json");
	if ((rc = policy_config_save(&tr->cfg, p)))
		return rc;
	arena[0] = tr->params;
	prefix[0] = "";
	meta[0] = "format";
	meta[1] = "pt";
	meta[2] = NULL;
	path_join(p, sizeof(p), dir, "model.safetensors");
	if ((rc = policy_st_write_arena(p, &tr->layout, arena, prefix, 1, meta)))
		return rc;
	arena[0] = tr->m;
	arena[1] = tr->v;
	prefix[0] = "m.";
	prefix[1] = "v.";
	snprintf(v[0], sizeof(v[0]), "%ld", tr->opt.step);
	snprintf(v[1], sizeof(v[1]), "%" PRIu64, tr->rng);
	snprintf(v[2], sizeof(v[2]), "%.17g", tr->opt.lr);
	snprintf(v[3], sizeof(v[3]), "%.17g", tr->opt.beta1);
	snprintf(v[4], sizeof(v[4]), "%.17g", tr->opt.beta2);
	snprintf(v[5], sizeof(v[5]), "%.17g", tr->opt.eps);
	snprintf(v[6], sizeof(v[6]), "%.17g", tr->opt.weight_decay);
	snprintf(v[7], sizeof(v[7]), "%.17g", tr->opt.clip_norm);
	const char *m2[] = {"step",         v[0], "rng",       v[1], "lr",  v[2],
	                    "beta1",        v[3], "beta2",     v[4], "eps", v[5],
	                    "weight_decay", v[6], "clip_norm", v[7], NULL};
	path_join(p, sizeof(p), dir, "optimizer.safetensors");
	return policy_st_write_arena(p, &tr->layout, arena, prefix, 2, m2);
}

static int meta_num(double *out, json_t *m, const char *key, const char *path)
{
	json_t *s = json_object_get(m, key);
	char *end;
	if (!json_is_string(s))
		return swerve_error_set(SWERVE_ECORRUPT, "%s: metadata %s is missing", path, key);
	*out = strtod(json_string_value(s), &end);
	if (*end)
		return swerve_error_set(SWERVE_ECORRUPT, "%s: metadata %s is not a number", path,
		                        key);
	return 0;
}

int policy_checkpoint_load(struct policy_trainer **out, const char *dir)
{
	char p[4096];
	struct policy_config cfg;
	struct policy_trainer *tr = NULL;
	struct policy_st_file f;
	json_t *m = NULL;
	double step = 0, x;
	int rc;

	memset(&f, 0, sizeof(f));
	path_join(p, sizeof(p), dir, "config.json");
	if ((rc = policy_config_load(&cfg, p)) || (rc = policy_trainer_new(&tr, &cfg, 0)))
		goto done;
	path_join(p, sizeof(p), dir, "model.safetensors");
	if ((rc = policy_st_read(&f, p)) ||
	    (rc = policy_st_load_arena(tr->params, &f, &tr->layout, "")))
		goto done;
	policy_st_dispose(&f);
	path_join(p, sizeof(p), dir, "optimizer.safetensors");
	rc = policy_st_read(&f, p);
	if (rc == SWERVE_ENOTFOUND) { /* weights only (e.g. exported): fresh optimizer */
		swerve_error_clear();
		rc = 0;
		goto ok;
	}
	if (rc || (rc = policy_st_load_arena(tr->m, &f, &tr->layout, "m.")) ||
	    (rc = policy_st_load_arena(tr->v, &f, &tr->layout, "v.")))
		goto done;
	m = f.metadata_json ? json_loads(f.metadata_json, 0, NULL) : NULL;
	if (!m) {
		rc = swerve_error_set(SWERVE_ECORRUPT, "%s: no metadata", p);
		goto done;
	}
	if ((rc = meta_num(&step, m, "step", p)) || (rc = meta_num(&tr->opt.lr, m, "lr", p)) ||
	    (rc = meta_num(&tr->opt.beta1, m, "beta1", p)) ||
	    (rc = meta_num(&tr->opt.beta2, m, "beta2", p)) ||
	    (rc = meta_num(&tr->opt.eps, m, "eps", p)) ||
	    (rc = meta_num(&tr->opt.weight_decay, m, "weight_decay", p)) ||
	    (rc = meta_num(&tr->opt.clip_norm, m, "clip_norm", p)) ||
	    (rc = meta_num(&x, m, "rng", p)))
		goto done;
	tr->opt.step = (long)step;
	tr->rng = strtoull(json_string_value(json_object_get(m, "rng")), NULL, 10);
ok:
	*out = tr;
	tr = NULL;
done:
	if (rc)
		swerve_error_wrap("checkpoint %s", dir);
	json_decref(m);
	policy_st_dispose(&f);
	policy_trainer_free(tr);
	return rc;
}
