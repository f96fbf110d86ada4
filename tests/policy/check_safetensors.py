#!/usr/bin/env python3
"""check_safetensors.py CKPT_DIR [EXPECT.json] - checks that Python's
`safetensors` library reads a swerve-train checkpoint: every tensor the
config implies is present with the right shape and dtype, the optimizer file
holds m./v. moments and the step metadata, and (with EXPECT.json, written by
the C side) the values match per-tensor sums computed independently (raw struct parse). Prints one line per
check and "N passed, N failed" last. Needs numpy and safetensors (the GPU
machine has both; the CI machine does not, so this runs there)."""
import json
import math
import os
import sys

from safetensors.numpy import load_file
from safetensors import safe_open


def expected_shapes(c):
    D, H, d, KV = c["dim"], c["n_heads"], c["head_dim"], c["n_kv_heads"]
    E, F, V = c["n_experts"], c["expert_hidden"], c["vocab_size"]
    soft = set(c["softmax_layers"])
    s = {"tok_emb": (V, D), "final_norm": (D,), "lm_head": (V, D)}
    for l in range(c["n_layers"]):
        p = "layers.%d." % l
        s[p + "attn_norm"] = (D,)
        s[p + "attn.wq"] = (H * d, D)
        kv = KV * d if l in soft else H * d
        s[p + "attn.wk"] = (kv, D)
        s[p + "attn.wv"] = (kv, D)
        if l not in soft:
            s[p + "attn.wgate"] = (H * d, D)
            s[p + "attn.out_norm"] = (H * d,)
        s[p + "attn.wo"] = (D, H * d)
        s[p + "ffn_norm"] = (D,)
        s[p + "moe.router"] = (E, D)
        s[p + "moe.w1"] = (E, F, D)
        s[p + "moe.w3"] = (E, F, D)
        s[p + "moe.w2"] = (E, D, F)
    return s


def main():
    ck = sys.argv[1]
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        print("[%s] %s" % ("ok" if ok else "FAIL", what))
        if ok:
            passed += 1
        else:
            failed += 1

    cfg = json.load(open(os.path.join(ck, "config.json")))
    want = expected_shapes(cfg)
    model = load_file(os.path.join(ck, "model.safetensors"))
    check(set(model) == set(want), "model tensors are exactly the config's (%d)" % len(want))
    for name, shape in sorted(want.items()):
        t = model.get(name)
        check(t is not None and t.shape == shape and str(t.dtype) == "float32",
              "%s %s float32" % (name, shape))
    norms_ok = all(abs(float(model[n].mean()) - 1.0) < 0.5 for n in want if n.endswith("norm"))
    check(norms_ok, "norm weights near 1")
    with safe_open(os.path.join(ck, "optimizer.safetensors"), framework="numpy") as f:
        meta = f.metadata()
        keys = set(f.keys())
    check(keys == {"m." + n for n in want} | {"v." + n for n in want}, "optimizer m./v. tensors")
    check(meta is not None and "step" in meta and "rng" in meta, "optimizer metadata %s" % meta)
    if len(sys.argv) > 2:
        exp = json.load(open(sys.argv[2]))
        for name, s in sorted(exp.items()):
            got = float(model[name].astype("float64").sum())
            check(math.isclose(got, s, rel_tol=1e-9, abs_tol=1e-9),
                  "%s sum %.12g == raw parse %.12g" % (name, got, s))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
