"""The small-file loop of one process with each system call timed: open(O_CREAT), a 4 KiB
write, close; stat; open(O_RDONLY), read, close; unlink; N files in DIR. Prints one JSON
object: per call, p50 and p99 in milliseconds.

usage: small_file_steps.py DIR N
"""
import json, os, statistics, sys, time
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
payload = os.urandom(4096)
t = {k: [] for k in ("create_open", "write", "create_close", "stat", "read_open", "read", "read_close", "unlink")}
def lap(k, f):
    a = time.perf_counter(); r = f(); t[k].append((time.perf_counter() - a) * 1000); return r
for i in range(n):
    p = os.path.join(d, f"f{i}")
    fd = lap("create_open", lambda: os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644))
    lap("write", lambda: os.write(fd, payload))
    lap("create_close", lambda: os.close(fd))
for i in range(n):
    lap("stat", lambda: os.stat(os.path.join(d, f"f{i}")))
for i in range(n):
    p = os.path.join(d, f"f{i}")
    fd = lap("read_open", lambda: os.open(p, os.O_RDONLY))
    lap("read", lambda: os.read(fd, 8192))
    lap("read_close", lambda: os.close(fd))
for i in range(n):
    lap("unlink", lambda: os.unlink(os.path.join(d, f"f{i}")))
out = {}
for k, v in t.items():
    v.sort()
    out[k] = {"p50_ms": round(statistics.median(v), 3), "p99_ms": round(v[int(len(v) * 0.99)], 3)}
os.rmdir(d)
print(json.dumps(out))
