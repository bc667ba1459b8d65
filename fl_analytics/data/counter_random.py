"""Counter-based random numbers: draw k of stream s of item i is a hash of (seed, s, i, k).

The hash is splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014): a Weyl sequence through a 64-bit finalizer. Because a draw is
a function of its coordinates and not of a generator's state, the draws of any set of
items (users, say) are made at once with numpy operations over all of them, and item
i's draws are the same whichever items are drawn with it. That is what lets the
synthetic population make a cohort of users in one vectorized pass
(`fl_analytics.data.synthetic.generate_users`) and still give each user the log it
would have alone.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(k) for k in (30, 27, 31, 11))
LOW32 = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)


def mix64(z: np.ndarray) -> np.ndarray:
  """splitmix64's finalizer, on uint64 arrays (wrapping arithmetic)."""
  z = (z ^ (z >> _S30)) * _M1
  z = (z ^ (z >> _S27)) * _M2
  return z ^ (z >> _S31)


def stream_keys(seed: int, items, num_streams: int) -> np.ndarray:
  """uint64 [len(items), num_streams]: the key of each item's streams under `seed`."""
  with np.errstate(over='ignore'):
    keys = mix64(np.uint64(seed % 2**64) * GOLDEN
                 + np.arange(1, num_streams + 1, dtype=np.uint64))
    items = np.asarray(items, np.int64).astype(np.uint64)
    return mix64(keys[None, :] ^ mix64((items[:, None] + np.uint64(1)) * GOLDEN))


def bits(keys: np.ndarray, draw) -> np.ndarray:
  """uint64 random bits of draw number `draw` (>= 0) of the streams with `keys`
  (broadcast together)."""
  with np.errstate(over='ignore'):
    return mix64(keys + (np.asarray(draw, np.int64).astype(np.uint64) + np.uint64(1))
                 * GOLDEN)


def ragged_bits(keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
  """Draws 0..counts[i] - 1 of stream keys[i], concatenated in item order (`bits`,
  without the per-draw gathers)."""
  counts = np.asarray(counts, np.int64)
  first = np.cumsum(counts) - counts
  with np.errstate(over='ignore'):  # keys[i] + (k + 1) * golden, k = position - first[i]
    shifted = keys - (first.astype(np.uint64) - np.uint64(1)) * GOLDEN
    return mix64(np.repeat(shifted, counts)
                 + np.arange(int(counts.sum()), dtype=np.uint64) * GOLDEN)


def uniform(b: np.ndarray) -> np.ndarray:
  """Floats in (0, 1) from the 53 high bits of `b`."""
  return ((b >> _S11).astype(np.float64) + 0.5) * 2.0**-53


def shuffles(seed: int, items, counts) -> np.ndarray:
  """Item i's random order of its `counts[i]` elements, as one permutation of the
  concatenated elements (item by item): each item's order a function of
  (seed, items[i], counts[i])."""
  counts = np.asarray(counts, np.int64)
  keys = stream_keys(seed, items, 1)[:, 0]
  owner = np.repeat(np.arange(len(counts)), counts)
  return np.lexsort((ragged_bits(keys, counts), owner))
