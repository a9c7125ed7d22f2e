"""Metric writers: JSON lines (``metrics.jsonl``) and TensorBoard event files.

TensorBoard events are written with tensorboard's own event writer, which needs no
TensorFlow (GPU machines have none). ``metrics.jsonl`` is read back with
:func:`bnnjax.analysis.read_metrics`.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Mapping

from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class MetricWriter:
  """Appends ``{"step": s, **scalars}`` to ``workdir/metrics.jsonl`` and to TensorBoard.

  Appending (not truncating) keeps the history of a resumed run in one file; with
  ``resume_step``, records of later steps (logged by a killed run after its last
  checkpoint, which the resumed run logs again) are dropped first. With
  ``enabled=False`` (every process but the first of a multi-process run) it writes
  nothing.
  """

  def __init__(self, workdir: str, tensorboard: bool = True, enabled: bool = True,
               resume_step: int | None = None):
    self.enabled = enabled
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    if resume_step is not None:
      _drop_records_after(self.path, resume_step)
    self._file = open(self.path, "a", buffering=1)
    self._tb = EventFileWriter(os.path.join(workdir, "tensorboard")) if tensorboard else None

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in scalars.items()}
    record = {"step": int(step), **{k: (v if math.isfinite(v) else str(v))
                                   for k, v in clean.items()}}
    self._file.write(json.dumps(record) + "\n")
    if self._tb is not None:
      summary = summary_pb2.Summary(value=[
          summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in clean.items()])
      self._tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                         summary=summary))

  def flush(self) -> None:
    if not self.enabled:
      return
    self._file.flush()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if not self.enabled:
      return
    self._file.close()
    if self._tb is not None:
      self._tb.close()


def _drop_records_after(path: str, step: int) -> None:
  """Removes the records a killed run logged after its last checkpoint (``step``):
  the resumed run computes those steps again, bit-identically, and logs them once."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  keep = []
  for line in lines:
    try:
      if json.loads(line)["step"] > step:
        continue
    except (ValueError, KeyError, TypeError):
      if not line.endswith("\n"):
        continue  # a record cut off by the kill
    keep.append(line if line.endswith("\n") else line + "\n")
  if keep != lines:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(keep)
    os.replace(tmp, path)
