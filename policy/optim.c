/* optim.c - AdamW over the fp32 parameter arena with global-norm gradient
 * clipping. M1's settings: beta1 0.9, beta2 0.95, eps 1e-15 (its gradients
 * span 1e-18..1e-5, so a larger eps would silence the small ones). Weight
 * decay applies to matrices only (not norms). Deterministic: same inputs,
 * same bits, which checkpoint resume relies on. */
#include "policy/policy.h"

#include <math.h>

double policy_grad_norm(const float *g, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)g[i] * g[i];
	return sqrt(s);
}

double policy_adamw_step(struct policy_adamw *o, float *params, float *grads, float *m, float *v,
                         const struct policy_layout *L)
{
	double norm = policy_grad_norm(grads, L->total), scale = 1.0, bc1, bc2;
	if (o->clip_norm > 0 && norm > o->clip_norm)
		scale = o->clip_norm / (norm + 1e-30);
	o->step++;
	bc1 = 1.0 - pow(o->beta1, (double)o->step);
	bc2 = 1.0 - pow(o->beta2, (double)o->step);
	for (int ti = 0; ti < L->n; ti++) {
		const struct policy_tensor *t = &L->t[ti];
		double wd = t->decay ? o->weight_decay : 0.0;
		for (size_t j = t->offset; j < t->offset + t->numel; j++) {
			double g = grads[j] * scale;
			double mj = o->beta1 * m[j] + (1.0 - o->beta1) * g;
			double vj = o->beta2 * v[j] + (1.0 - o->beta2) * g * g;
			double upd = (mj / bc1) / (sqrt(vj / bc2) + o->eps);
			m[j] = (float)mj;
			v[j] = (float)vj;
			params[j] = (float)(params[j] - o->lr * (upd + wd * params[j]));
		}
	}
	return norm;
}
