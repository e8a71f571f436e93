"""Tries to take an exclusive lock on a file in a Cairn mount without waiting.

usage: try_lock.py PATH flock|fcntl [DATA]

Exit 0 if the lock was taken (then, with DATA, the file is replaced by DATA and
fsynced while locked), 1 if another owner holds it, 2 on any other error.
"""

import errno
import fcntl
import os
import sys


def main():
    path, kind = sys.argv[1], sys.argv[2]
    data = sys.argv[3].encode() if len(sys.argv) > 3 else None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if kind == "flock":
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return 1
            raise
        if data is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        os.close(fd)
        return 0
    except OSError as e:
        print(f"try_lock: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
