#!/usr/bin/env python3
"""The metadata engine at scale: what issue #17 asks to be shown, in one run.

usage: meta_scale.py BIN_DIR WORK_DIR [INODES (default 10000000)] [FILES (default 20000)]

Runs two clusters of `cairn dev up --meta 3 --nodes 3 --ec 2+1 --no-mount` from
BIN_DIR, one after the other, under WORK_DIR (removed at the end):

- **A**, snapshots every SNAPSHOT_EVERY log entries: `cairn bench --workload meta
  --files FILES` on the empty namespace, again after a bulk fill to 1 million inodes,
  and again after a fill to INODES. Each bench reports create/stat/list/rename rates,
  p50/p99/p99.9 and every replica's resident memory; the snapshots built during each
  create phase are counted from the replicas' `cairn_meta_snapshots_built_total`.
  Then the leader is killed with -9 and restarted with the same command line: the time
  from the restart until it answers `ReplicaStatus` with everything applied that the
  cluster had applied when it died. Then a fourth replica joins (`cairn-meta --join`)
  and catches up by snapshot: the time from its start until it has applied the
  leader's index, and its state database's size, give its catch-up rate; the
  snapshot's bytes over the time from the stream's first byte until it is installed
  (both from the replica's log) give the transfer rate.
- **B**, snapshots disabled (every 10^12 entries): filled to INODES, then the same
  bench, for the p99 of creates with no snapshot at all.

Before the clusters, fio measures the disk's sequential write bandwidth in WORK_DIR (1
MiB direct writes, queue depth 16, 2 GiB), the ratio's denominator.

Prints one JSON object with everything (figures per step and the ratios). Every process
it started is killed and WORK_DIR removed, also on failure (logs are copied to
WORK_DIR.failed-logs then).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

SNAPSHOT_EVERY = 500
PORT_BASE = 26700
CONCURRENCY = 8


def run(cmd, env=None, timeout=None):
    out = subprocess.run(cmd, env=env, timeout=timeout, check=True, capture_output=True, text=True)
    return out.stdout


def fio_seq_write_mib_s(work):
    path = os.path.join(work, "fio-seq")
    try:
        out = run(["fio", "--name=seq", f"--filename={path}", "--rw=write", "--bs=1M",
                   "--size=2G", "--direct=1", "--ioengine=libaio", "--iodepth=16",
                   "--output-format=json"], timeout=600)
    finally:
        if os.path.exists(path):
            os.remove(path)
    job = json.loads(out)["jobs"][0]["write"]
    return job["bw_bytes"] / 2**20


class Cluster:
    """`cairn dev up` in the background, plus replicas this script (re)started itself."""

    def __init__(self, bin_dir, work, name, snapshot_every):
        self.bin = bin_dir
        self.dir = os.path.join(work, name)
        self.env = dict(os.environ, CAIRN_META_SNAPSHOT_EVERY=str(snapshot_every))
        self.own = []  # processes started here, not by dev up
        os.makedirs(self.dir)
        self.log = open(os.path.join(self.dir, "devup.log"), "w")
        self.dev = subprocess.Popen(
            [f"{bin_dir}/cairn", "dev", "up", "--dir", f"{self.dir}/cluster", "--port-base",
             str(PORT_BASE), "--meta", "3", "--nodes", "3", "--ec", "2+1", "--no-mount"],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        for _ in range(600):
            time.sleep(0.2)
            if "\nready:" in "\n" + open(self.log.name).read():
                break
            if self.dev.poll() is not None:
                break
        else:
            pass
        if "\nready:" not in "\n" + open(self.log.name).read():
            raise RuntimeError(f"dev up did not become ready:\n{open(self.log.name).read()}")
        self.env["CAIRN_CLUSTER"] = f"{self.dir}/cluster/cluster.toml"

    def cairn(self, *args, timeout=3600):
        return run([f"{self.bin}/cairn", *args], env=self.env, timeout=timeout)

    def status(self):
        return json.loads(self.cairn("status", "--json", timeout=30))

    def bench(self, files, fill=0):
        """A bulk fill of `fill` files first (its own run, reported as `fill`), then the
        phases over `files` files, with the snapshots each replica built meanwhile."""
        base = ["bench", "--workload", "meta", "--concurrency", str(CONCURRENCY), "--keep",
                "--json"]
        filled = None
        if fill:
            filled = json.loads(self.cairn(*base, "--fill", str(fill), "--files", "1"))["fill"]
            filled["settled_after_s"] = self.settle()
        before = self.snapshots_built()
        report = json.loads(self.cairn(*base, "--files", str(files)))
        report["fill"] = filled
        report["snapshots_per_replica"] = (self.snapshots_built() - before) / 3
        report["state_memory_mib"] = self.state_memory_mib()
        return report

    def state_memory_mib(self):
        """Each replica's state and log databases' memory by kind
        (`cairn_meta_{state,log}_memory_bytes`) and its resident memory, in MiB."""
        out = {}
        for i in (1, 2, 3):
            m = self.metrics(i)
            out[i] = {f'{db}_{k.split(chr(34))[1]}': round(v / 2**20)
                      for db in ("state", "log") for k, v in m.items()
                      if k.startswith(f"cairn_meta_{db}_memory_bytes{{")}
            out[i]["resident"] = round(m.get("cairn_meta_resident_memory_bytes", 0) / 2**20)
        return out

    def metrics(self, i):
        url = f"http://127.0.0.{i}:{PORT_BASE + 60 + i}/metrics"
        out = {}
        try:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
        except OSError:
            return out
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def snapshots_built(self):
        return sum(self.metrics(i).get("cairn_meta_snapshots_built_total", 0) for i in (1, 2, 3))

    def settle(self, limit_s=600):
        """Waits until the metadata replicas use under a tenth of a core together (their
        RocksDB compactions after a bulk fill done); returns the seconds waited."""
        tick = os.sysconf("SC_CLK_TCK")

        def cpu():
            total = 0
            for i in (1, 2, 3):
                try:
                    fields = open(f"/proc/{self.pid(f'meta-{i}')}/stat").read().rsplit(")", 1)[1].split()
                    total += int(fields[11]) + int(fields[12])  # utime, stime
                except (OSError, ValueError):
                    pass
            return total / tick

        start = time.monotonic()
        while time.monotonic() - start < limit_s:
            before = cpu()
            time.sleep(3)
            if (cpu() - before) / 3 < 0.1:
                break
        return round(time.monotonic() - start, 1)

    def pid(self, name):
        return int(open(f"{self.dir}/cluster/pids/{name}.pid").read())

    def restart_after_kill9(self, name):
        """kill -9 of `name`, then the same command line again; returns the new process."""
        pid = self.pid(name)
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:-1]
        os.kill(pid, signal.SIGKILL)
        # Gone once its listening port refuses connections (a killed process's threads
        # exit one by one; its sockets close with the last).
        host, port = argv[argv.index(b"--listen") + 1].decode().rsplit(":", 1)
        for _ in range(1000):
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                time.sleep(0.01)
            except OSError:
                break
        log = open(f"{self.dir}/cluster/logs/{name}.log", "a")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.own.append(proc)
        return proc

    def add_replica(self, i):
        tls = f"{self.dir}/cluster/tls"
        self.cairn("cert", "issue", "--dir", tls, "--role", "meta", "--name", f"meta-{i}")
        existing = ",".join(f"127.0.0.{j}:{PORT_BASE + j}" for j in (1, 2, 3))
        log = open(f"{self.dir}/cluster/logs/meta-{i}.log", "w")
        proc = subprocess.Popen(
            [f"{self.bin}/cairn-meta", "--id", str(i), "--listen", f"127.0.0.{i}:{PORT_BASE + i}",
             "--data-dir", f"{self.dir}/cluster/meta-{i}", "--join", existing,
             "--metrics-listen", f"127.0.0.{i}:{PORT_BASE + 60 + i}", "--tls-dir", tls,
             "--admin", "client"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.own.append(proc)
        return proc

    def stop(self, keep_logs_to=None):
        for proc in self.own:
            proc.kill()
            proc.wait()
        self.dev.send_signal(signal.SIGTERM)
        try:
            self.dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.dev.kill()
            self.dev.wait()
        # dev up stops the daemons it started; anything left in its pid files is killed.
        pids = f"{self.dir}/cluster/pids"
        for f in os.listdir(pids) if os.path.isdir(pids) else []:
            try:
                os.kill(int(open(os.path.join(pids, f)).read()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        if keep_logs_to:
            shutil.copytree(f"{self.dir}/cluster/logs", keep_logs_to, dirs_exist_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def replica(status, i):
    return next((r for r in status["replicas"] if r["id"] == i), None)


def poll_status(cluster, done, limit_s):
    """Polls `cairn status` every 0.1 s until `done(status)`; returns the seconds taken."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        try:
            if done(cluster.status()):
                return time.monotonic() - start
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, json.JSONDecodeError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"not done within {limit_s} s")


def create_phase(report):
    return next(p for p in report["phases"] if p["phase"] == "create")


def log_fields(path, message):
    """The numeric fields (`name=123`) of the first line of log `path` with `message`."""
    for line in open(path, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if message in line:
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", line)}
    raise RuntimeError(f"no {message!r} in {path}")


def du_bytes(path):
    """Bytes of the files under `path`, each hard-linked file once (a replica's
    snapshots are hard links into its database)."""
    total, seen = 0, set()
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def cluster_a(bin_dir, work, inodes, files, out):
    c = Cluster(bin_dir, work, "a", SNAPSHOT_EVERY)
    ok = False
    try:
        out["a_empty"] = c.bench(files)
        out["a_1m"] = c.bench(files, fill=1_000_000)
        out["a_full"] = c.bench(files, fill=inodes - 1_000_000)
        s = c.status()
        leader = s["leader"]
        applied = max(r["applied_index"] or 0 for r in s["replicas"])
        c.restart_after_kill9(f"meta-{leader}")
        restart = time.monotonic()
        serving = poll_status(
            c, lambda st: (replica(st, leader) or {}).get("applied_index") is not None, 120)
        caught_up = poll_status(
            c, lambda st: ((replica(st, leader) or {}).get("applied_index") or 0) >= applied, 120)
        out["kill9"] = {
            "replica": leader, "inodes": s["inodes"], "applied_at_kill": applied,
            "answers_after_s": round(serving, 2),
            "caught_up_after_s": round(time.monotonic() - restart, 2) if caught_up else None,
        }
        s = c.status()
        target = max(r["applied_index"] or 0 for r in s["replicas"])
        start = time.monotonic()
        c.add_replica(4)
        secs = poll_status(
            c, lambda st: ((replica(st, 4) or {}).get("applied_index") or 0) >= target, 1800)
        elapsed = time.monotonic() - start
        state = f"{c.dir}/cluster/meta-4/raft/state"
        size = du_bytes(state)
        received = log_fields(f"{c.dir}/cluster/logs/meta-4.log", "received a snapshot stream")
        installed = log_fields(f"{c.dir}/cluster/logs/meta-4.log", "installed a snapshot")
        transfer_s = (received["ms"] + installed["ms"]) / 1000
        out["catch_up"] = {
            "seconds": round(elapsed, 2), "polled_s": round(secs, 2), "state_bytes": size,
            "mib_per_s": round(size / 2**20 / elapsed, 1),
            "snapshot_bytes": received["bytes"], "stream_s": received["ms"] / 1000,
            "install_s": installed["ms"] / 1000,
            "snapshot_mib_per_s": round(received["bytes"] / 2**20 / transfer_s, 1),
        }
        ok = True
    finally:
        c.stop(None if ok else f"{work}.failed-logs/a")


def cluster_b(bin_dir, work, inodes, files, out):
    c = Cluster(bin_dir, work, "b", 10**12)
    ok = False
    try:
        out["b_full"] = c.bench(files, fill=inodes)
        ok = True
    finally:
        c.stop(None if ok else f"{work}.failed-logs/b")


def ratios(out):
    """The ratios #17 asks for, from one run's figures."""
    last = lambda rep: max(r["resident_bytes"] or 0 for r in rep["phases"][-1]["replicas"])
    create = lambda rep: create_phase(rep)
    outside_cache = lambda rep: max(m["resident"] - m.get("state_block_cache", 0)
                                    for m in rep["state_memory_mib"].values())
    return {
        "rss_full_mib": round(last(out["a_full"]) / 2**20),
        "rss_1m_mib": round(last(out["a_1m"]) / 2**20),
        "rss_full_over_1m": round(last(out["a_full"]) / last(out["a_1m"]), 2),
        # The same without the state database's block cache, which fills towards its
        # configured bound (`state_cache_mib`) as the namespace grows past it.
        "rss_outside_block_cache_full_over_1m": round(
            outside_cache(out["a_full"]) / outside_cache(out["a_1m"]), 2),
        "create_rate_full_over_empty": round(
            create(out["a_full"])["ops_per_sec"] / create(out["a_empty"])["ops_per_sec"], 2),
        "create_p99_snapshots_over_none": round(
            create(out["a_full"])["p99_ms"] / create(out["b_full"])["p99_ms"], 2),
        "catch_up_over_fio": round(out["catch_up"]["mib_per_s"] / out["fio_seq_write_mib_s"], 2),
        "snapshot_transfer_over_fio":
            round(out["catch_up"]["snapshot_mib_per_s"] / out["fio_seq_write_mib_s"], 2),
    }


def main():
    bin_dir, work = sys.argv[1], sys.argv[2]
    inodes = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000_000
    files = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
    os.makedirs(work)
    out = {"inodes": inodes, "files": files, "snapshot_every": SNAPSHOT_EVERY}
    try:
        out["fio_seq_write_mib_s"] = round(fio_seq_write_mib_s(work), 1)
        cluster_a(bin_dir, work, inodes, files, out)
        cluster_b(bin_dir, work, inodes, files, out)
        out["ratios"] = ratios(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
