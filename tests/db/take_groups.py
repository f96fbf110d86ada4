#!/usr/bin/env python3
"""take_groups.py - a Python trainer's side of swerve's SQLite store, using
only the standard library: take complete, unconsumed groups of a run through
the trainer_groups / trainer_samples views and mark them consumed in the same
transaction (each group goes to exactly one trainer, once).

usage: take_groups.py DB RUN [MAX_GROUPS]   prints one JSON object per group
README.md ("The database and the trainer's consumer API") quotes this file;
tests/db/test_db.c runs it.
"""
import array
import json
import sqlite3
import sys
import time


def take_groups(con, run, max_groups):
    """Returns [{group_id, instance_id, samples: [...]}]; consumed on return."""
    con.execute("BEGIN IMMEDIATE")  # the write lock first: no other taker interleaves
    try:
        ids = [r[0] for r in con.execute(
            "SELECT group_id FROM trainer_groups WHERE run_name = ? "
            "ORDER BY group_id LIMIT ?", (run, max_groups))]
        groups = {}
        for gid in ids:
            groups[gid] = {"group_id": gid, "samples": []}
            for (iid, sample, reward, resolved, resp, lps) in con.execute(
                    "SELECT instance_id, sample, reward, resolved, response_tokens, "
                    "logprobs FROM trainer_samples WHERE group_id = ? ORDER BY sample",
                    (gid,)):
                groups[gid]["instance_id"] = iid
                groups[gid]["samples"].append({
                    "sample": sample,
                    "reward": reward,  # None when the result carried no reward
                    "resolved": resolved,
                    # int32 / float32, little-endian (numpy: frombuffer(b, "<i4"))
                    "response_tokens": list(array.array("i", resp or b"")),
                    "logprobs": list(array.array("f", lps or b"")),
                })
        now_ms = int(time.time() * 1000)
        for gid in ids:
            cur = con.execute(
                "UPDATE rollout_groups SET consumed_ms = ? "
                "WHERE id = ? AND consumed_ms IS NULL AND n_done = size", (now_ms, gid))
            if cur.rowcount != 1:
                raise RuntimeError(f"group {gid}: taken by someone else")
        con.execute("COMMIT")
        return [groups[g] for g in ids]
    except BaseException:
        con.execute("ROLLBACK")
        raise


def main():
    con = sqlite3.connect(sys.argv[1], isolation_level=None)  # explicit transactions
    con.execute("PRAGMA busy_timeout = 5000")
    max_groups = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    for g in take_groups(con, sys.argv[2], max_groups):
        print(json.dumps(g))


if __name__ == "__main__":
    main()
