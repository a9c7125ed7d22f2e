"""Metric writers: JSON lines (``metrics.jsonl``) and TensorBoard event files.

TensorBoard events are written with tensorboard's own event writer, which needs no
TensorFlow (GPU machines have none).
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

  Appending (not truncating) keeps the history of a resumed run in one file. With
  ``enabled=False`` (every process but the first of a multi-process run) it writes
  nothing.
  """

  def __init__(self, workdir: str, tensorboard: bool = True, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
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


def read_metrics(workdir: str) -> list[dict]:
  """All records of ``workdir/metrics.jsonl``, in order."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
