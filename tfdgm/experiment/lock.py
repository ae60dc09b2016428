"""One trainer per workdir: an exclusive lock file, WORKDIR/.lock, holding its owner's pid and host.

The lock is an `fcntl.flock` on the file, which the kernel releases when the owner exits however it
ends (even by SIGKILL), so a lock left by a dead process is detected as stale and taken over. The
file is removed on a normal exit; the pid and host inside name the owner in the second trainer's
error.
"""
import fcntl
import json
import os
import socket
import time

from tfdgm.experiment.workdir import ExperimentError, log

LOCK_FILE = ".lock"


def _owner(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode("utf-8") or "null")
    except (ValueError, OSError):
        return None


class WorkdirLock:
    """`with WorkdirLock(workdir):` holds workdir's lock, or raises ExperimentError naming its owner."""

    def __init__(self, workdir):
        self.workdir = os.fspath(workdir)
        self.path = os.path.join(self.workdir, LOCK_FILE)
        self._fd = None
        self._created = False

    def acquire(self):
        self._created = not os.path.isdir(self.workdir)
        try:
            os.makedirs(self.workdir, exist_ok=True)
        except OSError as error:
            raise ExperimentError(f"cannot create workdir {self.workdir!r}: {error.strerror or error}.") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise ExperimentError(f"cannot create the lock file {self.path}: {error.strerror or error}; "
                                      "is the workdir writable?") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _owner(fd) or {}
                os.close(fd)
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["time"])) if "time" in owner else "?"
                raise ExperimentError(
                    f"workdir {self.workdir!r} is in use by another `tfdgm train` (pid {owner.get('pid', '?')} on "
                    f"host {owner.get('host', '?')}, since {since}); wait for it to finish or stop it, or train "
                    "into another --workdir.") from None
            # The file may have been removed (released) between open and flock: lock the one on disk.
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        stale = _owner(fd)
        if stale and stale.get("pid") != os.getpid():
            log(f"Taking over the stale lock {self.path} of pid {stale.get('pid')} on host {stale.get('host')}, "
                "which no longer holds it (it exited or was killed).")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self):
        if self._fd is None:
            return
        try:
            os.remove(self.path)  # while still holding it, so no other process can have taken it yet
        except FileNotFoundError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        if self._created and not os.listdir(self.workdir):  # a run that failed before writing anything
            os.rmdir(self.workdir)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
