"""Summarises benches/memory/run.sh's RSS samples and writes them into BENCHMARKS.md
between the memory:begin / memory:end markers.

usage: report.py WORK_DIR SECONDS BENCHMARKS_MD

"Flat" compares the mean resident memory of the last minute with that of the second
minute (the first is warm-up: caches and pools filling): within 10% is flat.
"""

import collections
import datetime
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from report_common import machine, replace_section  # noqa: E402

# The documented bound of cairn-mount's resident memory with default options (README).
MOUNT_BOUND_MIB = 512


def main():
    work, secs, md = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    samples = collections.defaultdict(list)  # process -> [(t, kib)]
    with open(os.path.join(work, "rss.txt")) as f:
        for line in f:
            t, name, kib = line.split()
            samples[name].append((int(t), int(kib)))
    bench = json.load(open(os.path.join(work, "bench.json")))["phases"][-1]
    rounds = open(os.path.join(work, "file-rounds")).read().strip()
    errors_file = os.path.join(work, "file-errors")
    file_errors = len(open(errors_file).read().splitlines()) if os.path.exists(errors_file) else 0

    rows = []
    for name in sorted(samples):
        pts = samples[name]
        second = [k for t, k in pts if 60 <= t < 120] or [pts[0][1]]
        last = [k for t, k in pts if t >= secs - 60] or [pts[-1][1]]
        a, b = statistics.mean(second), statistics.mean(last)
        growth = b / a - 1
        peak = max(k for _, k in pts)
        verdict = "flat" if abs(growth) <= 0.10 else "**not flat**"
        if name.startswith("mount"):
            verdict += f"; peak {'<' if peak / 1024 < MOUNT_BOUND_MIB else '**>=**'} {MOUNT_BOUND_MIB} MiB bound"
        rows.append(f"| {name} | {a / 1024:.0f} | {b / 1024:.0f} | {100 * growth:+.1f}% | {peak / 1024:.0f} | {verdict} |")

    today = datetime.date.today().isoformat()
    out = [
        f"Measured {today} by `benches/memory/run.sh {secs}` on {machine()}: release build, "
        f"3 metadata replicas, 6 storage nodes, ec 4+2, one mount; for {secs} s a mixed "
        f"object load (`cairn bench --workload mixed`, 4 MiB objects, 4 in flight: "
        f"{bench['ops']:,} operations, {bench['errors']} errors, {bench['mb_per_sec']:.0f} MB/s) "
        f"and a file loop on the mount ({rounds} rounds of a 256 MiB write + fsync + read "
        f"back compared, 200 small files created and removed; {file_errors} mismatches). "
        f"Resident memory (VmRSS) sampled every 5 s.",
        "",
        "| process | mean RSS, 2nd minute (MiB) | mean RSS, last minute (MiB) | growth | peak (MiB) | |",
        "|---|---|---|---|---|---|",
    ] + rows
    body = "\n".join(out)
    print(body)
    replace_section(md, "memory", body, "Resident memory under a 10-minute load (benches/memory/run.sh)")


if __name__ == "__main__":
    main()
