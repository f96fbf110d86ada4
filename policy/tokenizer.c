/* tokenizer.c - the built-in byte-level tokenizer (ids 0..255 are bytes,
 * then a few special tokens) and byte-level BPE loaded from a Hugging Face
 * tokenizer.json (GPT-2 style: the byte-to-unicode alphabet, ranked merges,
 * added tokens).
 *
 * Pre-tokenisation follows GPT-2's pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with one simplification: every non-ASCII byte counts as a letter (no
 * Unicode tables), so text in other scripts may split differently from the
 * Python tokenizer at script boundaries; ASCII text splits identically.
 * Added/special tokens found literally in the text are matched first. */
#include "policy/policy.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a small open-addressing hash map: bytes -> int, u64 -> (int, int) -- */

struct smap {
	size_t cap;
	char **key;
	int *klen;
	int *val;
};

static uint64_t fnv(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ULL;
	return h;
}

static int smap_init(struct smap *m, size_t n)
{
	m->cap = 16;
	while (m->cap < 2 * n + 16)
		m->cap *= 2;
	m->key = calloc(m->cap, sizeof(char *));
	m->klen = calloc(m->cap, sizeof(int));
	m->val = calloc(m->cap, sizeof(int));
	return m->key && m->klen && m->val ? 0 : -1;
}

static void smap_dispose(struct smap *m)
{
	for (size_t i = 0; m->key && i < m->cap; i++)
		free(m->key[i]);
	free(m->key);
	free(m->klen);
	free(m->val);
}

/* the value for key, or -1 */
static int smap_get(const struct smap *m, const char *k, int n)
{
	for (size_t i = fnv(k, (size_t)n) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->key[i])
			return -1;
		if (m->klen[i] == n && !memcmp(m->key[i], k, (size_t)n))
			return m->val[i];
	}
}

static int smap_put(struct smap *m, const char *k, int n, int v)
{
	size_t i;
	for (i = fnv(k, (size_t)n) & (m->cap - 1); m->key[i]; i = (i + 1) & (m->cap - 1))
		if (m->klen[i] == n && !memcmp(m->key[i], k, (size_t)n)) {
			m->val[i] = v;
			return 0;
		}
	m->key[i] = malloc((size_t)n + 1);
	if (!m->key[i])
		return -1;
	memcpy(m->key[i], k, (size_t)n);
	m->key[i][n] = 0;
	m->klen[i] = n;
	m->val[i] = v;
	return 0;
}

struct merge {
	int rank, id;
};

struct policy_tokenizer {
	int bpe;
	int vocab_size;
	char **bytes; /* id -> decoded bytes */
	int *nbytes;
	struct smap vocab;  /* BPE: token string (unicode alphabet) -> id */
	struct smap merges; /* BPE: "idA idB" (8 bytes) -> index into mg */
	struct merge *mg;
	int byte_id[256]; /* BPE: id of each single byte's symbol */
	int n_added;
	char **added; /* contents */
	int *added_len, *added_id;
	int eos;
};

/* GPT-2's bytes_to_unicode(): printable bytes map to themselves, the rest
 * to 256 + n in order. */
static int byte_to_cp(int b)
{
	static int table[256], ready;
	if (!ready) {
		int n = 0;
		for (int i = 0; i < 256; i++) {
			int keep = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174);
			table[i] = keep ? i : 256 + n++;
		}
		ready = 1;
	}
	return table[b];
}

static int utf8_put(char *out, int cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	out[0] = (char)(0xE0 | (cp >> 12));
	out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[2] = (char)(0x80 | (cp & 0x3F));
	return 3;
}

/* decodes one UTF-8 code point; returns its length or 0 if malformed */
static int utf8_get(const char *s, int n, int *cp)
{
	const unsigned char *u = (const unsigned char *)s;
	if (n >= 1 && u[0] < 0x80) {
		*cp = u[0];
		return 1;
	}
	if (n >= 2 && (u[0] & 0xE0) == 0xC0) {
		*cp = (u[0] & 0x1F) << 6 | (u[1] & 0x3F);
		return 2;
	}
	if (n >= 3 && (u[0] & 0xF0) == 0xE0) {
		*cp = (u[0] & 0x0F) << 12 | (u[1] & 0x3F) << 6 | (u[2] & 0x3F);
		return 3;
	}
	return 0;
}

static int set_bytes(struct policy_tokenizer *t, int id, const char *b, int n)
{
	free(t->bytes[id]);
	t->bytes[id] = malloc((size_t)n + 1);
	if (!t->bytes[id])
		return -1;
	memcpy(t->bytes[id], b, (size_t)n);
	t->bytes[id][n] = 0;
	t->nbytes[id] = n;
	return 0;
}

static int add_special(struct policy_tokenizer *t, const char *content, int id)
{
	int n = (int)strlen(content);
	char **a = realloc(t->added, (size_t)(t->n_added + 1) * sizeof(char *));
	int *l, *d;
	if (!a)
		return -1;
	t->added = a;
	l = realloc(t->added_len, (size_t)(t->n_added + 1) * sizeof(int));
	if (!l)
		return -1;
	t->added_len = l;
	d = realloc(t->added_id, (size_t)(t->n_added + 1) * sizeof(int));
	if (!d)
		return -1;
	t->added_id = d;
	t->added[t->n_added] = strdup(content);
	if (!t->added[t->n_added])
		return -1;
	t->added_len[t->n_added] = n;
	t->added_id[t->n_added] = id;
	t->n_added++;
	return set_bytes(t, id, content, n);
}

void policy_tokenizer_free(struct policy_tokenizer *t)
{
	if (!t)
		return;
	for (int i = 0; t->bytes && i < t->vocab_size; i++)
		free(t->bytes[i]);
	free(t->bytes);
	free(t->nbytes);
	for (int i = 0; i < t->n_added; i++)
		free(t->added[i]);
	free(t->added);
	free(t->added_len);
	free(t->added_id);
	if (t->bpe) {
		smap_dispose(&t->vocab);
		smap_dispose(&t->merges);
		free(t->mg);
	}
	free(t);
}

static struct policy_tokenizer *tok_alloc(int vocab)
{
	struct policy_tokenizer *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->vocab_size = vocab;
	t->bytes = calloc((size_t)vocab, sizeof(char *));
	t->nbytes = calloc((size_t)vocab, sizeof(int));
	t->eos = -1;
	if (!t->bytes || !t->nbytes) {
		policy_tokenizer_free(t);
		return NULL;
	}
	return t;
}

int policy_tokenizer_new_bytes(struct policy_tokenizer **out)
{
	static const char *const specials[] = {"<|bos|>", "<|eos|>", "<|pad|>", "<|im_start|>",
	                                       "<|im_end|>"};
	struct policy_tokenizer *t = tok_alloc(POLICY_BYTE_VOCAB);
	int rc = 0;
	if (!t)
		return swerve_error_set(SWERVE_ENOMEM, "tokenizer: out of memory");
	for (int b = 0; b < 256 && !rc; b++) {
		char c = (char)b;
		rc = set_bytes(t, b, &c, 1);
	}
	for (int i = 0; i < 5 && !rc; i++)
		rc = add_special(t, specials[i], 256 + i);
	if (rc) {
		policy_tokenizer_free(t);
		return swerve_error_set(SWERVE_ENOMEM, "tokenizer: out of memory");
	}
	t->eos = POLICY_TOK_EOS;
	*out = t;
	return 0;
}

static int merge_key(char key[8], int a, int b)
{
	memcpy(key, &a, 4);
	memcpy(key + 4, &b, 4);
	return 8;
}

int policy_tokenizer_load(struct policy_tokenizer **out, const char *path)
{
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je), *model, *vocab, *merges, *added;
	struct policy_tokenizer *t = NULL;
	const char *key;
	json_t *val;
	size_t i;
	int max_id = -1, rc = -1;

	if (!root)
		return swerve_error_set(je.line < 0 ? SWERVE_ENOTFOUND : SWERVE_EINVAL, "%s:%d: %s",
		                        path, je.line, je.text);
	model = json_object_get(root, "model");
	vocab = json_object_get(model, "vocab");
	merges = json_object_get(model, "merges");
	added = json_object_get(root, "added_tokens");
	if (!json_is_object(model) || !json_is_string(json_object_get(model, "type")) ||
	    strcmp(json_string_value(json_object_get(model, "type")), "BPE")) {
		rc = swerve_error_set(SWERVE_EUNSUPPORTED,
		                      "%s: model.type: only byte-level \"BPE\" is supported", path);
		goto done;
	}
	if (!json_is_object(vocab) || !json_is_array(merges)) {
		rc = swerve_error_set(SWERVE_EINVAL,
		                      "%s: model.vocab (object) and model.merges "
		                      "(array) are required",
		                      path);
		goto done;
	}
	json_object_foreach(vocab, key, val)
	{
		if (!json_is_integer(val) || json_integer_value(val) < 0 ||
		    json_integer_value(val) > 10000000) {
			rc = swerve_error_set(SWERVE_EINVAL, "%s: model.vocab[%s]: not a token id",
			                      path, key);
			goto done;
		}
		if (json_integer_value(val) > max_id)
			max_id = (int)json_integer_value(val);
	}
	json_array_foreach(added, i, val)
	{
		json_t *id = json_object_get(val, "id");
		if (!json_is_integer(id) || !json_is_string(json_object_get(val, "content"))) {
			rc = swerve_error_set(SWERVE_EINVAL,
			                      "%s: added_tokens[%zu]: needs id and content", path,
			                      i);
			goto done;
		}
		if (json_integer_value(id) > max_id)
			max_id = (int)json_integer_value(id);
	}
	t = tok_alloc(max_id + 1);
	if (!t || smap_init(&t->vocab, json_object_size(vocab)) ||
	    smap_init(&t->merges, json_array_size(merges)) ||
	    !(t->mg = calloc(json_array_size(merges) + 1, sizeof(*t->mg)))) {
		rc = swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", path);
		goto done;
	}
	t->bpe = 1;
	json_object_foreach(vocab, key, val)
	{
		int id = (int)json_integer_value(val), n = 0, k = 0, cp, len;
		int klen = (int)strlen(key);
		char b[1024];
		if (smap_put(&t->vocab, key, klen, id)) {
			rc = swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", path);
			goto done;
		}
		/* the token's bytes: map each code point back through byte_to_cp */
		while (k < klen && n < (int)sizeof(b)) {
			int byte = -1;
			len = utf8_get(key + k, klen - k, &cp);
			if (!len)
				break;
			for (int x = 0; x < 256; x++)
				if (byte_to_cp(x) == cp)
					byte = x;
			if (byte < 0)
				break;
			b[n++] = (char)byte;
			k += len;
		}
		if (k != klen) {
			rc = swerve_error_set(SWERVE_EINVAL,
			                      "%s: model.vocab[%s]: not in the byte-level alphabet "
			                      "(not a byte-level BPE tokenizer?)",
			                      path, key);
			goto done;
		}
		set_bytes(t, id, b, n);
	}
	for (int byte = 0; byte < 256; byte++) {
		char s[4];
		int n = utf8_put(s, byte_to_cp(byte));
		t->byte_id[byte] = smap_get(&t->vocab, s, n);
	}
	json_array_foreach(merges, i, val)
	{
		const char *a, *b;
		char buf[2048], key8[8];
		int ia, ib, im;
		if (json_is_string(val)) {
			const char *s = json_string_value(val), *sp = strchr(s, ' ');
			if (!sp || (size_t)(sp - s) >= sizeof(buf) / 2 ||
			    strlen(sp + 1) >= sizeof(buf) / 2) {
				rc = swerve_error_set(SWERVE_EINVAL,
				                      "%s: model.merges[%zu]: expected \"a b\"",
				                      path, i);
				goto done;
			}
			memcpy(buf, s, (size_t)(sp - s));
			buf[sp - s] = 0;
			a = buf;
			b = sp + 1;
		} else if (json_is_array(val) && json_array_size(val) == 2 &&
		           json_is_string(json_array_get(val, 0)) &&
		           json_is_string(json_array_get(val, 1))) {
			a = json_string_value(json_array_get(val, 0));
			b = json_string_value(json_array_get(val, 1));
		} else {
			rc = swerve_error_set(SWERVE_EINVAL,
			                      "%s: model.merges[%zu]: expected \"a b\" or [a, b]",
			                      path, i);
			goto done;
		}
		{
			char cat[2048];
			int la = (int)strlen(a), lb = (int)strlen(b);
			if (la + lb >= (int)sizeof(cat)) {
				rc = swerve_error_set(SWERVE_EINVAL,
				                      "%s: model.merges[%zu]: too long", path, i);
				goto done;
			}
			ia = smap_get(&t->vocab, a, la);
			ib = smap_get(&t->vocab, b, lb);
			memcpy(cat, a, (size_t)la);
			memcpy(cat + la, b, (size_t)lb);
			im = smap_get(&t->vocab, cat, la + lb);
		}
		if (ia < 0 || ib < 0 || im < 0) {
			rc = swerve_error_set(
			        SWERVE_EINVAL,
			        "%s: model.merges[%zu]: a part or the merged token is "
			        "not in model.vocab",
			        path, i);
			goto done;
		}
		if (smap_get(&t->merges, key8, merge_key(key8, ia, ib)) >= 0)
			continue; /* a duplicate merge keeps its first (best) rank */
		t->mg[i].rank = (int)i;
		t->mg[i].id = im;
		if (smap_put(&t->merges, key8, 8, (int)i)) {
			rc = swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", path);
			goto done;
		}
	}
	json_array_foreach(added, i, val)
	{
		const char *c = json_string_value(json_object_get(val, "content"));
		if (add_special(t, c, (int)json_integer_value(json_object_get(val, "id")))) {
			rc = swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", path);
			goto done;
		}
	}
	t->eos = policy_tokenizer_special(t, "<|endoftext|>");
	if (t->eos < 0)
		t->eos = policy_tokenizer_special(t, "<|eos|>");
	if (t->eos < 0)
		t->eos = policy_tokenizer_special(t, "</s>");
	if (t->eos < 0)
		t->eos = policy_tokenizer_special(t, "<|im_end|>");
	*out = t;
	t = NULL;
	rc = 0;
done:
	policy_tokenizer_free(t);
	json_decref(root);
	return rc;
}

int policy_tokenizer_vocab_size(const struct policy_tokenizer *t)
{
	return t->vocab_size;
}

int policy_tokenizer_special(const struct policy_tokenizer *t, const char *content)
{
	for (int i = 0; i < t->n_added; i++)
		if (!strcmp(t->added[i], content))
			return t->added_id[i];
	return -1;
}

int policy_tokenizer_eos(const struct policy_tokenizer *t)
{
	return t->eos;
}

/* ---- encoding ------------------------------------------------------------- */

struct ids {
	int *v;
	int n, cap;
};

static int push(struct ids *a, int id)
{
	if (a->n == a->cap) {
		int *v = realloc(a->v, (size_t)(a->cap ? a->cap * 2 : 64) * sizeof(int));
		if (!v)
			return -1;
		a->v = v;
		a->cap = a->cap ? a->cap * 2 : 64;
	}
	a->v[a->n++] = id;
	return 0;
}

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
static int is_letter(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}
static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}
static int cls(unsigned char c)
{
	return is_space(c) ? 0 : is_letter(c) ? 1 : is_digit(c) ? 2 : 3;
}

/* length of the GPT-2 pre-token starting at s[0] */
static size_t pretoken(const unsigned char *s, size_t n)
{
	static const char *const contr[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
	size_t j = 0, k;
	if (s[0] == '\'')
		for (int i = 0; i < 7; i++) {
			size_t l = strlen(contr[i]);
			if (l <= n && !memcmp(s, contr[i], l))
				return l;
		}
	if (s[0] == ' ' && n > 1 && !is_space(s[1]))
		j = 1;
	if (!is_space(s[j])) {
		int c = cls(s[j]);
		for (k = j + 1; k < n && cls(s[k]) == c; k++)
			;
		return k;
	}
	for (k = 0; k < n && is_space(s[k]); k++)
		;
	if (k < n && k > 1)
		return k - 1; /* \s+(?!\S): leave the last space to prefix the next token */
	return k;
}

/* BPE on one pre-token: start from byte symbols, merge the best-ranked pair
 * until none applies. */
static int bpe_chunk(struct ids *out, const struct policy_tokenizer *t, const unsigned char *s,
                     size_t n)
{
	int *sym = malloc(n * sizeof(int)), m = (int)n;
	char key8[8];
	if (!sym)
		return -1;
	for (size_t i = 0; i < n; i++) {
		sym[i] = t->byte_id[s[i]];
		if (sym[i] < 0) {
			free(sym);
			return swerve_error_set(
			        SWERVE_EINVAL,
			        "tokenizer: byte 0x%02x has no token in the vocabulary", s[i]);
		}
	}
	for (;;) {
		int best = -1, best_rank = 0;
		for (int i = 0; i + 1 < m; i++) {
			int mi = smap_get(&t->merges, key8, merge_key(key8, sym[i], sym[i + 1]));
			if (mi >= 0 && (best < 0 || t->mg[mi].rank < best_rank)) {
				best = i;
				best_rank = t->mg[mi].rank;
			}
		}
		if (best < 0)
			break;
		sym[best] =
		        t->mg[smap_get(&t->merges, key8, merge_key(key8, sym[best], sym[best + 1]))]
		                .id;
		memmove(sym + best + 1, sym + best + 2, (size_t)(m - best - 2) * sizeof(int));
		m--;
	}
	for (int i = 0; i < m; i++)
		if (push(out, sym[i])) {
			free(sym);
			return -1;
		}
	free(sym);
	return 0;
}

static int encode_plain(struct ids *out, const struct policy_tokenizer *t, const unsigned char *s,
                        size_t n)
{
	size_t i = 0;
	if (!t->bpe) {
		for (i = 0; i < n; i++)
			if (push(out, s[i]))
				return -1;
		return 0;
	}
	while (i < n) {
		size_t l = pretoken(s + i, n - i);
		int rc = bpe_chunk(out, t, s + i, l);
		if (rc)
			return rc;
		i += l;
	}
	return 0;
}

int policy_tokenizer_encode(int **ids, int *n, const struct policy_tokenizer *t, const char *text,
                            size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	struct ids out = {0};
	size_t i = 0, start = 0;
	int rc;
	while (i <= len) {
		int hit = -1, hl = 0;
		for (int a = 0; i < len && a < t->n_added; a++)
			if (t->added_len[a] > hl && (size_t)t->added_len[a] <= len - i &&
			    !memcmp(s + i, t->added[a], (size_t)t->added_len[a])) {
				hit = a;
				hl = t->added_len[a];
			}
		if (hit < 0 && i < len) {
			i++;
			continue;
		}
		if ((rc = encode_plain(&out, t, s + start, i - start)))
			goto fail;
		if (hit < 0)
			break;
		if (push(&out, t->added_id[hit])) {
			rc = -1;
			goto fail;
		}
		i += (size_t)hl;
		start = i;
	}
	*ids = out.v ? out.v : calloc(1, sizeof(int));
	*n = out.n;
	return 0;
fail:
	free(out.v);
	if (rc == -1)
		return swerve_error_set(SWERVE_ENOMEM, "tokenizer: out of memory");
	return rc;
}

int policy_tokenizer_decode(char **text, size_t *len, const struct policy_tokenizer *t,
                            const int *ids, int n)
{
	size_t total = 0, k = 0;
	char *s;
	for (int i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= t->vocab_size || !t->bytes[ids[i]])
			return swerve_error_set(SWERVE_EINVAL,
			                        "tokenizer: id %d (position %d) is "
			                        "not in the vocabulary",
			                        ids[i], i);
		total += (size_t)t->nbytes[ids[i]];
	}
	s = malloc(total + 1);
	if (!s)
		return swerve_error_set(SWERVE_ENOMEM, "tokenizer: out of memory");
	for (int i = 0; i < n; i++) {
		memcpy(s + k, t->bytes[ids[i]], (size_t)t->nbytes[ids[i]]);
		k += (size_t)t->nbytes[ids[i]];
	}
	s[k] = 0;
	*text = s;
	*len = k;
	return 0;
}
