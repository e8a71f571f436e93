"""Builds the comparison table from benches/compare/run.sh's results and writes it into
BENCHMARKS.md between the compare:begin / compare:end markers.

usage: report.py RESULTS_DIR SIZE_MIB FILES BENCHMARKS_MD
"""

import datetime
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from report_common import machine, replace_section  # noqa: E402


def load(results, name):
    with open(os.path.join(results, name)) as f:
        return json.load(f)


def fio(results, name, rw):
    job = load(results, f"{name}.json")["jobs"][0]
    return job[rw]


def mib_s(results, name, rw):
    return fio(results, name, rw)["bw"] / 1024


def iops(results, name, rw):
    return fio(results, name, rw)["iops"]


def fsync_p99_ms(results, name):
    pct = fio(results, name, "sync")["lat_ns"]["percentile"]
    return pct["99.000000"] / 1e6


def fmt(x):
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return "—"
    return f"{a / b:.2f}"


def main():
    results, size_mib, files, md = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    rows = []  # (figure, disk, cairn, gl_d, gl_r, vs_gluster, vs_physical, target, met)

    def row(figure, disk, cairn, gl_d, gl_r, physical, target, met):
        rows.append(
            (
                figure,
                fmt(disk),
                fmt(cairn),
                fmt(gl_d),
                fmt(gl_r),
                ratio(cairn, gl_d),
                ratio(cairn, physical),
                target,
                "—" if met is None else ("met" if met else "**not met**"),
            )
        )

    disk_w = mib_s(results, "disk-seqwrite", "write")
    disk_r = mib_s(results, "disk-seqread", "read")
    put = load(results, "cairn-obj-put.json")["phases"][0]
    get = load(results, "cairn-obj-get.json")["phases"][0]
    put_mib = put["mb_per_sec"] * 1e6 / 1048576
    get_mib = get["mb_per_sec"] * 1e6 / 1048576
    put_limit = disk_w * 4 / 6
    row("object PUT 64 MiB, ec 4+2 (MiB/s); limit = disk write x k/(k+m)", disk_w, put_mib, None, None,
        put_limit, ">= 0.70 of limit", put_mib >= 0.7 * put_limit)
    row("object GET 64 MiB (MiB/s); limit = disk read", disk_r, get_mib, None, None, disk_r,
        ">= 0.70 of limit", get_mib >= 0.7 * disk_r)

    seq = {}
    for p in ("cairn", "gl-disperse", "gl-replica"):
        seq[p] = (mib_s(results, f"{p}-seqwrite", "write"), mib_s(results, f"{p}-seqread", "read"))
    row(f"FUSE sequential write {size_mib} MiB, 1 MiB blocks (MiB/s)", disk_w, seq["cairn"][0],
        seq["gl-disperse"][0], seq["gl-replica"][0], put_mib,
        ">= 2x Gluster disperse and >= 0.6 of object PUT",
        seq["cairn"][0] >= 2 * seq["gl-disperse"][0] and seq["cairn"][0] >= 0.6 * put_mib)
    row(f"FUSE sequential read {size_mib} MiB, 1 MiB blocks (MiB/s)", disk_r, seq["cairn"][1],
        seq["gl-disperse"][1], seq["gl-replica"][1], get_mib,
        ">= 2x Gluster disperse and >= 0.6 of object GET",
        seq["cairn"][1] >= 2 * seq["gl-disperse"][1] and seq["cairn"][1] >= 0.6 * get_mib)

    rr = {p: iops(results, f"{p}-randread", "read") for p in ("disk", "cairn", "gl-disperse", "gl-replica")}
    rw = {p: iops(results, f"{p}-randwrite", "write") for p in ("disk", "cairn", "gl-disperse", "gl-replica")}
    row("4 KiB random read, 4 jobs (IOPS)", rr["disk"], rr["cairn"], rr["gl-disperse"], rr["gl-replica"],
        rr["disk"], ">= 5x Gluster disperse", rr["cairn"] >= 5 * rr["gl-disperse"])
    row("4 KiB random write, 4 jobs, then fsync (IOPS)", rw["disk"], rw["cairn"], rw["gl-disperse"],
        rw["gl-replica"], rw["disk"], "(no target)", None)

    fs = {p: fsync_p99_ms(results, f"{p}-fsync") for p in ("disk", "cairn", "gl-disperse", "gl-replica")}
    row("4 KiB write + fdatasync, p99 latency (ms)", fs["disk"], fs["cairn"], fs["gl-disperse"],
        fs["gl-replica"], fs["disk"], "< 5x disk p99 + one Raft commit (checked: < 5x disk p99 + 10 ms)",
        fs["cairn"] < 5 * fs["disk"] + 10)

    for procs in ("1", "8"):
        small = {p: load(results, f"{p}-small{procs}.json") for p in ("disk", "cairn", "gl-disperse", "gl-replica")}
        for phase in ("create", "stat", "read", "unlink"):
            label = "create+write 4 KiB+close" if phase == "create" else phase
            row(f"{files} small files, {procs} process{'es' if procs != '1' else ''}: {label} (files/s)",
                small["disk"][phase], small["cairn"][phase], small["gl-disperse"][phase],
                small["gl-replica"][phase], small["disk"][phase], ">= 5x Gluster disperse",
                small["cairn"][phase] >= 5 * small["gl-disperse"][phase])

    with open(os.path.join(results, "cairn-mount-rss.txt")) as f:
        rss_mib = int(f.read().strip()) / 1024
    with open(os.path.join(results, "memcpy.txt")) as f:
        memcpy = f.read().strip().splitlines()[-1].split(",")[-1].strip()

    today = datetime.date.today().isoformat()
    out = [
        f"Measured {today} by `benches/compare/run.sh {size_mib} {files}` on {machine()}; "
        f"everything on one disk. Cairn: release build, 3 metadata replicas, 6 storage "
        f"nodes, ec 4+2, one mount. GlusterFS {gluster_version()}: a disperse 4+2 volume "
        f"(6 bricks) and a replica 3 volume, bricks on the same disk, FUSE-mounted. The "
        f"disk column is fio with direct I/O (libaio, queue depth 16-32) or the small-file "
        f"script on the local file system; the file workloads on Cairn and GlusterFS use "
        f"buffered I/O through FUSE. Memory bandwidth (dd, 64 MiB blocks): {memcpy}. "
        f"cairn-mount peak resident memory during the run: {rss_mib:.0f} MiB.",
        "",
        "| figure | disk | Cairn | GlusterFS disperse 4+2 | GlusterFS replica 3 | Cairn / Gluster disperse | Cairn / physical | target | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    table = "\n".join(out)
    print(table)
    replace_section(md, "compare", table, "Cairn beside GlusterFS (benches/compare/run.sh)")


def gluster_version():
    try:
        import subprocess

        v = subprocess.run(["glusterfs", "--version"], capture_output=True, text=True).stdout
        return v.split()[1]
    except Exception:
        return "(version unknown)"


if __name__ == "__main__":
    main()
