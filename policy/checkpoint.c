/* checkpoint.c - checkpoints as a directory:
 *   <dir>/config.json           the model config
 *   <dir>/model.safetensors     the weights (F32), Python-loadable
 *   <dir>/optimizer.safetensors AdamW moments "m.<name>", "v.<name>" (F32)
 *                               and metadata: step, rng, hyper-parameters
 * Everything a training step reads is saved, so a resumed run continues
 * bit-exactly. A directory without optimizer.safetensors loads with a fresh
 * optimizer (exported weights). */
#include "policy/policy.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
