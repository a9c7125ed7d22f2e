"""Theoretical speed-ups of binary convolutions over full-precision ones.

Each counts one full-precision MAC against binary operations done ``L`` at a time by
bit-packing, ignoring memory traffic, as the papers do.
"""

from __future__ import annotations


def xnor_speedup(c: int, kernel_area: int, L: int = 64) -> float:
  """XNOR-Net's speed-up ``S = L·c·N_W / (c·N_W + L)`` (Rastegari et al. 2016, §3.3).

  Args:
    c: input channels.
    kernel_area: ``N_W = kh·kw``.
    L: bits per binary instruction (64; 512 with AVX-512).

  ``xnor_speedup(256, 9) ≈ 62.27``.
  """
  cn = c * kernel_area
  return L * cn / (cn + L)


def xnorpp_speedup_xnor(w: int, h: int, o: int) -> float:
  """XNOR-Net's speed-up as printed in XNOR-Net++ (§4.3, Eq. 8).

  ``S_XNOR = 64·w·h·o / (w·h·o + 2 + h·w)`` with ``w × h`` the kernel size and ``o``
  the output channels (the paper's symbols; it counts XNOR-Net's extra
  ``2·c·h_out·w_out`` multiplications and ``c·h_out·w_out·h·w`` additions).
  ``xnorpp_speedup_xnor(3, 3, 256) ≈ 63.70`` (the paper prints 63.69).
  """
  return 64 * w * h * o / (w * h * o + 2 + h * w)


def xnorpp_speedup_ours(w: int, h: int, o: int) -> float:
  """XNOR-Net++'s own speed-up (§4.3, Eq. 9): ``S_OURS = 64·w·h·o / (w·h·o + 1)``.

  The fused Γ costs one multiplication per output. ``xnorpp_speedup_ours(3, 3, 256)
  ≈ 63.97`` (the paper prints 63.98).
  """
  return 64 * w * h * o / (w * h * o + 1)


def cf_speedup(n: int, c: int, kernel_area: int, L: int = 64,
               gamma: float = 1.91) -> float:
  """Cross-filter speed-up ``S_CF(n) = γ·L·c·N_W / (c·N_W + γ·L/n)``
  (docs/cross_filter.md#speed-up, [rec]).

  Args:
    n: filters sharing one scaling factor (``n=1`` is XNOR-Net).
    c: input channels.
    kernel_area: ``N_W = kh·kw``.
    L: bits per binary instruction (64; 512 for AVX-512).
    gamma: cost of one MAC in L-bit binary operations (1.91 after TBN).

  ``n = 1, gamma = 1`` is :func:`xnor_speedup`; as ``n → ∞`` it tends to ``γ·L``
  (122.24 for the defaults), the paper's "up to 122×".
  """
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}.")
  cn = c * kernel_area
  return gamma * L * cn / (cn + gamma * L / n)
