"""Shared fixtures of the sweep-benchmark tests."""

import json
import os

import pytest

from bnnjax import train


@pytest.fixture
def stub_train(monkeypatch):
  """``stub_train(top1_of)`` replaces training by a stub that writes config.json and
  results.json as the trainer does, with test top-1 ``top1_of(config)``; it returns
  the list of configs the stub is then called with."""

  def install(top1_of):
    calls = []

    def fake_train(c, workdir):
      calls.append(c)
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(json.loads(c.to_json_best_effort()), f)
      top1 = top1_of(c)
      results = {"test/top1": top1, "test/top5": 1.0, "test/loss": 1.0 - top1,
                 "step": c.num_train_steps}
      with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f)
      return results
    monkeypatch.setattr(train, "train_and_evaluate", fake_train)
    return calls

  return install
