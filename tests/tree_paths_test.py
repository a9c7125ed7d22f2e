"""A parameter's name is the same from a jax key path and from an NNX graph path."""

import jax
from flax import nnx

from bnnjax.tree_paths import path_name


def test_key_paths_and_graph_paths_give_the_same_names():
  model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
  state = nnx.state(model, nnx.Param)
  from_keys = {path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(
      state, is_leaf=lambda x: isinstance(x, nnx.Variable))}
  from_flat = {path_name(p) for p, _ in nnx.to_flat_state(state)}
  assert from_keys == from_flat == {"layers/0/kernel", "layers/0/bias"}
  assert path_name([jax.tree_util.GetAttrKey("a"), jax.tree_util.SequenceKey(2),
                    jax.tree_util.DictKey("b")]) == "a/2/b"
