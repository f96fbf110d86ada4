/* trainer.c - the trainer's state (fp32 master weights, AdamW moments, rng)
 * and its CPU training steps over the reference model (checkpoints are in
 * checkpoint.c). libc only, so GPU binaries can link it. The CPU step casts the fp32 weights to
 * double, runs the reference model, and casts the gradients back to fp32 for AdamW. */
#include "policy/policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
	if (tr->ops)
		tr->ops->free(tr->dev);
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

int policy_trainer_sync_host(struct policy_trainer *tr)
{
	return tr->ops ? tr->ops->pull(tr->dev, tr->params, tr->m, tr->v) : 0;
}

int policy_trainer_logprobs(double *out, struct policy_trainer *tr, const struct policy_batch *b,
                            const int *targets)
{
	struct policy_ref_tape *tape = NULL;
	int rc;
	if (tr->ops)
		return tr->ops->step(tr->dev, NULL, NULL, out, b, targets, NULL, NULL, NULL, 0);
	if ((rc = scratch(tr)) ||
	    (rc = policy_ref_forward(&tape, &tr->cfg, &tr->layout, tr->pd, b)))
		return rc;
	policy_logprobs(out, policy_ref_logits(tape), b->n_tokens, tr->cfg.vocab_size, targets);
	policy_ref_tape_free(tape);
	return 0;
}

/* One optimizer step over n micro-batches (gradient accumulation): each
 * micro-batch's forward and backward add its gradient, scaled by 1 / n, so
 * AdamW steps on the mean; logp_old NULL means cross-entropy. On the device
 * the first micro-batch writes the gradient arena and the others add to it
 * (POLICY_GPU_BACKWARD_ACC); the device's AdamW takes the mean. */
static int train_step(struct policy_step_stats *st, struct policy_trainer *tr,
                      const struct policy_batch *bs, const int *const *targets,
                      const double *const *logp_old, const double *const *adv,
                      const struct policy_loss_opts *opts, int n)
{
	struct policy_ref_tape *tape = NULL;
	double *dl = NULL, ent = 0, clip = 0;
	int rc = 0;
	memset(st, 0, sizeof(*st));
	if (n < 1)
		return swerve_error_set(SWERVE_EINVAL, "trainer: %d micro-batches (need >= 1)", n);
	if (!tr->ops && (rc = scratch(tr)))
		return rc;
	for (int i = 0; i < n; i++) {
		const struct policy_batch *b = &bs[i];
		const double *old = logp_old ? logp_old[i] : NULL, *ad = adv ? adv[i] : NULL;
		struct policy_loss_stats ls;
		double aux = 0;
		if (tr->ops) {
			rc = tr->ops->step(tr->dev, &ls, &aux, NULL, b, targets[i], old, ad, opts,
			                   i ? POLICY_GPU_BACKWARD_ACC : POLICY_GPU_BACKWARD);
			if (rc)
				goto done;
		} else {
			size_t nl = (size_t)b->n_tokens * tr->cfg.vocab_size;
			if ((rc = policy_ref_forward(&tape, &tr->cfg, &tr->layout, tr->pd, b)))
				goto done;
			free(dl);
			dl = malloc(nl * sizeof(double));
			if (!dl) {
				rc = swerve_error_set(SWERVE_ENOMEM, "trainer: out of memory");
				goto done;
			}
			rc = old ? policy_loss_pg(&ls, dl, policy_ref_logits(tape), b->n_tokens,
			                          tr->cfg.vocab_size, targets[i], old, ad, opts)
			         : policy_loss_xent(&ls, dl, policy_ref_logits(tape), b->n_tokens,
			                            tr->cfg.vocab_size, targets[i]);
			if (rc)
				goto done;
			if (n > 1)
				for (size_t j = 0; j < nl; j++)
					dl[j] /= n;
			if ((rc = policy_ref_backward(tape, dl, 1.0 / n, tr->gd)))
				goto done;
			aux = policy_ref_aux_loss(tape);
			policy_ref_tape_free(tape);
			tape = NULL;
		}
		st->loss += ls.loss / n;
		st->aux += aux / n;
		st->n_tokens += ls.n_tokens;
		ent += ls.entropy_sum;
		clip += ls.clipped;
	}
	if (tr->ops)
		rc = tr->ops->adamw(tr->dev, &st->grad_norm, &tr->opt);
	else
		rc = apply(st, tr);
	st->entropy = st->n_tokens > 0 ? ent / st->n_tokens : 0;
	st->clipped_frac = logp_old && st->n_tokens > 0 ? clip / st->n_tokens : 0;
done:
	free(dl);
	policy_ref_tape_free(tape);
	return rc;
}

int policy_trainer_sft_step(struct policy_step_stats *st, struct policy_trainer *tr,
                            const struct policy_batch *b, const int *targets)
{
	return train_step(st, tr, b, &targets, NULL, NULL, NULL, 1);
}

int policy_trainer_sft_step_accum(struct policy_step_stats *st, struct policy_trainer *tr,
                                  const struct policy_batch *batches, const int *const *targets,
                                  int n_micro)
{
	return train_step(st, tr, batches, targets, NULL, NULL, NULL, n_micro);
}

int policy_trainer_pg_step(struct policy_step_stats *st, struct policy_trainer *tr,
                           const struct policy_batch *b, const int *targets, const double *logp_old,
                           const double *adv, const struct policy_loss_opts *opts)
{
	return train_step(st, tr, b, &targets, &logp_old, &adv, opts, 1);
}

int policy_trainer_pg_step_accum(struct policy_step_stats *st, struct policy_trainer *tr,
                                 const struct policy_batch *batches, const int *const *targets,
                                 const double *const *logp_old, const double *const *adv,
                                 const struct policy_loss_opts *opts, int n_micro)
{
	return train_step(st, tr, batches, targets, logp_old, adv, opts, n_micro);
}
