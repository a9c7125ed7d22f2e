"""FlatTree: a pytree carried into jit as its leaves, rebuilt inside."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bnnjax.flat_tree import FlatTree


class _Two(nnx.Module):

  def __init__(self, rngs):
    self.a = nnx.Linear(3, 4, rngs=rngs)
    self.b = nnx.BatchNorm(4, rngs=rngs)


def test_round_trip_keeps_structure_and_values():
  _, state = nnx.split(_Two(nnx.Rngs(0)))
  flat = FlatTree.of(state)
  assert all(isinstance(v, jax.Array) for v in flat.leaves)
  back = flat.tree()
  assert jax.tree.structure(back) == jax.tree.structure(state)
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
    np.testing.assert_array_equal(x, y)


def test_jit_sees_one_list_of_arrays_and_rebuilds_the_tree():
  graphdef, state = nnx.split(_Two(nnx.Rngs(0)))
  flat = FlatTree.of(state)
  assert jax.tree.leaves(flat) == flat.leaves

  @jax.jit
  def f(flat, x):
    m = nnx.merge(graphdef, flat.tree())
    return m.b(m.a(x), use_running_average=True)
  x = jnp.ones((2, 3))
  want = nnx.merge(graphdef, state).b(nnx.merge(graphdef, state).a(x),
                                      use_running_average=True)
  np.testing.assert_allclose(f(flat, x), want, rtol=1e-6)


def test_a_different_structure_is_a_different_trace():
  traces = []

  @jax.jit
  def f(flat):
    traces.append(1)
    return sum(jnp.sum(v) for v in jax.tree.leaves(flat.tree()))
  assert float(f(FlatTree.of({"a": jnp.ones(2)}))) == 2.0
  assert float(f(FlatTree.of({"b": jnp.ones(2)}))) == 2.0
  assert float(f(FlatTree.of({"a": jnp.ones(2)}))) == 2.0
  assert len(traces) == 2  # the treedef is part of the cache key
