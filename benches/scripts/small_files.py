"""Small-file workload: create+write 4 KiB+close, stat, read, unlink of N files, by P
processes at once (each in its own subdirectory). Prints one JSON object with the files
per second of every phase. With CAIRN (the `cairn` binary; CAIRN_CLUSTER set), also the
metadata log entries each phase added per file (`<phase>_entries_per_file`, from the
replicas' applied index in `cairn status`).

usage: small_files.py DIR N P [CAIRN]
"""

import json
import multiprocessing
import os
import subprocess
import sys
import time

PAYLOAD = os.urandom(4096)


def create(args):
    d, n = args
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        with open(os.path.join(d, f"f{i}"), "wb") as f:
            f.write(PAYLOAD)


def stat(args):
    d, n = args
    for i in range(n):
        os.stat(os.path.join(d, f"f{i}"))


def read(args):
    d, n = args
    for i in range(n):
        with open(os.path.join(d, f"f{i}"), "rb") as f:
            if f.read() != PAYLOAD:
                raise SystemExit(f"{d}/f{i}: wrong content")


def unlink(args):
    d, n = args
    for i in range(n):
        os.unlink(os.path.join(d, f"f{i}"))
    os.rmdir(d)


def applied_index(cairn):
    status = json.loads(subprocess.check_output([cairn, "status", "--json"], timeout=60))
    return max(r["applied_index"] or 0 for r in status["replicas"])


def main():
    root, total, procs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cairn = sys.argv[4] if len(sys.argv) > 4 else None
    per = total // procs
    work = [(os.path.join(root, f"p{p}"), per) for p in range(procs)]
    out = {"files": per * procs, "processes": procs}
    with multiprocessing.Pool(procs) as pool:
        for name, fn in [("create", create), ("stat", stat), ("read", read), ("unlink", unlink)]:
            before = applied_index(cairn) if cairn else 0
            start = time.monotonic()
            pool.map(fn, work)
            out[name] = round(per * procs / (time.monotonic() - start), 1)
            if cairn:
                entries = applied_index(cairn) - before
                out[f"{name}_entries_per_file"] = round(entries / (per * procs), 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
