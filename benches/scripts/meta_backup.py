#!/usr/bin/env python3
"""Metadata backup and restore at 1 million inodes (issue #21's figures).

usage: meta_backup.py BIN_DIR WORK_DIR [INODES (default 1000000)] [ROUNDS (default 3)]

Starts `cairn dev up --meta 3 --nodes 3 --ec 2+1 --no-mount` from BIN_DIR under
WORK_DIR (removed at the end), fills the namespace with INODES empty files in bulk
(`cairn bench --workload meta --fill`, the time it reports is the write time), waits
until the replicas are idle, then ROUNDS times: `cairn meta backup FILE` (wall time of
the command, the file's size), and `cairn-meta --restore FILE` into a fresh data
directory (wall time of the command; offline, as in the disaster-recovery procedure).
The first restored store is then started as a replica on its own and must answer
`cairn status` with the namespace's inode count (the restore is checked, not only
timed). Prints one JSON object with every figure, the medians and the ratios.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from meta_scale import PORT_BASE, Cluster, poll_status, run  # noqa: E402


def timed(cmd, env):
    start = time.monotonic()
    run(cmd, env=env, timeout=3600)
    return time.monotonic() - start


def main():
    bin_dir, work = sys.argv[1], sys.argv[2]
    inodes = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    os.makedirs(work)
    out = {"inodes": inodes, "rounds": []}
    c = Cluster(bin_dir, work, "c", 5000)
    ok = False
    restored = None
    try:
        fill = json.loads(c.cairn("bench", "--workload", "meta", "--concurrency", "8",
                                  "--keep", "--json", "--fill", str(inodes - 1),
                                  "--files", "1"))["fill"]
        out["fill"] = {"files": fill["files"], "seconds": round(fill["seconds"], 2)}
        out["settled_after_s"] = c.settle()
        out["namespace_inodes"] = c.status()["inodes"]
        tls = f"{c.dir}/cluster/tls"
        c.cairn("cert", "issue", "--dir", tls, "--role", "meta", "--name", "meta-9")
        for r in range(rounds):
            path = f"{work}/meta-{r}.backup"
            backup_s = timed([f"{bin_dir}/cairn", "meta", "backup", path], c.env)
            data_dir = f"{work}/restored-{r}"
            restore_s = timed([f"{bin_dir}/cairn-meta", "--restore", path, "--id", "9",
                               "--listen", f"127.0.0.9:{PORT_BASE + 9}", "--data-dir", data_dir,
                               "--tls-dir", tls, "--admin", "client"], c.env)
            out["rounds"].append({"backup_s": round(backup_s, 3), "restore_s": round(restore_s, 3),
                                  "backup_bytes": os.path.getsize(path)})
            os.remove(path)
            if r > 0:
                shutil.rmtree(data_dir)
        # The first restored store serves the namespace as a group of its own.
        log = open(f"{work}/restored.log", "w")
        restored = subprocess.Popen(
            [f"{bin_dir}/cairn-meta", "--id", "9", "--listen", f"127.0.0.9:{PORT_BASE + 9}",
             "--data-dir", f"{work}/restored-0", "--tls-dir", tls, "--admin", "client"],
            stdout=log, stderr=subprocess.STDOUT, env=c.env)
        toml = open(f"{c.dir}/cluster/cluster.toml").read()
        start = toml.index("meta = [")
        end = toml.index("]", start) + 1
        with open(f"{work}/restored.toml", "w") as f:
            f.write(toml[:start] + f'meta = ["127.0.0.9:{PORT_BASE + 9}"]' + toml[end:])
        restored_env = dict(c.env, CAIRN_CLUSTER=f"{work}/restored.toml")

        class Restored:
            def status(self):
                return json.loads(run([f"{bin_dir}/cairn", "status", "--json"],
                                      env=restored_env, timeout=30))

        poll_status(Restored(), lambda s: s["leader"] == 9, 60)
        out["restored_inodes"] = Restored().status()["inodes"]
        if out["restored_inodes"] != out["namespace_inodes"]:
            raise RuntimeError(f"restored {out['restored_inodes']} inodes of {out['namespace_inodes']}")
        backup = statistics.median(r["backup_s"] for r in out["rounds"])
        restore = statistics.median(r["restore_s"] for r in out["rounds"])
        out["median"] = {"backup_s": backup, "restore_s": restore}
        out["ratios"] = {"backup_over_fill": round(backup / out["fill"]["seconds"], 3),
                         "restore_over_backup": round(restore / backup, 3)}
        ok = True
    finally:
        if restored:
            restored.kill()
            restored.wait()
        c.stop(None if ok else f"{work}.failed-logs")
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
