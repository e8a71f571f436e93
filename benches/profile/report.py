"""Summarises benches/profile/run.sh's perf samples and writes the summary into
BENCHMARKS.md between the profile:begin / profile:end markers.

usage: report.py WORK_DIR SECONDS FREQ BENCHMARKS_MD

Samples come from `perf record -a` (all CPUs, timer-based in a VM), so every figure is a
share of the machine's CPU time while the workload ran, idle included.
"""

import collections
import datetime
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from report_common import machine, replace_section  # noqa: E402

SAMPLE = re.compile(r"^\s*(\d+)\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")

# Cost groups, first match wins (symbol regex, label).
GROUPS = [
    (r"blake3", "blake3 hashing"),
    (r"reedsolomon|reed_solomon", "Reed-Solomon encode"),
    (r"^__mem(move|cpy|set)", "user-space memcpy / memset"),
    (r"malloc|_int_free|^free$|cfree|unlink_chunk|realloc|_int_realloc", "allocator"),
    (r"^_copy_(to|from)_iter|copy_user|copy_page", "kernel copies to/from user memory"),
    (r"tcp|skb|sock|ip_|__dev_queue|net_rx|loopback|inet", "kernel TCP (loopback)"),
    (r"ext4|jbd2|filemap|folio|find_get_block|recently_deleted|find_inode_bit|bio|blk_|iomap"
     r"|dio|page_cache|xas_|iowrite|virtqueue|vring", "kernel file system and block IO"),
    (r"idle|halt|cpuidle|poll_idle", "idle"),
    (r"finish_task_switch|schedule|_raw_spin|futex|softirq|irq|syscall|entry|do_syscall"
     r"|page_fault|exc_|handle_mm|clear_page|do_anonymous", "kernel: scheduling, syscalls, faults"),
]


def group_of(sym):
    for pattern, label in GROUPS:
        if re.search(pattern, sym):
            return label
    return "other"


def processes(ps_file):
    names = {}
    with open(ps_file) as f:
        for line in f:
            pid, _, args = line.strip().partition(" ")
            exe = os.path.basename(args.split()[0]) if args else "?"
            if exe == "cairn" and " bench " in args:
                exe = "cairn bench (client)"
            names[pid] = exe
    return names


def summarise(work, workload, secs, freq):
    names = processes(os.path.join(work, f"{workload}.ps"))
    by_proc = collections.Counter()
    by_sym = collections.Counter()
    by_group = collections.Counter()
    by_group_proc = collections.Counter()
    total = 0
    with open(os.path.join(work, f"{workload}.samples")) as f:
        for line in f:
            m = SAMPLE.match(line)
            if not m:
                continue
            pid, sym, _dso = m.groups()
            proc = "idle" if pid == "0" else names.get(pid, "other processes")
            total += 1
            by_proc[proc] += 1
            by_sym[(proc, sym)] += 1
            group = group_of(sym) if proc != "idle" else "idle"
            by_group[group] += 1
            by_group_proc[(group, proc)] += 1
    if total == 0:
        sys.exit(f"no perf samples parsed for {workload}: check `perf script` output")
    bench = json.load(open(os.path.join(work, f"{workload}.json")))["phases"][0]
    return {
        "total": total,
        "procs": by_proc,
        "syms": by_sym,
        "groups": by_group,
        "group_procs": by_group_proc,
        "mib_s": bench["mb_per_sec"] * 1e6 / 1048576,
        # Samples per core-second: freq; the run lasted `secs` on all CPUs.
        "cores": lambda n: n / (freq * secs),
    }


def section(workload, s):
    pct = lambda n: f"{100 * n / s['total']:.1f}%"  # noqa: E731
    out = [
        f"**{workload.upper()}** of 64 MiB objects, 4 in flight: {s['mib_s']:,.0f} MiB/s; "
        f"{s['total']:,} samples.",
        "",
        "| process | share of all CPU time | cores |",
        "|---|---|---|",
    ]
    top = s["procs"].most_common(4)
    for proc, n in top:
        out.append(f"| {proc} | {pct(n)} | {s['cores'](n):.2f} |")
    rest = s["total"] - sum(n for _, n in top)
    out.append(f"| everything else (kernel threads, perf) | {pct(rest)} | {s['cores'](rest):.2f} |")
    out += ["", "| cost group | share of all CPU time | mostly in |", "|---|---|---|"]
    for group, n in s["groups"].most_common():
        procs = [p for (g, p), _ in s["group_procs"].most_common() if g == group][:2]
        out.append(f"| {group} | {pct(n)} | {', '.join(procs)} |")
    out += ["", "| top symbols | process | share |", "|---|---|---|"]
    for (proc, sym), n in s["syms"].most_common(12):
        out.append(f"| `{sym}` | {proc} | {pct(n)} |")
    other = [(sym, n) for (proc, sym), n in s["syms"].most_common() if group_of(sym) == "other"]
    out += ["", "Largest symbols in \"other\": " + ", ".join(f"`{sym}` {pct(n)}" for sym, n in other[:8]) + "."]
    return out


def main():
    work, secs, freq, md = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    disk = json.load(open(os.path.join(work, "disk-seqwrite.json")))["jobs"][0]["write"]
    disk_w = disk["bw"] / 1024
    put = summarise(work, "put", secs, freq)
    get = summarise(work, "get", secs, freq)

    # Encode + checksum on the PUT path: the client's Reed-Solomon and blake3 plus the
    # nodes' blake3 of what they store, in cores per MiB/s, scaled to the PUT target.
    coding = sum(
        n for (g, p), n in put["group_procs"].items()
        if g in ("blake3 hashing", "Reed-Solomon encode")
    )
    cores_per_mib = put["cores"](coding) / put["mib_s"]
    target_mib = 0.7 * disk_w * 4 / 6
    at_target = cores_per_mib * target_mib

    today = datetime.date.today().isoformat()
    out = [
        f"Measured {today} by `benches/profile/run.sh {secs:g}` on {machine()}: release "
        f"build, 3 metadata replicas, 6 storage nodes, ec 4+2, all on one disk; "
        f"`perf record -a -F {freq:g}` over each `cairn bench` run.",
        "",
    ]
    out += section("put", put) + [""] + section("get", get)
    out += [
        "",
        f"**Encode + checksum cost.** On the PUT path, Reed-Solomon encoding and blake3 "
        f"(client shards and the nodes' per-block hashes) took {put['cores'](coding):.2f} "
        f"cores at {put['mib_s']:,.0f} MiB/s: {1000 * cores_per_mib:.2f} milli-cores per "
        f"MiB/s. At the PUT target (0.7 x disk write {disk_w:,.0f} MiB/s x 4/6 = "
        f"{target_mib:,.0f} MiB/s) that is {100 * at_target:.0f}% of one core "
        f"(target < 15%: {'met' if at_target < 0.15 else '**not met**'}).",
    ]
    body = "\n".join(out)
    print(body)
    replace_section(md, "profile", body, "Where the CPU goes: PUT and GET profile (benches/profile/run.sh)")


if __name__ == "__main__":
    main()
