"""One process per workdir: an exclusive lock on ``<workdir>/run.lock``.

The lock is an ``flock`` on the file, so the kernel releases it on any exit (a crash,
SIGKILL); the file records the holder (pid, host, start time, command) and is emptied
on a clean release. A non-empty lock file whose lock is free is therefore stale (its
holder died): the next run takes it over and ``previous`` says whose it was. A second run on a held workdir is refused at once with the
holder's pid, host and command. In a multi-process job only process 0 takes the lock
(the job's processes share it). Locks are re-entrant within a process (a sweep or
``experiments.ptq`` holds its workdir while the trainer locks it again).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import threading

LOCK_NAME = "run.lock"

_held: dict[str, list] = {}  # realpath of the lock file -> [fd, depth]
_mutex = threading.Lock()


class WorkdirBusy(RuntimeError):
  """Another process holds the workdir's lock."""


def _holder_text(path: str) -> str:
  try:
    with open(path) as f:
      info = json.load(f)
  except (OSError, ValueError):
    return "another process (its lock file names no holder)"
  cmd = info.get("command", "")
  return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
          + (f": {cmd}" if cmd else ""))


class WorkdirLock:
  """``with WorkdirLock(workdir): ...`` holds ``workdir``'s lock (creating the dir).

  Raises:
    WorkdirBusy: another process holds it.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_NAME)
    self.enabled = enabled
    self.previous: str | None = None  # the stale holder this lock replaced, if any
    self._key: str | None = None

  def acquire(self) -> "WorkdirLock":
    if not self.enabled:
      return self
    os.makedirs(self.workdir, exist_ok=True)
    key = os.path.realpath(self.path)
    with _mutex:
      if key in _held:
        _held[key][1] += 1
        self._key = key
        return self
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
          raise WorkdirBusy(
              f"--workdir={self.workdir} is in use by another run ({_holder_text(self.path)}). "
              "Only one process may train in a workdir: wait for that run to end or "
              "stop it, or use another --workdir. Nothing was changed.") from None
        raise
      if os.fstat(fd).st_size:
        self.previous = _holder_text(self.path)
      info = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join(sys.argv)}
      os.ftruncate(fd, 0)
      os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
      _held[key] = [fd, 1]
      self._key = key
    return self

  def release(self) -> None:
    if self._key is None:
      return
    with _mutex:
      key, self._key = self._key, None
      entry = _held.get(key)
      if entry is None:
        return
      entry[1] -= 1
      if entry[1] == 0:
        del _held[key]
        os.ftruncate(entry[0], 0)  # empty: released cleanly (non-empty: a crash)
        fcntl.flock(entry[0], fcntl.LOCK_UN)
        os.close(entry[0])

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
