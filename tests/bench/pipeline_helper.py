#!/usr/bin/env python3
"""pipeline_helper.py - data preparation and statistics for bench_pipeline.sh
(none of this is timed).

  replicate IN OUT K [PREFIX]   K copies of every task of IN with distinct
                                instance_ids (<id>~<k>); PREFIX (e.g. "sleep 1; ")
                                goes before each test_cmd
  canned IN GOLD_OUT OUT K      like replicate, but each test_cmd prints the log
                                that task's tests wrote in the gold run GOLD_OUT
                                (swerve eval --out dir) and exits 0: a suite
                                whose tests take no time, to see pure overhead
  baseline-prep TASKS REPOS DIR one directory per instance under DIR for
                                pipeline_baseline.sh (base commit, patch,
                                test_patch, files it touches, command, ids,
                                parser, the clone to use); prints the dirs
  overhead OUT                  per-episode overhead (total - test time, ms) from
                                OUT/*/report.json: "n median p90 p99 max"
  phases OUT                    median ms of each phase from OUT/swerve.db:
                                "workspace apply test total"
  resolved OUT                  count of resolved instances in OUT/*/report.json
  baseline-resolved DIR         count of instances pipeline_baseline.sh resolved
  table ROWS                    prints the result table from a TSV file
"""
import glob
import json
import os
import re
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def replicate(src, dst, k, prefix=""):
    out = []
    for i in range(int(k)):
        for t in load(src):
            t = dict(t, instance_id="%s~%d" % (t["instance_id"], i))
            t["test_cmd"] = prefix + t["test_cmd"]
            out.append(t)
    write(dst, out)


def canned(src, gold_out, dst, k):
    out = []
    for i in range(int(k)):
        for t in load(src):
            with open(os.path.join(gold_out, t["instance_id"], "test_output.txt")) as f:
                log = f.read()
            assert "SWERVE_EOF" not in log
            t = dict(t, instance_id="%s~%d" % (t["instance_id"], i))
            t["test_cmd"] = "cat <<'SWERVE_EOF'\n%s\nSWERVE_EOF" % log
            out.append(t)
    write(dst, out)


def touched_files(diff):
    return sorted(set(re.findall(r"^diff --git a/(\S+) b/", diff, re.M)))


def baseline_prep(tasks, repos, root):
    clones = {}
    with open(repos) as f:
        for line in f:
            name, path = line.split()
            clones[name] = path
    for t in load(tasks):
        d = os.path.join(root, t["instance_id"])
        os.makedirs(d, exist_ok=True)
        files = {
            "base": t["base_commit"],
            "patch": t["patch"],
            "test_patch": t["test_patch"],
            "files": "\n".join(touched_files(t["test_patch"])) + "\n",
            "cmd": t["test_cmd"],
            "ids": "".join(x + "\n" for k in ("FAIL_TO_PASS", "PASS_TO_PASS")
                           for x in json.loads(t[k])),
            "parser": t["log_parser"],
            "clone": clones[t["repo"]],
        }
        for name, text in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        print(d)


def reports(out):
    for p in sorted(glob.glob(os.path.join(out, "*", "report.json"))):
        with open(p) as f:
            yield from json.load(f).values()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def overhead(out):
    ms = []
    for r in reports(out):
        t = r["swerve"]["timings"]
        ms.append((t["total_s"] - t["test_s"]) * 1000.0)
    if not ms:
        sys.exit("overhead: no report.json under %s" % out)
    print("%d %.0f %.0f %.0f %.0f" % (len(ms), pct(ms, 50), pct(ms, 90), pct(ms, 99), max(ms)))


def phases(out):
    import sqlite3
    db = sqlite3.connect(os.path.join(out, "swerve.db"))
    rows = db.execute("SELECT workspace_ms, apply_ms, test_ms, total_ms FROM results").fetchall()
    print(" ".join("%.0f" % pct([r[i] for r in rows], 50) for i in range(4)))


def resolved(out):
    print(sum(1 for r in reports(out) if r["resolved"]))


def baseline_resolved(root):
    n = 0
    for p in glob.glob(os.path.join(root, "*", "result")):
        with open(p) as f:
            n += f.read().strip() == "1"
    print(n)


def table(rows_path):
    """Median rate over the trials of each (suite, runner, parallel); the
    ratio is of the medians."""
    rows = [line.rstrip("\n").split("\t") for line in open(rows_path) if line.strip()]
    keys, runs = [], {}
    for suite, runner, jobs, n, res, secs in rows:
        k = (suite, runner, jobs)
        if k not in runs:
            keys.append(k)
            runs[k] = []
        runs[k].append((int(n) / float(secs), int(n), int(res)))
    med = {k: pct([r[0] for r in v], 50) for k, v in runs.items()}
    print("| suite | runner | parallel | episodes x trials | resolved | episodes/s | vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for k in keys:
        v = runs[k]
        base = med.get((k[0], "shell baseline", k[2]))
        rates = [r[0] for r in v]
        print("| %s | %s | %s | %d x %d | %d | %.2f [%.2f-%.2f] | %s |" % (
            k[0], k[1], k[2], v[0][1], len(v), sum(r[2] for r in v), med[k], min(rates),
            max(rates), "%.2fx" % (med[k] / base) if base else "-"))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"replicate": replicate, "canned": canned, "baseline-prep": baseline_prep,
     "overhead": overhead, "phases": phases, "resolved": resolved, "baseline-resolved": baseline_resolved,
     "table": table}[cmd](*args)
