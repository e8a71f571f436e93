"""Holds a lock on a file in a Cairn mount, for the shared-mount tests.

usage: lock_holder.py PATH flock|fcntl

Opens PATH (creating it), takes an exclusive lock (blocking), writes b"holder-before\\n"
and fsyncs, then prints "locked". For every line read from stdin it then tries to
overwrite the file with b"holder-after\\n" and fsync, printing "wrote" or "error ERRNO".
"""

import fcntl
import os
import sys


def main():
    path, kind = sys.argv[1], sys.argv[2]
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if kind == "flock":
        fcntl.flock(fd, fcntl.LOCK_EX)
    else:
        fcntl.lockf(fd, fcntl.LOCK_EX)
    os.pwrite(fd, b"holder-before\n", 0)
    os.fsync(fd)
    print("locked", flush=True)
    for _ in sys.stdin:
        try:
            os.pwrite(fd, b"holder-after\n", 0)
            os.fsync(fd)
            print("wrote", flush=True)
        except OSError as e:
            print("error", e.errno, flush=True)


if __name__ == "__main__":
    main()
