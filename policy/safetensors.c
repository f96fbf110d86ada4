/* safetensors.c - reading and writing the safetensors format (the one
 * Hugging Face's `safetensors` library reads): an 8-byte little-endian
 * header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
 * optional "__metadata__" (string to string), then the raw little-endian
 * data. The header is padded with spaces to a multiple of 8 bytes.
 * Tensors are written sorted by name, as the Python library does. */
#include "policy/policy.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t dtype_size(const char *dt)
{
	if (!strcmp(dt, "F64") || !strcmp(dt, "I64") || !strcmp(dt, "U64"))
		return 8;
	if (!strcmp(dt, "F32") || !strcmp(dt, "I32") || !strcmp(dt, "U32"))
		return 4;
	if (!strcmp(dt, "F16") || !strcmp(dt, "BF16") || !strcmp(dt, "I16") || !strcmp(dt, "U16"))
		return 2;
	if (!strcmp(dt, "I8") || !strcmp(dt, "U8") || !strcmp(dt, "BOOL"))
		return 1;
	return 0;
}

void policy_st_dispose(struct policy_st_file *f)
{
	free(f->e);
	free(f->metadata_json);
	free(f->data);
	memset(f, 0, sizeof(*f));
}

int policy_st_read(struct policy_st_file *out, const char *path)
{
	FILE *fp = fopen(path, "rb");
	unsigned char lenb[8];
	uint64_t hlen = 0;
	char *hdr = NULL;
	json_t *o = NULL;
	json_error_t je;
	struct policy_st_file f;
	long fsize;
	const char *key;
	json_t *val;
	int rc = -1;

	memset(&f, 0, sizeof(f));
	if (!fp)
		return swerve_error_set(errno == ENOENT ? SWERVE_ENOTFOUND : SWERVE_EIO, "%s: %s",
		                        path, strerror(errno));
	if (fseek(fp, 0, SEEK_END) || (fsize = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET)) {
		rc = swerve_error_set(SWERVE_EIO, "%s: cannot seek", path);
		goto done;
	}
	if (fsize < 8 || fread(lenb, 1, 8, fp) != 8) {
		rc = swerve_error_set(SWERVE_ECORRUPT, "%s: not a safetensors file (too short)",
		                      path);
		goto done;
	}
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | lenb[i];
	if (hlen > (uint64_t)fsize - 8 || hlen > (100u << 20)) {
		rc = swerve_error_set(SWERVE_ECORRUPT,
		                      "%s: safetensors header length %llu exceeds the file", path,
		                      (unsigned long long)hlen);
		goto done;
	}
	hdr = malloc(hlen + 1);
	f.data_len = (size_t)fsize - 8 - hlen;
	f.data = malloc(f.data_len ? f.data_len : 1);
	if (!hdr || !f.data) {
		rc = swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", path);
		goto done;
	}
	if (fread(hdr, 1, hlen, fp) != hlen || fread(f.data, 1, f.data_len, fp) != f.data_len) {
		rc = swerve_error_set(SWERVE_EIO, "%s: short read", path);
		goto done;
	}
	hdr[hlen] = 0;
	o = json_loads(hdr, 0, &je);
	if (!o || !json_is_object(o)) {
		rc = swerve_error_set(SWERVE_ECORRUPT, "%s: bad safetensors header: %s", path,
		                      o ? "not an object" : je.text);
		goto done;
	}
	f.e = calloc(json_object_size(o) + 1, sizeof(*f.e));
	if (!f.e) {
		rc = swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", path);
		goto done;
	}
	json_object_foreach(o, key, val)
	{
		struct policy_st_entry *e = &f.e[f.n];
		json_t *dt, *sh, *off;
		size_t numel = 1, i;
		json_t *d;
		if (!strcmp(key, "__metadata__")) {
			f.metadata_json = json_dumps(val, JSON_SORT_KEYS);
			continue;
		}
		dt = json_object_get(val, "dtype");
		sh = json_object_get(val, "shape");
		off = json_object_get(val, "data_offsets");
		if (strlen(key) >= sizeof(e->name) || !json_is_string(dt) || !json_is_array(sh) ||
		    json_array_size(sh) > 4 || !json_is_array(off) || json_array_size(off) != 2 ||
		    !dtype_size(json_string_value(dt))) {
			rc = swerve_error_set(SWERVE_ECORRUPT, "%s: tensor %s: bad header entry",
			                      path, key);
			goto done;
		}
		snprintf(e->name, sizeof(e->name), "%s", key);
		snprintf(e->dtype, sizeof(e->dtype), "%s", json_string_value(dt));
		e->ndim = (int)json_array_size(sh);
		json_array_foreach(sh, i, d)
		{
			e->shape[i] = json_integer_value(d);
			numel *= (size_t)e->shape[i];
		}
		e->begin = (size_t)json_integer_value(json_array_get(off, 0));
		e->end = (size_t)json_integer_value(json_array_get(off, 1));
		if (e->end < e->begin || e->end > f.data_len ||
		    e->end - e->begin != numel * dtype_size(e->dtype)) {
			rc = swerve_error_set(SWERVE_ECORRUPT,
			                      "%s: tensor %s: data_offsets do not match its shape",
			                      path, key);
			goto done;
		}
		f.n++;
	}
	*out = f;
	memset(&f, 0, sizeof(f));
	rc = 0;
done:
	if (fp)
		fclose(fp);
	free(hdr);
	json_decref(o);
	policy_st_dispose(&f);
	return rc;
}

const struct policy_st_entry *policy_st_find(const struct policy_st_file *f, const char *name)
{
	for (int i = 0; i < f->n; i++)
		if (!strcmp(f->e[i].name, name))
			return &f->e[i];
	return NULL;
}

struct item {
	char name[128];
	const float *src;
	const struct policy_tensor *t;
};

static int item_cmp(const void *a, const void *b)
{
	return strcmp(((const struct item *)a)->name, ((const struct item *)b)->name);
}

int policy_st_write_arena(const char *path, const struct policy_layout *L,
                          const float *const *arenas, const char *const *prefixes, int n_arenas,
                          const char *const *meta)
{
	int n = L->n * n_arenas, rc = -1;
	struct item *it = calloc((size_t)n + 1, sizeof(*it));
	json_t *o = json_object();
	char *hdr = NULL, tmp[4096];
	size_t off = 0, hlen, padded;
	FILE *fp = NULL;
	unsigned char lenb[8];

	if (!it || !o) {
		rc = swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", path);
		goto done;
	}
	for (int a = 0; a < n_arenas; a++)
		for (int i = 0; i < L->n; i++) {
			struct item *x = &it[a * L->n + i];
			snprintf(x->name, sizeof(x->name), "%s%s", prefixes[a], L->t[i].name);
			x->src = arenas[a] + L->t[i].offset;
			x->t = &L->t[i];
		}
	qsort(it, (size_t)n, sizeof(*it), item_cmp);
	for (int i = 0; i < n; i++) {
		json_t *e = json_object(), *sh = json_array();
		size_t bytes = it[i].t->numel * 4;
		for (int d = 0; d < it[i].t->ndim; d++)
			json_array_append_new(sh, json_integer(it[i].t->shape[d]));
		json_object_set_new(e, "dtype", json_string("F32"));
		json_object_set_new(e, "shape", sh);
		json_object_set_new(e, "data_offsets",
		                    json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes)));
		json_object_set_new(o, it[i].name, e);
		off += bytes;
	}
	if (meta && meta[0]) {
		json_t *m = json_object();
		for (int i = 0; meta[i] && meta[i + 1]; i += 2)
			json_object_set_new(m, meta[i], json_string(meta[i + 1]));
		json_object_set_new(o, "__metadata__", m);
	}
	hdr = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	if (!hdr) {
		rc = swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", path);
		goto done;
	}
	hlen = strlen(hdr);
	padded = (hlen + 7) / 8 * 8;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fp = fopen(tmp, "wb");
	if (!fp) {
		rc = swerve_error_set(SWERVE_EIO, "%s: %s", tmp, strerror(errno));
		goto done;
	}
	for (int i = 0; i < 8; i++)
		lenb[i] = (unsigned char)(padded >> (8 * i));
	if (fwrite(lenb, 1, 8, fp) != 8 || fwrite(hdr, 1, hlen, fp) != hlen)
		goto io;
	for (size_t i = hlen; i < padded; i++)
		if (fputc(' ', fp) == EOF)
			goto io;
	/* x86-64 and aarch64 are little-endian: floats go out as they are */
	for (int i = 0; i < n; i++)
		if (fwrite(it[i].src, 4, it[i].t->numel, fp) != it[i].t->numel)
			goto io;
	if (fclose(fp)) {
		fp = NULL;
		goto io;
	}
	fp = NULL;
	if (rename(tmp, path)) {
		rc = swerve_error_set(SWERVE_EIO, "%s: %s", path, strerror(errno));
		goto done;
	}
	rc = 0;
	goto done;
io:
	rc = swerve_error_set(SWERVE_EIO, "%s: write failed: %s", tmp, strerror(errno));
done:
	if (fp)
		fclose(fp);
	free(it);
	free(hdr);
	json_decref(o);
	return rc;
}

int policy_st_load_arena(float *arena, const struct policy_st_file *f,
                         const struct policy_layout *L, const char *prefix)
{
	char nm[160];
	for (int i = 0; i < L->n; i++) {
		const struct policy_tensor *t = &L->t[i];
		const struct policy_st_entry *e;
		snprintf(nm, sizeof(nm), "%s%s", prefix, t->name);
		e = policy_st_find(f, nm);
		if (!e)
			return swerve_error_set(SWERVE_ENOTFOUND,
			                        "checkpoint: tensor %s is missing", nm);
		if (strcmp(e->dtype, "F32") || e->ndim != t->ndim)
			return swerve_error_set(SWERVE_EINVAL,
			                        "checkpoint: tensor %s: expected F32 with %d dims, "
			                        "found %s with %d",
			                        nm, t->ndim, e->dtype, e->ndim);
		for (int d = 0; d < t->ndim; d++)
			if (e->shape[d] != t->shape[d])
				return swerve_error_set(SWERVE_EINVAL,
				                        "checkpoint: tensor %s: dim %d is %lld, "
				                        "the config says %d",
				                        nm, d, (long long)e->shape[d], t->shape[d]);
		memcpy(arena + t->offset, f->data + e->begin, t->numel * 4);
	}
	return 0;
}
