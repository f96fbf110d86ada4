/* params.c - the parameter arena: one contiguous fp32 block holding every
 * tensor of the model, its layout (names, shapes, offsets) and the
 * deterministic initialisation. Names follow PyTorch conventions so a
 * safetensors checkpoint reads naturally from Python. */
#include "policy/policy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t add(struct policy_layout *L, int *cap, const char *name, int ndim, int a, int b,
                  int c, int decay)
{
	struct policy_tensor *t;
	if (L->n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		L->t = realloc(L->t, (size_t)*cap * sizeof(*L->t));
		if (!L->t)
			abort(); /* tiny allocation: treat as fatal */
	}
	t = &L->t[L->n++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->ndim = ndim;
	t->shape[0] = a;
	t->shape[1] = b;
	t->shape[2] = c;
	t->numel = (size_t)a * (ndim > 1 ? (size_t)b : 1) * (ndim > 2 ? (size_t)c : 1);
	t->offset = L->total;
	t->decay = decay;
	L->total += t->numel;
	return t->offset;
}

int policy_layout_init(struct policy_layout *L, const struct policy_config *c)
{
	int cap = 0, D = c->dim, Hd = c->n_heads * c->head_dim, KVd = c->n_kv_heads * c->head_dim;
	int E = c->n_experts, F = c->expert_hidden;
	char nm[64];

	memset(L, 0, sizeof(*L));
	L->layers = calloc((size_t)c->n_layers, sizeof(*L->layers));
	if (!L->layers)
		return swerve_error_set(SWERVE_ENOMEM, "parameter layout: out of memory");
	L->tok_emb = add(L, &cap, "tok_emb", 2, c->vocab_size, D, 0, 1);
	for (int l = 0; l < c->n_layers; l++) {
		struct policy_layer_params *p = &L->layers[l];
		p->softmax = c->softmax_layer[l];
#define T(field, suffix, nd, a, b, cc, dec)                                                        \
	snprintf(nm, sizeof(nm), "layers.%d.%s", l, suffix);                                       \
	p->field = add(L, &cap, nm, nd, a, b, cc, dec)
		T(attn_norm, "attn_norm", 1, D, 0, 0, 0);
		T(wq, "attn.wq", 2, Hd, D, 0, 1);
		T(wk, "attn.wk", 2, p->softmax ? KVd : Hd, D, 0, 1);
		T(wv, "attn.wv", 2, p->softmax ? KVd : Hd, D, 0, 1);
		if (!p->softmax) {
			T(wgate, "attn.wgate", 2, Hd, D, 0, 1);
			T(out_norm, "attn.out_norm", 1, Hd, 0, 0, 0);
		}
		T(wo, "attn.wo", 2, D, Hd, 0, 1);
		T(ffn_norm, "ffn_norm", 1, D, 0, 0, 0);
		T(router, "moe.router", 2, E, D, 0, 1);
		T(w1, "moe.w1", 3, E, F, D, 1);
		T(w3, "moe.w3", 3, E, F, D, 1);
		T(w2, "moe.w2", 3, E, D, F, 1);
#undef T
	}
	L->final_norm = add(L, &cap, "final_norm", 1, D, 0, 0, 0);
	L->lm_head = add(L, &cap, "lm_head", 2, c->vocab_size, D, 0, 1);
	return 0;
}

void policy_layout_dispose(struct policy_layout *L)
{
	free(L->t);
	free(L->layers);
	memset(L, 0, sizeof(*L));
}

const struct policy_tensor *policy_layout_find(const struct policy_layout *L, const char *name)
{
	for (int i = 0; i < L->n; i++)
		if (strcmp(L->t[i].name, name) == 0)
			return &L->t[i];
	return NULL;
}

/* splitmix64: small, deterministic, good enough for initialisation */
static uint64_t next_u64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double uniform(uint64_t *s)
{
	return ((next_u64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double normal(uint64_t *s)
{
	double u1 = uniform(s), u2 = uniform(s);
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void policy_params_init(float *params, const struct policy_layout *L, uint64_t seed)
{
	int n_layers = 0;
	for (int i = 0; i < L->n; i++)
		if (strstr(L->t[i].name, ".attn_norm"))
			n_layers++;
	for (int i = 0; i < L->n; i++) {
		const struct policy_tensor *t = &L->t[i];
		uint64_t s = seed ^ (0x51ed270b7f4a7c15ULL * (uint64_t)(i + 1));
		double std = 0.02;
		if (strstr(t->name, "attn.wo") || strstr(t->name, "moe.w2"))
			std = 0.02 / sqrt(2.0 * (n_layers > 0 ? n_layers : 1));
		for (size_t j = 0; j < t->numel; j++)
			params[t->offset + j] = t->ndim == 1 ? 1.0f : (float)(std * normal(&s));
	}
}
