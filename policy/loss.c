/* loss.c - the CPU reference of the losses on logits: supervised
 * cross-entropy, and the policy-gradient objectives CISPO (MiniMax-M1),
 * GRPO/PPO-clip and DAPO (clip-higher), token-level normalisation; plus the
 * group advantages. Double precision; gradients w.r.t. the logits follow
 * SPEC.md section 1: dL/dz_{t,v} = dL/dlogp_t * (1[v = y_t] - p_{t,v}). */
#include "policy/policy.h"

#include <math.h>
#include <string.h>

/* log-softmax pieces of one row: max, log-sum-exp, entropy */
static double row_lse(const double *z, int V, double *entropy)
{
	double mx = -INFINITY, s = 0, lse, h = 0;
	for (int v = 0; v < V; v++)
		mx = z[v] > mx ? z[v] : mx;
	for (int v = 0; v < V; v++)
		s += exp(z[v] - mx);
	lse = mx + log(s);
	if (entropy) {
		for (int v = 0; v < V; v++) {
			double lp = z[v] - lse;
			h -= exp(lp) * lp;
		}
		*entropy = h;
	}
	return lse;
}

/* dz_v = g * (1[v = y] - p_v) */
static void row_grad(double *dz, const double *z, int V, double lse, int y, double g)
{
	for (int v = 0; v < V; v++)
		dz[v] = g * ((v == y) - exp(z[v] - lse));
}

static int check_targets(const int *targets, int T, int V)
{
	for (int t = 0; t < T; t++)
		if (targets[t] >= V)
			return swerve_error_set(
			        SWERVE_EINVAL, "loss: target %d: id %d outside the vocabulary (%d)",
			        t, targets[t], V);
	return 0;
}

int policy_loss_xent(struct policy_loss_stats *st, double *dlogits, const double *logits, int T,
                     int V, const int *targets)
{
	double n = 0, loss = 0, ent = 0, lps = 0;
	int rc = check_targets(targets, T, V);
	if (rc)
		return rc;
	for (int t = 0; t < T; t++)
		n += targets[t] >= 0;
	for (int t = 0; t < T; t++) {
		const double *z = logits + (size_t)t * V;
		double h, lse, lp;
		if (targets[t] < 0) {
			if (dlogits)
				memset(dlogits + (size_t)t * V, 0, (size_t)V * sizeof(double));
			continue;
		}
		lse = row_lse(z, V, &h);
		lp = z[targets[t]] - lse;
		loss -= lp / n;
		lps += lp;
		ent += h;
		if (dlogits) /* d(-lp/n)/dlp = -1/n */
			row_grad(dlogits + (size_t)t * V, z, V, lse, targets[t], -1.0 / n);
	}
	if (st) {
		memset(st, 0, sizeof(*st));
		st->loss = loss;
		st->n_tokens = n;
		st->logp_sum = lps;
		st->entropy_sum = ent;
	}
	return 0;
}

int policy_loss_pg(struct policy_loss_stats *st, double *dlogits, const double *logits, int T,
                   int V, const int *targets, const double *logp_old, const double *adv,
                   const struct policy_loss_opts *o)
{
	double n = 0, loss = 0, ent = 0, lps = 0, clipped = 0;
	int rc = check_targets(targets, T, V);
	if (rc)
		return rc;
	if (o->kind != POLICY_LOSS_CISPO && o->kind != POLICY_LOSS_GRPO &&
	    o->kind != POLICY_LOSS_DAPO)
		return swerve_error_set(SWERVE_EINVAL, "loss: unknown kind %d", (int)o->kind);
	if (!(o->eps_high >= 0) || !(o->eps_low >= 0) || o->eps_low >= 1)
		return swerve_error_set(SWERVE_EINVAL,
		                        "loss: eps_low must be in [0,1) and eps_high >= 0");
	for (int t = 0; t < T; t++)
		n += targets[t] >= 0;
	for (int t = 0; t < T; t++) {
		const double *z = logits + (size_t)t * V;
		double h, lse, lp, r, A = adv[t], g; /* g = dLoss/dlogp_t */
		if (targets[t] < 0) {
			if (dlogits)
				memset(dlogits + (size_t)t * V, 0, (size_t)V * sizeof(double));
			continue;
		}
		lse = row_lse(z, V, &h);
		lp = z[targets[t]] - lse;
		r = exp(lp - logp_old[t]);
		if (o->kind == POLICY_LOSS_CISPO) {
			/* w = clip(r, 1 - eps_low, 1 + eps_high), stop-gradient;
			 * eps_low = 0 means no lower bound (M1) */
			double w = r;
			if (w > 1.0 + o->eps_high) {
				w = 1.0 + o->eps_high;
				clipped += 1;
			} else if (o->eps_low > 0 && w < 1.0 - o->eps_low) {
				w = 1.0 - o->eps_low;
				clipped += 1;
			}
			loss -= w * A * lp / n;
			g = -w * A / n;
		} else {
			/* PPO-clip: max(-A r, -A clip(r)); the gradient through r = exp(lp - old)
			 * is -A r where the unclipped term is the max, else 0 */
			double rc_ = r < 1.0 - o->eps_low    ? 1.0 - o->eps_low
			             : r > 1.0 + o->eps_high ? 1.0 + o->eps_high
			                                     : r;
			double un = -A * r, cl = -A * rc_;
			if (un >= cl) {
				loss += un / n;
				g = -A * r / n;
			} else {
				loss += cl / n;
				g = 0;
				clipped += 1;
			}
		}
		lps += lp;
		ent += h;
		if (dlogits)
			row_grad(dlogits + (size_t)t * V, z, V, lse, targets[t], g);
	}
	if (st) {
		memset(st, 0, sizeof(*st));
		st->loss = loss;
		st->n_tokens = n;
		st->logp_sum = lps;
		st->entropy_sum = ent;
		st->clipped = clipped;
	}
	return 0;
}

void policy_logprobs(double *out, const double *logits, int T, int V, const int *targets)
{
	for (int t = 0; t < T; t++) {
		const double *z = logits + (size_t)t * V;
		out[t] = targets[t] >= 0 && targets[t] < V ? z[targets[t]] - row_lse(z, V, NULL)
		                                           : 0.0;
	}
}

int policy_group_advantages(double *adv, const double *R, int n)
{
	double mean = 0, var = 0, sd;
	for (int i = 0; i < n; i++)
		mean += R[i] / n;
	for (int i = 0; i < n; i++)
		var += (R[i] - mean) * (R[i] - mean) / n;
	sd = sqrt(var);
	if (n < 2 || sd < 1e-12) {
		for (int i = 0; i < n; i++)
			adv[i] = 0;
		return 0;
	}
	for (int i = 0; i < n; i++)
		adv[i] = (R[i] - mean) / sd;
	return 1;
}
