/* train_main.c - the `swerve-train` command: init | sft | rl | eval-logprobs |
 * sample.
 *
 * Data files for sft and eval-logprobs are JSONL, one sequence per line:
 *   {"text": "..."}                      every next token is a target
 *   {"prompt": "...", "response": "..."} targets on the response only
 *   {"tokens": [ids...]}                 / {"prompt_tokens": [...], "response_tokens": [...]}
 * Text is tokenized with the built-in byte-level tokenizer or --tokenizer
 * tokenizer.json. Exit codes as `swerve`: 0 ok, 2 usage, 3 infrastructure
 * (nothing trustworthy produced). Errors: "swerve-train <cmd>: <item>: <reason>". */
#include "db/db.h"
#include "policy/policy.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { EXIT_OK = 0, EXIT_USAGE = 2, EXIT_INFRA = 3 };

static int fail(const char *cmd, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int fail(const char *cmd, int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "swerve-train %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- data ------------------------------------------------------------------ */

struct seq {
	int n, *tok, *tgt; /* tgt[t] = token predicted at t, or -1 */
};

struct dataset {
	int n;
	struct seq *s;
	int bad; /* load_prompts: lines reported and kept as empty entries */
};

static void dataset_free(struct dataset *d)
{
	for (int i = 0; i < d->n; i++) {
		free(d->s[i].tok);
		free(d->s[i].tgt);
	}
	free(d->s);
	memset(d, 0, sizeof(*d)); /* a loader's error path frees, then the caller does */
}

/* appends ids of a text or token-array field; returns count or -1 */
static int field_ids(int **out, json_t *o, const char *tfield, const char *kfield,
                     const struct policy_tokenizer *tok, const char *where)
{
	json_t *t = json_object_get(o, tfield), *k = json_object_get(o, kfield), *e;
	int n = 0;
	size_t i;
	*out = NULL;
	if (json_is_string(t)) {
		if (policy_tokenizer_encode(out, &n, tok, json_string_value(t),
		                            json_string_length(t)))
			return -1;
		return n;
	}
	if (json_is_array(k)) {
		*out = calloc(json_array_size(k) + 1, sizeof(int));
		json_array_foreach(k, i, e)
		{
			if (!json_is_integer(e)) {
				swerve_error_set(SWERVE_EINVAL, "%s: %s[%zu]: not an integer",
				                 where, kfield, i);
				return -1;
			}
			(*out)[n++] = (int)json_integer_value(e);
		}
		return n;
	}
	return 0;
}

static int load_data(struct dataset *d, const char *path, const struct policy_tokenizer *tok,
                     const struct policy_config *cfg, const char *skip_bad)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, where[4200];
	size_t cap = 0;
	int lineno = 0, rc = 0;
	memset(d, 0, sizeof(*d));
	if (!f)
		return swerve_error_set(errno == ENOENT ? SWERVE_ENOTFOUND : SWERVE_EIO, "%s: %s",
		                        path, strerror(errno));
	/* skip_bad (the command's name): a bad line is named on stderr and kept
	 * as an empty entry (the others keep their index); NULL: it fails the
	 * file (sft: no training on part of what was asked) */
	while (getline(&line, &cap, f) > 0) {
		json_error_t je;
		json_t *o;
		int *a = NULL, *b = NULL, na, nb, full, bad = 0;
		struct seq s = {0, NULL, NULL};
		struct seq *grown;
		lineno++;
		if (line[strspn(line, " \t\r\n")] == 0)
			continue;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		o = json_loads(line, 0, &je);
		if (!json_is_object(o)) {
			json_decref(o);
			bad = swerve_error_set(SWERVE_EINVAL, "%s: not a JSON object (%s)", where,
			                       je.text);
			goto add;
		}
		full = json_object_get(o, "text") || json_object_get(o, "tokens");
		na = field_ids(&a, o, full ? "text" : "prompt", full ? "tokens" : "prompt_tokens",
		               tok, where);
		nb = full ? 0 : field_ids(&b, o, "response", "response_tokens", tok, where);
		json_decref(o);
		if (na < 0 || nb < 0) {
			bad = swerve_error_code() ? swerve_error_code() : -1;
			goto add;
		}
		s.n = na + nb;
		if (s.n > cfg->max_seq_len)
			s.n = cfg->max_seq_len; /* truncate on the right */
		if (s.n < 2 || (!full && nb == 0)) {
			bad = swerve_error_set(
			        SWERVE_EINVAL,
			        "%s: needs \"text\"/\"tokens\" or \"prompt\"+\"response\" "
			        "with at least 2 tokens",
			        where);
			goto add;
		}
		s.tok = calloc((size_t)s.n, sizeof(int));
		s.tgt = calloc((size_t)s.n, sizeof(int));
		if (!s.tok || !s.tgt) {
			bad = swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", where);
			goto add;
		}
		for (int t = 0; t < s.n; t++)
			s.tok[t] = t < na ? a[t] : b[t - na];
		for (int t = 0; t < s.n; t++) {
			int ok = t + 1 < s.n && (full || t + 1 >= na);
			s.tgt[t] = ok ? s.tok[t + 1] : -1;
			if (!bad && (s.tok[t] < 0 || s.tok[t] >= cfg->vocab_size))
				bad = swerve_error_set(
				        SWERVE_EINVAL,
				        "%s: token %d is outside the model's vocabulary "
				        "(%d)",
				        where, s.tok[t], cfg->vocab_size);
		}
	add:
		free(a);
		free(b);
		if (bad && !skip_bad) {
			free(s.tok);
			free(s.tgt);
			rc = bad;
			break;
		}
		if (bad) {
			fail(skip_bad, 0, "%s (skipped)", swerve_error_last());
			free(s.tok);
			free(s.tgt);
			s.tok = s.tgt = NULL;
			s.n = 0;
			d->bad++;
		}
		grown = realloc(d->s, (size_t)(d->n + 1) * sizeof(*d->s));
		if (!grown) {
			free(s.tok);
			free(s.tgt);
			rc = swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", where);
			break;
		}
		d->s = grown;
		d->s[d->n++] = s;
	}
	free(line);
	fclose(f);
	if (!rc && d->n == d->bad)
		rc = swerve_error_set(SWERVE_EINVAL, "%s: no sequences%s", path,
		                      d->bad ? " that can be read" : "");
	if (rc)
		dataset_free(d);
	return rc;
}

/* packs sequences from *cursor (wrapping) until batch_tokens would be exceeded
 * (at least one sequence) */
struct packed {
	int n, n_seqs, *tok, *tgt, *cu;
};

static void pack(struct packed *p, const struct dataset *d, int *cursor, int batch_tokens)
{
	p->n = 0;
	p->n_seqs = 0;
	p->cu[0] = 0;
	for (int k = 0; k < d->n; k++) {
		const struct seq *s = &d->s[*cursor];
		if (p->n_seqs > 0 && p->n + s->n > batch_tokens)
			break;
		memcpy(p->tok + p->n, s->tok, (size_t)s->n * sizeof(int));
		memcpy(p->tgt + p->n, s->tgt, (size_t)s->n * sizeof(int));
		p->n += s->n;
		p->cu[++p->n_seqs] = p->n;
		*cursor = (*cursor + 1) % d->n;
	}
}

static int packed_alloc(struct packed *p, const struct dataset *d, int batch_tokens)
{
	size_t cap = (size_t)batch_tokens;
	for (int i = 0; i < d->n; i++)
		if ((size_t)d->s[i].n > cap)
			cap = (size_t)d->s[i].n;
	p->tok = calloc(cap + (size_t)batch_tokens, sizeof(int));
	p->tgt = calloc(cap + (size_t)batch_tokens, sizeof(int));
	p->cu = calloc((size_t)d->n + 2, sizeof(int));
	return p->tok && p->tgt && p->cu ? 0 : -1;
}

static int open_tokenizer(struct policy_tokenizer **t, const char *path,
                          const struct policy_config *cfg)
{
	int rc = path ? policy_tokenizer_load(t, path) : policy_tokenizer_new_bytes(t);
	if (rc)
		return rc;
	if (policy_tokenizer_vocab_size(*t) > cfg->vocab_size) {
		policy_tokenizer_free(*t);
		return swerve_error_set(SWERVE_EINVAL,
		                        "tokenizer has %d tokens but the model's vocab_size is %d",
		                        policy_tokenizer_vocab_size(*t), cfg->vocab_size);
	}
	return 0;
}

/* ---- commands -------------------------------------------------------------- */

static const char *const device_note =
        "  --device cpu|gpu    cpu: the CPU reference model (double precision; small\n"
        "                      configs). gpu: the CUDA model (policy/gpu.cu), where\n"
        "                      swerve-train was built with nvcc and a GPU is present\n"
        "  --precision bf16|fp32   GPU GEMMs (default bf16; LM head and loss fp32)\n"
        "  --max-tokens N      GPU buffers: most tokens in one packed batch (rl; 16384)\n"
        "  --peak-tflops X     the peak MFU is printed against (sft, rl); default on the\n"
        "                      GPU: its datasheet dense bf16 figure where known (H100 SXM\n"
        "                      / H200 989, H100 PCIe 756, A100 312); else mfu prints -\n";

#ifdef POLICY_HAVE_CUDA
#define HAVE_GPU 1
#else
#define HAVE_GPU 0
#endif

static int device_ok(const char *cmd, const char *dev)
{
	if (!strcmp(dev, "cpu") || (HAVE_GPU && !strcmp(dev, "gpu")))
		return 1;
	fail(cmd, EXIT_USAGE, "--device %s: expected cpu%s", dev,
	     HAVE_GPU ? " or gpu" : " (this swerve-train was built without CUDA)");
	return 0;
}

/* moves tr to the GPU when asked; 0 or an exit code */
static int to_device(const char *cmd, struct policy_trainer *tr, const char *dev,
                     const char *precision, int max_tokens, int max_seqs)
{
#ifdef POLICY_HAVE_CUDA
	if (!strcmp(dev, "gpu")) {
		enum policy_gpu_precision p =
		        strcmp(precision, "fp32") ? POLICY_GPU_BF16 : POLICY_GPU_FP32;
		if (policy_trainer_use_gpu(tr, max_tokens, max_seqs, p))
			return fail(cmd, EXIT_INFRA, "%s", swerve_error_last());
	}
#else
	(void)cmd;
	(void)tr;
	(void)dev;
	(void)precision;
	(void)max_tokens;
	(void)max_seqs;
#endif
	return 0;
}

/* the GPU's datasheet peak for MFU (0: unknown, not reported) */
static double device_peak(void)
{
#ifdef POLICY_HAVE_CUDA
	return policy_gpu_peak_flops();
#else
	return 0;
#endif
}

/* MFU as printed: a percentage, or "-" where no peak is known */
static const char *mfu_str(char *buf, size_t n, int known, double mfu)
{
	if (!known)
		return "-";
	snprintf(buf, n, "%.2f%%", 100.0 * mfu);
	return buf;
}

static int save(const char *cmd, struct policy_trainer *tr, const char *dir)
{
	if (policy_trainer_sync_host(tr) || policy_checkpoint_save(tr, dir))
		return fail(cmd, EXIT_INFRA, "%s", swerve_error_last());
	return 0;
}

static int cmd_init(int argc, char **argv)
{
	static const struct option lo[] = {{"config", 1, 0, 'c'},
	                                   {"out", 1, 0, 'o'},
	                                   {"seed", 1, 0, 's'},
	                                   {"help", 0, 0, 'h'},
	                                   {0, 0, 0, 0}};
	const char *cfgp = NULL, *out = NULL;
	unsigned long long seed = 1;
	struct policy_config cfg;
	struct policy_trainer *tr;
	int c, n_softmax = 0;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'c': cfgp = optarg; break;
		case 'o': out = optarg; break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'h':
			printf("usage: swerve-train init --out DIR [--config CONFIG.json] [--seed "
			       "N]\n\n"
			       "Writes a freshly initialised checkpoint (config.json, "
			       "model.safetensors,\n"
			       "optimizer.safetensors) to DIR. Without --config, a small default "
			       "config\n"
			       "(byte-level vocabulary) is used.\n");
			return EXIT_OK;
		default: return EXIT_USAGE;
		}
	}
	if (!out)
		return fail("init", EXIT_USAGE, "--out DIR is required (see --help)");
	if (cfgp) {
		if (policy_config_load(&cfg, cfgp))
			return fail("init", EXIT_USAGE, "%s", swerve_error_last());
	} else {
		policy_config_default(&cfg);
		policy_config_validate(&cfg);
	}
	if (policy_trainer_new(&tr, &cfg, seed))
		return fail("init", EXIT_INFRA, "%s", swerve_error_last());
	if (policy_checkpoint_save(tr, out)) {
		policy_trainer_free(tr);
		return fail("init", EXIT_INFRA, "%s", swerve_error_last());
	}
	for (int l = 0; l < cfg.n_layers; l++)
		n_softmax += tr->cfg.softmax_layer[l];
	printf("init: %s: %zu parameters (%.0f active per token), %d layers (%d softmax)\n", out,
	       tr->layout.total, policy_config_active_params(&tr->cfg), cfg.n_layers, n_softmax);
	policy_trainer_free(tr);
	return EXIT_OK;
}

struct common {
	const char *ckpt, *out, *data, *tokenizer, *device, *db, *run, *precision;
	int max_tokens;
	long steps;
	int batch_tokens, log_every, passes, groups, recompute, accum;
	double lr, wd, clip, eps_high, eps_low, peak_tflops;
	const char *loss;
};

static int parse_common(struct common *o, const char *cmd, int argc, char **argv, const char *usage)
{
	static const struct option lo[] = {
	        {"ckpt", 1, 0, 'k'},
	        {"out", 1, 0, 'o'},
	        {"data", 1, 0, 'd'},
	        {"tokenizer", 1, 0, 't'},
	        {"device", 1, 0, 'D'},
	        {"steps", 1, 0, 'n'},
	        {"batch-tokens", 1, 0, 'b'},
	        {"lr", 1, 0, 'l'},
	        {"weight-decay", 1, 0, 'w'},
	        {"clip", 1, 0, 'c'},
	        {"log-every", 1, 0, 'L'},
	        {"db", 1, 0, 'B'},
	        {"run", 1, 0, 'R'},
	        {"passes", 1, 0, 'K'},
	        {"groups", 1, 0, 'G'},
	        {"loss", 1, 0, 'x'},
	        {"eps-high", 1, 0, 'H'},
	        {"eps-low", 1, 0, 'W'},
	        {"recompute-logprobs", 0, 0, 'r'},
	        {"peak-tflops", 1, 0, 'P'},
	        {"precision", 1, 0, 'p'},
	        {"max-tokens", 1, 0, 'M'},
	        {"accum", 1, 0, 'A'},
	        {"help", 0, 0, 'h'},
	        {0, 0, 0, 0},
	};
	int c;
	memset(o, 0, sizeof(*o));
	o->device = "cpu";
	o->precision = "bf16";
	o->max_tokens = 16384;
	o->steps = 100;
	o->batch_tokens = 512;
	o->log_every = 10;
	o->passes = 1;
	o->accum = 1;
	o->groups = 8;
	o->lr = -1;
	o->wd = -1;
	o->clip = -1;
	o->eps_high = -1;
	o->eps_low = -1;
	o->loss = "cispo";
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'k': o->ckpt = optarg; break;
		case 'o': o->out = optarg; break;
		case 'd': o->data = optarg; break;
		case 't': o->tokenizer = optarg; break;
		case 'D': o->device = optarg; break;
		case 'n': o->steps = atol(optarg); break;
		case 'b': o->batch_tokens = atoi(optarg); break;
		case 'l': o->lr = atof(optarg); break;
		case 'w': o->wd = atof(optarg); break;
		case 'c': o->clip = atof(optarg); break;
		case 'L': o->log_every = atoi(optarg); break;
		case 'B': o->db = optarg; break;
		case 'R': o->run = optarg; break;
		case 'K': o->passes = atoi(optarg); break;
		case 'G': o->groups = atoi(optarg); break;
		case 'x': o->loss = optarg; break;
		case 'H': o->eps_high = atof(optarg); break;
		case 'W': o->eps_low = atof(optarg); break;
		case 'r': o->recompute = 1; break;
		case 'P': o->peak_tflops = atof(optarg); break;
		case 'p': o->precision = optarg; break;
		case 'M': o->max_tokens = atoi(optarg); break;
		case 'A': o->accum = atoi(optarg); break;
		case 'h': printf("%s%s", usage, device_note); return -2;
		default: return -1;
		}
	}
	if (optind < argc) {
		fail(cmd, EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if (!o->ckpt) {
		fail(cmd, EXIT_USAGE, "--ckpt DIR is required (see --help)");
		return -1;
	}
	if (o->steps < 0 || o->batch_tokens < 2 || o->passes < 1 || o->groups < 1 ||
	    o->log_every < 1 || o->accum < 1) {
		fail(cmd, EXIT_USAGE,
		     "--steps, --batch-tokens, --passes, --groups, --log-every, --accum "
		     "must be positive");
		return -1;
	}
	if (!o->out)
		o->out = o->ckpt;
	return device_ok(cmd, o->device) ? 0 : -1;
}

static void apply_opt(struct policy_trainer *tr, const struct common *o)
{
	if (o->lr >= 0)
		tr->opt.lr = o->lr;
	if (o->wd >= 0)
		tr->opt.weight_decay = o->wd;
	if (o->clip >= 0)
		tr->opt.clip_norm = o->clip;
}

static int cmd_sft(int argc, char **argv)
{
	static const char usage[] =
	        "usage: swerve-train sft --ckpt DIR --data FILE.jsonl [--out DIR] [--steps N]\n"
	        "                        [--batch-tokens N] [--lr X] [--weight-decay X] [--clip "
	        "X]\n"
	        "                        [--tokenizer tokenizer.json] [--log-every N] [--accum K]\n"
	        "                        [--device cpu|gpu] [--precision bf16|fp32] [--peak-tflops "
	        "X]\n\n"
	        "Supervised warm start: mean cross-entropy on the data's target tokens (+ the MoE\n"
	        "balance loss), AdamW. Sequences are packed (varlen) up to --batch-tokens.\n"
	        "--accum K: gradient accumulation, K packed micro-batches per optimizer step\n"
	        "(AdamW on the mean of their gradients; the memory of one micro-batch).\n"
	        "Saves the checkpoint to --out (default: --ckpt) at the end.\n";
	struct common o;
	struct policy_trainer *tr = NULL;
	struct policy_tokenizer *tok = NULL;
	struct dataset d = {0, NULL, 0};
	struct packed *p = NULL;
	struct policy_batch *mb = NULL;
	const int **mt = NULL;
	int cursor = 0, rc = parse_common(&o, "sft", argc, argv, usage), code = EXIT_OK;
	double t0;
	if (rc == -2)
		return EXIT_OK;
	if (rc)
		return EXIT_USAGE;
	if (!o.data)
		return fail("sft", EXIT_USAGE, "--data FILE.jsonl is required");
	if (policy_checkpoint_load(&tr, o.ckpt))
		return fail("sft", EXIT_INFRA, "%s", swerve_error_last());
	if (open_tokenizer(&tok, o.tokenizer, &tr->cfg) ||
	    load_data(&d, o.data, tok, &tr->cfg, NULL)) {
		code = fail("sft", EXIT_USAGE, "%s", swerve_error_last());
		goto done;
	}
	apply_opt(tr, &o);
	p = calloc((size_t)o.accum, sizeof(*p));
	mb = calloc((size_t)o.accum, sizeof(*mb));
	mt = calloc((size_t)o.accum, sizeof(*mt));
	for (int i = 0; p && i < o.accum; i++)
		if (packed_alloc(&p[i], &d, o.batch_tokens)) {
			code = fail("sft", EXIT_INFRA, "out of memory");
			goto done;
		}
	if (!p || !mb || !mt) {
		code = fail("sft", EXIT_INFRA, "out of memory");
		goto done;
	}
	{
		int cap = o.batch_tokens;
		for (int i = 0; i < d.n; i++)
			cap = d.s[i].n > cap ? d.s[i].n : cap;
		if ((code = to_device("sft", tr, o.device, o.precision, 2 * cap, d.n + 1)))
			goto done;
	}
	const double peak = o.peak_tflops > 0          ? o.peak_tflops * 1e12
	                    : !strcmp(o.device, "gpu") ? device_peak()
	                                               : 0;
	t0 = now_s();
	for (long s = 0; s < o.steps; s++) {
		struct policy_step_stats st;
		double t1 = now_s(), tps;
		int ntok = 0, nseq = 0;
		char mfu[32];
		for (int i = 0; i < o.accum; i++) {
			pack(&p[i], &d, &cursor, o.batch_tokens);
			mb[i].n_tokens = p[i].n;
			mb[i].tokens = p[i].tok;
			mb[i].n_seqs = p[i].n_seqs;
			mb[i].cu_seqlens = p[i].cu;
			mt[i] = p[i].tgt;
			ntok += p[i].n;
			nseq += p[i].n_seqs;
		}
		if (policy_trainer_sft_step_accum(&st, tr, mb, mt, o.accum)) {
			code = fail("sft", EXIT_INFRA, "step %ld: %s", s, swerve_error_last());
			goto done;
		}
		tps = ntok / (now_s() - t1);
		if (s % o.log_every == 0 || s + 1 == o.steps)
			printf("step %ld  loss %.4f  aux %.5f  entropy %.3f  grad_norm %.3f  "
			       "tokens/s %.0f  mfu %s\n",
			       tr->opt.step, st.loss, st.aux, st.entropy, st.grad_norm, tps,
			       mfu_str(mfu, sizeof(mfu), peak > 0,
			               peak > 0 ? tps *
			                                  policy_config_flops_per_token(
			                                          &tr->cfg,
			                                          nseq ? ntok / nseq : ntok) /
			                                  peak
			                        : 0));
		fflush(stdout);
	}
	if ((code = save("sft", tr, o.out)))
		goto done;
	printf("sft: %ld steps in %.1f s; checkpoint %s\n", o.steps, now_s() - t0, o.out);
done:
	for (int i = 0; p && i < o.accum; i++) {
		free(p[i].tok);
		free(p[i].tgt);
		free(p[i].cu);
	}
	free(p);
	free(mb);
	free(mt);
	dataset_free(&d);
	policy_tokenizer_free(tok);
	policy_trainer_free(tr);
	return code;
}

static int cmd_eval(int argc, char **argv)
{
	static const char usage[] =
	        "usage: swerve-train eval-logprobs --ckpt DIR --data FILE.jsonl\n"
	        "                                  [--tokenizer tokenizer.json] [--device "
	        "cpu|gpu]\n\n"
	        "Prints one JSON line per data line: the log-probability of each target token\n"
	        "under the checkpoint, their sum and count (behaviour logprobs for rollouts).\n"
	        "A line that cannot be read is named on stderr and skipped (its index, which\n"
	        "counts the non-blank lines, is left out); the exit status is then 2.\n";
	struct common o;
	struct policy_trainer *tr = NULL;
	struct policy_tokenizer *tok = NULL;
	struct dataset d = {0, NULL, 0};
	int rc = parse_common(&o, "eval-logprobs", argc, argv, usage), code = EXIT_OK;
	if (rc == -2)
		return EXIT_OK;
	if (rc)
		return EXIT_USAGE;
	if (!o.data)
		return fail("eval-logprobs", EXIT_USAGE, "--data FILE.jsonl is required");
	if (policy_checkpoint_load(&tr, o.ckpt))
		return fail("eval-logprobs", EXIT_INFRA, "%s", swerve_error_last());
	if (open_tokenizer(&tok, o.tokenizer, &tr->cfg) ||
	    load_data(&d, o.data, tok, &tr->cfg, "eval-logprobs")) {
		code = fail("eval-logprobs", EXIT_USAGE, "%s", swerve_error_last());
		goto done;
	}
	if (d.bad)
		code = EXIT_USAGE; /* named as they were read; the others still run */
	if ((rc = to_device("eval-logprobs", tr, o.device, o.precision, tr->cfg.max_seq_len, 2))) {
		code = rc;
		goto done;
	}
	for (int i = 0; i < d.n; i++) {
		int cu[2] = {0, d.s[i].n};
		if (d.s[i].n == 0)
			continue; /* a bad line, named when read */
		struct policy_batch b = {d.s[i].n, d.s[i].tok, 1, cu};
		double *lp = calloc((size_t)d.s[i].n, sizeof(double)), sum = 0;
		int n = 0;
		if (!lp || policy_trainer_logprobs(lp, tr, &b, d.s[i].tgt)) {
			free(lp);
			code = fail("eval-logprobs", EXIT_INFRA, "line %d: %s", i + 1,
			            swerve_error_last());
			goto done;
		}
		printf("{\"index\": %d, \"logprobs\": [", i);
		for (int t = 0; t < d.s[i].n; t++)
			if (d.s[i].tgt[t] >= 0) {
				printf("%s%.9g", n ? ", " : "", lp[t]);
				sum += lp[t];
				n++;
			}
		printf("], \"logprob_sum\": %.9g, \"n_tokens\": %d}\n", sum, n);
		free(lp);
	}
done:
	dataset_free(&d);
	policy_tokenizer_free(tok);
	policy_trainer_free(tr);
	return code;
}

static int cmd_rl(int argc, char **argv)
{
	static const char usage[] =
	        "usage: swerve-train rl --ckpt DIR --db swerve.db --run NAME [--out DIR]\n"
	        "                       [--steps N] [--groups N] [--passes K]\n"
	        "                       [--loss cispo|grpo|dapo] [--eps-high X] [--eps-low X]\n"
	        "                       [--recompute-logprobs] [--lr X] [--clip X]\n"
	        "                       [--peak-tflops X] [--accum K] [--device cpu|gpu]\n\n"
	        "RL from the runner's rewards: each step fetches up to --groups complete groups\n"
	        "of run NAME through the db consumer API, computes group advantages (groups\n"
	        "with equal rewards are skipped), trains --passes times with the chosen loss\n"
	        "(CISPO: eps-high 4, no lower bound; GRPO 0.2/0.2; DAPO 0.2/0.28), each pass\n"
	        "one optimizer step (--accum K: accumulated over K micro-batches of whole\n"
	        "sequences), marks the groups consumed, and stores loss, reward_mean,\n"
	        "clipped_frac, entropy, grad_norm, tokens_per_s and mfu in the db. Stops after\n"
	        "--steps steps or when no complete group is left; saves the checkpoint to --out\n"
	        "(default --ckpt).\n";
	struct common o;
	struct policy_trainer *tr = NULL;
	struct swerve_db *db = NULL;
	struct policy_rl_opts ro = POLICY_RL_OPTS_INIT;
	int64_t run;
	int rc = parse_common(&o, "rl", argc, argv, usage), code = EXIT_OK;
	long s;
	if (rc == -2)
		return EXIT_OK;
	if (rc)
		return EXIT_USAGE;
	if (!o.db || !o.run)
		return fail("rl", EXIT_USAGE, "--db and --run are required (see --help)");
	if (!strcmp(o.loss, "cispo")) {
		ro.loss.kind = POLICY_LOSS_CISPO;
		ro.loss.eps_low = 0;
		ro.loss.eps_high = 4;
	} else if (!strcmp(o.loss, "grpo")) {
		ro.loss.kind = POLICY_LOSS_GRPO;
		ro.loss.eps_low = 0.2;
		ro.loss.eps_high = 0.2;
	} else if (!strcmp(o.loss, "dapo")) {
		ro.loss.kind = POLICY_LOSS_DAPO;
		ro.loss.eps_low = 0.2;
		ro.loss.eps_high = 0.28;
	} else {
		return fail("rl", EXIT_USAGE, "--loss %s: expected cispo, grpo or dapo", o.loss);
	}
	if (o.eps_high >= 0)
		ro.loss.eps_high = o.eps_high;
	if (o.eps_low >= 0)
		ro.loss.eps_low = o.eps_low;
	ro.passes = o.passes;
	ro.micro_batches = o.accum;
	ro.recompute_logprobs = o.recompute;
	ro.peak_flops = o.peak_tflops * 1e12;
	{
		struct swerve_db_opts dbo = SWERVE_DB_OPTS_INIT;
		dbo.create = 0;
		if (swerve_db_open(&db, o.db, &dbo))
			return fail("rl", EXIT_INFRA, "%s", swerve_error_last());
	}
	if (swerve_db_run_find(&run, db, o.run)) {
		code = fail("rl", EXIT_USAGE, "%s", swerve_error_last());
		goto done;
	}
	if (policy_checkpoint_load(&tr, o.ckpt)) {
		code = fail("rl", EXIT_INFRA, "%s", swerve_error_last());
		goto done;
	}
	apply_opt(tr, &o);
	if ((code = to_device("rl", tr, o.device, o.precision, o.max_tokens, 1024)))
		goto done;
	if (ro.peak_flops <= 0 && !strcmp(o.device, "gpu"))
		ro.peak_flops = device_peak();
	for (s = 0; s < o.steps; s++) {
		struct policy_rl_stats st;
		char mfu[32];
		if (policy_rl_step_db(&st, tr, db, run, (size_t)o.groups, tr->opt.step + 1, &ro)) {
			code = fail("rl", EXIT_INFRA, "step %ld: %s", s, swerve_error_last());
			goto done;
		}
		if (st.groups + st.groups_skipped == 0) {
			printf("rl: no complete unconsumed group left in run %s\n", o.run);
			break;
		}
		printf("step %ld  groups %d (skipped %d)  reward_mean %.3f  loss %.5f  clipped %.3f"
		       "  entropy %.3f  grad_norm %.3f  tokens/s %.0f  mfu %s\n",
		       tr->opt.step, st.groups, st.groups_skipped, st.reward_mean, st.loss,
		       st.clipped_frac, st.entropy, st.grad_norm, st.tokens_per_s,
		       mfu_str(mfu, sizeof(mfu), ro.peak_flops > 0, st.mfu));
		fflush(stdout);
	}
	if ((code = save("rl", tr, o.out)))
		goto done;
	printf("rl: %ld steps; checkpoint %s\n", s, o.out);
done:
	policy_trainer_free(tr);
	swerve_db_close(db);
	return code;
}

/* prompts for `sample`: {"prompt": text} or {"prompt_tokens": [...]} per line */
static int load_prompts(struct dataset *d, const char *path, const struct policy_tokenizer *tok)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, where[4200];
	size_t cap = 0;
	int lineno = 0, rc = 0, V = policy_tokenizer_vocab_size(tok);
	memset(d, 0, sizeof(*d));
	if (!f)
		return swerve_error_set(errno == ENOENT ? SWERVE_ENOTFOUND : SWERVE_EIO, "%s: %s",
		                        path, strerror(errno));
	/* a bad line is named on stderr and kept as an empty entry, so
	 * prompt_index still counts the file's non-blank lines and the other
	 * prompts still run */
	while (getline(&line, &cap, f) > 0) {
		json_error_t je;
		json_t *o;
		int *a = NULL, n, bad = 0;
		struct seq *grown;
		lineno++;
		if (line[strspn(line, " \t\r\n")] == 0)
			continue;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		o = json_loads(line, 0, &je);
		if (!json_is_object(o)) {
			json_decref(o);
			bad = swerve_error_set(SWERVE_EINVAL, "%s: not a JSON object (%s)", where,
			                       je.text);
			n = 0;
		} else {
			n = field_ids(&a, o, "prompt", "prompt_tokens", tok, where);
			json_decref(o);
			if (n < 0)
				bad = swerve_error_code() ? swerve_error_code() : -1;
			else if (n == 0)
				bad = swerve_error_set(SWERVE_EINVAL,
				                       "%s: needs a non-empty \"prompt\" or "
				                       "\"prompt_tokens\"",
				                       where);
		}
		for (int t = 0; t < n && !bad; t++)
			if (a[t] < 0 || a[t] >= V)
				bad = swerve_error_set(SWERVE_EINVAL,
				                       "%s: token %d outside the vocabulary", where,
				                       a[t]);
		if (bad) {
			fail("sample", 0, "%s (skipped)", swerve_error_last());
			free(a);
			a = NULL;
			n = 0;
			d->bad++;
		}
		grown = realloc(d->s, (size_t)(d->n + 1) * sizeof(*d->s));
		if (!grown) {
			free(a);
			rc = swerve_error_set(SWERVE_ENOMEM, "%s: out of memory", where);
			break;
		}
		d->s = grown;
		d->s[d->n].n = n;
		d->s[d->n].tok = a;
		d->s[d->n].tgt = NULL;
		d->n++;
	}
	free(line);
	fclose(f);
	if (!rc && d->n == d->bad)
		rc = swerve_error_set(SWERVE_EINVAL, "%s: no prompts%s", path,
		                      d->bad ? " that can be read" : "");
	if (rc)
		dataset_free(d);
	return rc;
}

static int cmd_sample(int argc, char **argv)
{
	static const char usage[] =
	        "usage: swerve-train sample --ckpt DIR (--prompt TEXT | --data FILE.jsonl)\n"
	        "                           [--n N] [--max-new N] [--temperature X] [--top-p X]\n"
	        "                           [--seed N] [--guard-run N] [--no-stop]\n"
	        "                           [--tokenizer tokenizer.json]\n\n"
	        "Samples N responses per prompt with the CPU reference model, decoding one\n"
	        "token at a time (lightning state and softmax KV cache kept; double precision,\n"
	        "for small models) and prints one JSON line per response:\n"
	        "{prompt_index, sample, tokens, logprobs, text, stop}. logprobs are the model's\n"
	        "at temperature 1 (behaviour logprobs for the db). A response stops at the\n"
	        "tokenizer's end-of-text token (unless --no-stop), after --max-new tokens, or\n"
	        "when the repetition guard sees --guard-run consecutive tokens each with\n"
	        "probability > 0.99 (M1; default 3000). --data lines are {\"prompt\": ...} or\n"
	        "{\"prompt_tokens\": [...]}. A line that cannot be read or a prompt that cannot\n"
	        "be sampled (too long, a token outside the vocabulary) is named on stderr and\n"
	        "skipped; the others still run (prompt_index counts the non-blank lines) and\n"
	        "the exit status is then 2.\n";
	static const struct option lo[] = {
	        {"ckpt", 1, 0, 'k'},    {"prompt", 1, 0, 'p'},    {"data", 1, 0, 'd'},
	        {"n", 1, 0, 'n'},       {"max-new", 1, 0, 'm'},   {"temperature", 1, 0, 't'},
	        {"top-p", 1, 0, 'P'},   {"seed", 1, 0, 's'},      {"guard-run", 1, 0, 'g'},
	        {"no-stop", 0, 0, 'S'}, {"tokenizer", 1, 0, 'T'}, {"help", 0, 0, 'h'},
	        {0, 0, 0, 0},
	};
	const char *ckpt = NULL, *prompt = NULL, *data = NULL, *tokp = NULL;
	struct policy_sample_opts so = POLICY_SAMPLE_OPTS_INIT;
	struct policy_trainer *tr = NULL;
	struct policy_tokenizer *tok = NULL;
	struct dataset d = {0, NULL, 0};
	uint64_t rng = 1;
	int nsamp = 1, no_stop = 0, c, code = EXIT_OK;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'k': ckpt = optarg; break;
		case 'p': prompt = optarg; break;
		case 'd': data = optarg; break;
		case 'n': nsamp = atoi(optarg); break;
		case 'm': so.max_new = atoi(optarg); break;
		case 't': so.temperature = atof(optarg); break;
		case 'P': so.top_p = atof(optarg); break;
		case 's': rng = strtoull(optarg, NULL, 0); break;
		case 'g': so.guard_run = atoi(optarg); break;
		case 'S': no_stop = 1; break;
		case 'T': tokp = optarg; break;
		case 'h': printf("%s", usage); return EXIT_OK;
		default: return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return fail("sample", EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
	if (!ckpt || (!prompt == !data))
		return fail("sample", EXIT_USAGE,
		            "--ckpt and one of --prompt or --data are required");
	if (nsamp < 1 || so.max_new < 1)
		return fail("sample", EXIT_USAGE, "--n and --max-new must be positive");
	if (policy_checkpoint_load(&tr, ckpt))
		return fail("sample", EXIT_INFRA, "%s", swerve_error_last());
	if (open_tokenizer(&tok, tokp, &tr->cfg)) {
		code = fail("sample", EXIT_USAGE, "%s", swerve_error_last());
		goto done;
	}
	so.stop_token = no_stop ? -1 : policy_tokenizer_eos(tok);
	if (prompt) {
		int *ids, n;
		if (policy_tokenizer_encode(&ids, &n, tok, prompt, strlen(prompt))) {
			code = fail("sample", EXIT_USAGE, "%s", swerve_error_last());
			goto done;
		}
		d.s = calloc(1, sizeof(*d.s));
		d.n = 1;
		d.s[0].n = n;
		d.s[0].tok = ids;
	} else if (load_prompts(&d, data, tok)) {
		code = fail("sample", EXIT_USAGE, "%s", swerve_error_last());
		goto done;
	}
	if (d.bad)
		code = EXIT_USAGE; /* named as they were read */
	for (int i = 0; i < d.n; i++)
		for (int j = 0; j < nsamp && d.s[i].n > 0; j++) {
			struct policy_sample s;
			static const char *const stops[] = {"length", "stop_token", "guard"};
			json_t *o;
			char *text = NULL, *line;
			size_t len = 0;
			if (policy_sample(&s, tr, d.s[i].tok, d.s[i].n, &so, &rng)) {
				/* a bad prompt is named and skipped; the others still
				 * run, and the exit status says one failed */
				code = fail("sample", EXIT_USAGE, "prompt %d: %s", i,
				            swerve_error_last());
				break;
			}
			o = json_object();
			json_object_set_new(o, "prompt_index", json_integer(i));
			json_object_set_new(o, "sample", json_integer(j));
			json_object_set_new(o, "tokens", json_array());
			json_object_set_new(o, "logprobs", json_array());
			for (int t = 0; t < s.n; t++) {
				json_array_append_new(json_object_get(o, "tokens"),
				                      json_integer(s.tokens[t]));
				json_array_append_new(json_object_get(o, "logprobs"),
				                      json_real(s.logp[t]));
			}
			if (!policy_tokenizer_decode(&text, &len, tok, s.tokens, s.n)) {
				json_t *js = json_stringn(text, len); /* NULL: not UTF-8 */
				json_object_set_new(o, "text", js ? js : json_null());
			}
			json_object_set_new(o, "stop", json_string(stops[s.stop]));
			line = json_dumps(o, JSON_COMPACT);
			printf("%s\n", line);
			free(line);
			free(text);
			json_decref(o);
			policy_sample_dispose(&s);
		}
done:
	dataset_free(&d);
	policy_tokenizer_free(tok);
	policy_trainer_free(tr);
	return code;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: swerve-train <command> [options]\n"
	           "       swerve-train <command> --help\n\n"
	           "The policy trainer (MiniMax-M1 style hybrid lightning/softmax MoE).\n\n"
	           "commands:\n"
	           "  init            write a freshly initialised checkpoint\n"
	           "  sft             supervised training (cross-entropy) on JSONL sequences\n"
	           "  rl              RL (CISPO/GRPO/DAPO) on rewarded groups from the swerve db\n"
	           "  eval-logprobs   per-token log-probabilities of JSONL sequences\n"
	           "  sample          sample responses (CPU reference; small models)\n\n"
	           "exit codes: 0 success, 2 usage error, 3 infrastructure error\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "init"))
		return cmd_init(argc - 1, argv + 1);
	if (!strcmp(argv[1], "sft"))
		return cmd_sft(argc - 1, argv + 1);
	if (!strcmp(argv[1], "rl"))
		return cmd_rl(argc - 1, argv + 1);
	if (!strcmp(argv[1], "eval-logprobs"))
		return cmd_eval(argc - 1, argv + 1);
	if (!strcmp(argv[1], "sample"))
		return cmd_sample(argc - 1, argv + 1);
	fprintf(stderr, "swerve-train: unknown command '%s' (see swerve-train --help)\n", argv[1]);
	return EXIT_USAGE;
}
