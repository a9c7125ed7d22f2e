"""Fine-tuning from another run (config.init_from): what is loaded, what the method
derives from the loaded kernels, and the errors before anything is written."""

import os
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from bnnjax import nn
from bnnjax.methods import bonn
from bnnjax.methods import xnorpp
from bnnjax.train import checkpoint as ckpt_lib
from bnnjax.train import init_from
from bnnjax.train import trainer
from bnnjax.train.validation import ConfigError
from configs import common
from tests.train.trainer_test import tiny_config


def _config(method="xnor", **kw):
  # The float compute path: what is loaded and derived does not depend on it, and it
  # compiles faster than CPU's packed forward.
  c = tiny_config("resnet18", method, dataset="mnist", num_train_examples=32,
                  num_test_examples=16, num_train_steps=2, binary_compute="float")
  if method == "bonn":
    common.add_bonn(c, w_lr=1e-4)
  c.update(kw)
  return c


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """A trained xnor run (2 steps, checkpoints at steps 1 and 2)."""
  workdir = str(tmp_path_factory.mktemp("source"))
  trainer.train_and_evaluate(_config(), workdir)
  return workdir


def _named(tree):
  return {"/".join(names): np.asarray(leaf) for names, leaf in ckpt_lib._paths(tree)}


def test_xnor_run_fine_tunes_into_bonn_with_derived_prior(source):
  setup = trainer.set_up(_config("bonn"))
  params, rest, report = init_from.load(setup.graphdef, setup.state.params,
                                        setup.state.rest, source)
  saved = ckpt_lib.read_items(source, 2, ("params", "rest"))
  src = {**_named(saved["params"]), **_named(saved["rest"])}
  got = {**_named(params), **_named(rest)}
  assert report.step == 2 and set(report.loaded) <= set(src)
  for name in report.loaded:  # every loaded array is the source's, bit for bit
    np.testing.assert_array_equal(got[name], src[name])
  kernels = [n for n in src if n.endswith("kernel")]
  assert set(kernels) <= set(report.loaded)
  assert any("batch_stats" in n or n.endswith("mean") for n in report.loaded)
  # BONN's w, μ, log σ are not in an xnor run: derived from the loaded kernel.
  model = nnx.merge(setup.graphdef, params, rest)
  layers = bonn.layers(model)
  assert layers and len(report.derived) == 3 * len(layers)
  for layer in layers:
    w, mu, log_sigma = bonn.init_bonn(layer.kernel[...])
    np.testing.assert_allclose(layer.bonn_modulation[...], w, rtol=1e-6)
    np.testing.assert_allclose(layer.bonn_mu[...], mu, rtol=1e-6)
    np.testing.assert_allclose(layer.bonn_log_sigma[...], log_sigma, rtol=1e-6)
  # The feature prior is BONN's alone: it keeps its initialisation and is reported.
  kept = dict(report.kept)
  assert any("bonn_feature_prior" in n for n in kept)
  assert "kept their initialisation" in report.summary()


def test_xnorpp_gamma_is_derived_from_the_loaded_kernel_at_the_chosen_step(source):
  setup = trainer.set_up(_config("xnorpp_1"))
  params, rest, report = init_from.load(setup.graphdef, setup.state.params,
                                        setup.state.rest, source, step=1)
  assert report.step == 1 and report.derived and not report.kept
  model = nnx.merge(setup.graphdef, params, rest)
  step1 = _named(ckpt_lib.read_items(source, 1, ("params",))["params"])
  for path, m in nnx.iter_modules(model):
    if getattr(m, "spec", None) is not None and hasattr(m, "gamma_alpha"):
      kernel = step1["/".join(map(str, path)) + "/kernel"]
      np.testing.assert_array_equal(m.kernel[...], kernel)
      np.testing.assert_allclose(m.gamma_alpha[...],
                                 xnorpp.init_gamma(1, kernel, m.out_hw)["alpha"], rtol=1e-6)


def test_training_from_init_from_and_resuming_without_the_source(source, tmp_path):
  src_copy = str(tmp_path / "src")
  shutil.copytree(source, src_copy)
  work = str(tmp_path / "tuned")
  c = _config("xnor_cf_2", init_from=src_copy, lr=1e-9, num_train_steps=1)
  trainer.train_and_evaluate(c, work)
  # lr = 1e-9: the fine-tuned kernels are the source's (Adam's step moves each by ~lr).
  tuned = ckpt_lib.read_arrays(work)
  orig = ckpt_lib.read_arrays(src_copy)
  kernels = [k for k in orig if k.startswith("params") and "kernel" in k]
  assert kernels
  for k in kernels:
    np.testing.assert_allclose(tuned[k], orig[k], rtol=0, atol=1e-8)
  # The fine-tuned run is its own: it loads and resumes after the source is gone.
  shutil.rmtree(src_copy)
  model, config, _ = trainer.load_trained(work)
  assert config.init_from == src_copy
  assert trainer.train_and_evaluate(c, work)["step"] == 1


@pytest.mark.parametrize("kw,match", [
    ({"init_from": "/nonexistent/run"}, "config.init_from='/nonexistent/run' is not"),
    ({"init_from_step": 7}, r"config.init_from_step=7: .* steps \[1, 2\]"),
    ({"init_from": ""}, "config.init_from=''"),
    ({"init_from_step": -1}, "config.init_from_step=-1"),
])
def test_bad_init_from_is_refused_before_anything_is_written(source, tmp_path, kw, match):
  c = _config(**{"init_from": source, **kw})
  with pytest.raises(ConfigError, match=match):
    trainer.train_and_evaluate(c, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_rng_state_stays_the_new_runs(tmp_path):
  """A source saved untrained (no compile): a vgg7 with dropout at seed 0 loaded into
  seed 1 takes its kernels and keeps seed 1's dropout key and counter."""
  import json
  def config(seed):
    c = tiny_config("vgg7", "xnor", dataset="mnist", seed=seed)
    c.model_kwargs = {"width_mult": 0.0625, "dropout": 0.3}
    return c
  src = trainer.set_up(config(0))
  ck = ckpt_lib.Checkpointer(str(tmp_path))
  # The source's dropout counter advanced (as after 5 steps): it must not be loaded.
  bumped = jax.tree.map(lambda x: x + 5 if x.dtype == np.uint32 else x, src.state.rest)
  ck.save(1, src.state.replace(rest=bumped), wait=True)
  ck.close()
  with open(tmp_path / "config.json", "w") as f:
    json.dump(json.loads(config(0).to_json_best_effort()), f)
  new = trainer.set_up(config(1))
  params, rest, report = init_from.load(new.graphdef, new.state.params, new.state.rest,
                                        str(tmp_path))
  assert report.loaded and not report.kept
  assert not any("rngs" in n for n in report.loaded)
  for names, leaf in ckpt_lib._paths(rest):
    if "rngs" in names:
      ref = dict(ckpt_lib._paths(new.state.rest))[names]
      a, b = ((jax.random.key_data(x) if ckpt_lib.is_prng_key(x) else x)
              for x in (leaf, ref))
      np.testing.assert_array_equal(a, b)
  src_kernels = _named(src.state.params)
  for name, arr in _named(params).items():
    np.testing.assert_array_equal(arr, src_kernels[name])


def test_own_workdir_and_another_model_are_refused(source, tmp_path):
  with pytest.raises(ConfigError, match="this run's own --workdir"):
    trainer.train_and_evaluate(_config(init_from=source), source)
  other = _config(model_kwargs={"width": 8})  # every shape differs
  setup = trainer.set_up(other)
  with pytest.raises(ConfigError, match=(r"none of this model.s kernels is in its "
                                        r"checkpoint of step 2 \(e\.g\. \S+/kernel: shape")):
    init_from.load(setup.graphdef, setup.state.params, setup.state.rest, source)
