"""ncu_util.py CSV - how busy the GPU's units are over one training step, by
kernel class, from `ncu --csv --metrics gpu__time_duration.sum,...` output
(tests/bench/ncu_util.sh). For each class (the experts' grouped GEMMs,
cuBLAS, AdamW, the lightning core, ...): its kernels' summed time and share,
and every other metric collected, averaged over the class weighted by each
launch's time: SM active (sm__cycles_active.avg / sm__cycles_elapsed.avg:
the share of the kernel's time an SM had a warp resident), and the
pct_of_peak metrics as ncu gives them (tensor pipe, DRAM, L2). "idle SM ms"
is time x (1 - SM active): SM time that work beside the kernel (another
stream's, another micro-batch's) could have used. Kernels that match no
class are listed as "other"."""
import collections
import re
import sys

from ncu_step import UNIT_US, ncu_rows

# (class, name pattern), first match wins
CLASSES = [
    ("experts (k_ws, k_mg, gather)", r"^(void )?k_(ws|mg)"),
    ("cuBLAS (projections, head)", r"nvjet|cublas|gemm|sm90_xmma"),
    ("AdamW + norm", r"k_adamw|k_sumsq|k_clip"),
    ("lightning core", r"wg::|lightning|prefix_kernel"),
    ("norm / residual passes", r"k_ew_"),
    ("routing + combine", r"k_rt_|k_cb_|k_route"),
    ("head rows + loss", r"pl_"),
    ("gate", r"k_gt_"),
    ("softmax attention", r"k_f2_|k_attn|k_flash|k_to_bf16"),
]


def label(metric):
    """a column's heading: 'dram %', 'L2 %', 'tensor %' or the metric's own name"""
    for key, text in (("dram__", "dram %"), ("lts__", "L2 %"), ("tensor_op", "tensor %")):
        if metric.startswith(key) or key in metric:
            return text
    return metric


def klass(name):
    for c, pat in CLASSES:
        if re.search(pat, name):
            return c
    return "other"


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: ncu_util.py NCU_CSV")
    launches = collections.OrderedDict()  # ID -> {name, metrics}
    for r in ncu_rows(sys.argv[1], "ncu_util.py"):
        k = launches.setdefault(r["ID"], {"name": re.sub(r"\(.*", "", r["Kernel Name"]).strip(),
                                          "m": {}})
        v = r["Metric Value"].replace(",", "")
        try:
            val = float(v)
        except ValueError:
            continue
        if r["Metric Name"] == "gpu__time_duration.sum":
            unit = r.get("Metric Unit", "")
            if unit not in UNIT_US:
                sys.exit("ncu_util.py: unknown unit %r" % unit)
            val *= UNIT_US[unit]
        k["m"][r["Metric Name"]] = val
    rows = [k for k in launches.values() if "gpu__time_duration.sum" in k["m"]]
    if not rows:
        sys.exit("ncu_util.py: %s: no gpu__time_duration.sum rows" % sys.argv[1])
    pct = sorted({m for k in rows for m in k["m"] if "pct_of_peak" in m})
    for k in rows:
        m = k["m"]
        if "sm__cycles_active.avg" in m and m.get("sm__cycles_elapsed.avg"):
            m["sm active %"] = 100.0 * m["sm__cycles_active.avg"] / m["sm__cycles_elapsed.avg"]
    cols = (["sm active %"] if any("sm active %" in k["m"] for k in rows) else []) + pct
    short = [label(c) for c in cols]
    acc = collections.defaultdict(lambda: collections.defaultdict(float))
    for k in rows:
        c, t = klass(k["name"]), k["m"]["gpu__time_duration.sum"]
        acc[c]["us"] += t
        acc["all"]["us"] += t
        for col in cols:
            if col in k["m"]:
                for key in (c, "all"):
                    acc[key][col] += t * k["m"][col]
                    acc[key][col + " t"] += t
    grand = acc["all"]["us"]
    print("%d launches, %.3f ms in all" % (len(rows), grand / 1e3))
    hdr = "%-30s %8s %6s" % ("class", "ms", "share") + "".join(" %12s" % s[:12] for s in short)
    if "sm active %" in cols:
        hdr += " %11s" % "idle SM ms"
    print(hdr)
    order = sorted((c for c in acc if c != "all"), key=lambda c: -acc[c]["us"]) + ["all"]
    for c in order:
        a = acc[c]
        line = "%-30s %8.3f %5.1f%%" % (c, a["us"] / 1e3, 100 * a["us"] / grand)
        for col in cols:
            line += (" %12.1f" % (a[col] / a[col + " t"])) if a[col + " t"] else " %12s" % "-"
        if "sm active %" in cols and a["sm active % t"]:
            line += " %11.3f" % (a["us"] / 1e3 * (1 - a["sm active %"] / a["sm active % t"] / 100))
        print(line)


if __name__ == "__main__":
    main()
