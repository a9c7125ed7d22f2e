"""Tiny versions of the zoo models that several test files build (not a test file).

Tiny widths (all even, so cross-filter groups of 2 divide them) and small inputs.
Non-square 16×20 so that XNOR-Net++ Γ shapes check H and W tracking separately, with
odd sizes on the way (ResNet: 20 → 10 → 5 → 3).
"""

import jax
from flax import nnx

# name -> (input shape, model kwargs)
TINY = {
    "resnet18": ((16, 20, 3), dict(width=4)),
    "wrn22": ((16, 20, 3), dict(widths=(4, 4, 8, 8), dropout=0.3)),
    "nin": ((16, 20, 3), dict(width_mult=1 / 16)),
    "vgg7": ((16, 20, 3), dict(width_mult=1 / 32)),
    "alexnet": ((16, 20, 3), dict(width_mult=1 / 16)),
}


def rngs(seed=0):
  """``nnx.Rngs`` with RBG keys: their samplers compile ~7x faster than threefry's,
  once per kernel shape, which dominates eager model construction on CPU."""
  return nnx.Rngs(params=jax.random.key(seed, impl="rbg"),
                  dropout=jax.random.key(seed + 1, impl="rbg"))
