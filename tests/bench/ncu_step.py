"""ncu_step.py CSV [ORDER] - per-kernel table of one training step from
`ncu --csv --metrics gpu__time_duration.sum` output (tests/bench/ncu_step.sh):
kernels grouped by name (argument lists dropped), total us, share, calls,
the last launch's grid and block; ORDER, if given, gets every launch in
order (us, grid, block, name), one a line."""
import collections
import csv
import re
import sys

UNIT_US = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3,
           "msecond": 1e3, "s": 1e6, "second": 1e6}


def ncu_rows(path, me="ncu_step.py"):
    """the rows of an `ncu --csv` file (one a kernel and metric), from its
    "ID" header on (ncu prints its own lines before it)"""
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        sys.exit("%s: %s: no ncu CSV header (\"ID\",...) found" % (me, path))
    return csv.DictReader(lines[start:])


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: ncu_step.py NCU_CSV [ORDER_TSV]")
    rows = ncu_rows(sys.argv[1])
    total, calls, shape, order = collections.defaultdict(float), collections.Counter(), {}, []
    for r in rows:
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        unit = r.get("Metric Unit", "")
        if unit not in UNIT_US:
            sys.exit("ncu_step.py: unknown unit %r for %s" % (unit, r["Kernel Name"]))
        us = float(r["Metric Value"].replace(",", "")) * UNIT_US[unit]
        name = re.sub(r"\(.*", "", r["Kernel Name"]).strip()[:90]
        total[name] += us
        calls[name] += 1
        shape[name] = (r.get("Grid Size", ""), r.get("Block Size", ""))
        order.append((us, shape[name][0], shape[name][1], name))
    if not order:
        sys.exit("ncu_step.py: %s: no gpu__time_duration.sum rows" % sys.argv[1])
    grand = sum(total.values())
    print("%d kernels, durations sum to %.3f ms" % (len(order), grand / 1e3))
    print("%10s %6s %5s  %-14s %-12s %s" % ("us", "share", "calls", "grid", "block", "kernel"))
    for name, us in sorted(total.items(), key=lambda kv: -kv[1]):
        print("%10.1f %5.1f%% %5d  %-14s %-12s %s" % (us, 100 * us / grand, calls[name],
                                                    shape[name][0], shape[name][1], name))
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            for o in order:
                f.write("%.2f\t%s\t%s\t%s\n" % o)


if __name__ == "__main__":
    main()
