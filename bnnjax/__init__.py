"""bnnjax: 1-bit and low-bit convolutional networks in JAX and Flax NNX."""

__version__ = "0.1.0"
