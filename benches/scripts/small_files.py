"""Small-file workload: create+write 4 KiB+close, stat, read, unlink of N files, by P
processes at once (each in its own subdirectory). Prints one JSON object with the files
per second of every phase.

usage: small_files.py DIR N P
"""

import json
import multiprocessing
import os
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


def main():
    root, total, procs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    per = total // procs
    work = [(os.path.join(root, f"p{p}"), per) for p in range(procs)]
    out = {"files": per * procs, "processes": procs}
    with multiprocessing.Pool(procs) as pool:
        for name, fn in [("create", create), ("stat", stat), ("read", read), ("unlink", unlink)]:
            start = time.monotonic()
            pool.map(fn, work)
            out[name] = round(per * procs / (time.monotonic() - start), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
