"""Hierarchical histograms as TFF builds and reads them: the tree, its leaves, its decoding.

The layout is TF Privacy's `TreeRangeSumQuery` (used by TFF's
`tff.analytics.hierarchical_histogram`): the leaves padded with zeros to a power of the
arity, each node the sum of its children, root first. The decoding is TFF's
`HierarchicalHistogramDecoder` made consistent by least squares (Cormode, Kulkarni and
Srivastava 2019), which is linear, so the stddev of a decoded leaf follows from the
nodes' noise (`leaf_stddev`).
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import numpy as np


def tree_depth(num_bins: int, arity: int) -> int:
  """Levels of TFF's hierarchical histogram, root included (its `_tree_depth`)."""
  return math.ceil(math.log(num_bins) / math.log(arity)) + 1


def tree_layers(leaves: np.ndarray, arity: int) -> list[np.ndarray]:
  """[..., bins] leaf counts -> the layers root first, as TFF's TreeRangeSumQuery
  builds them: leaves padded with zeros to a power of `arity`, each node the sum of
  its `arity` children."""
  depth = tree_depth(leaves.shape[-1], arity)
  width = arity ** (depth - 1)
  layer = np.concatenate(
      [leaves, np.zeros(leaves.shape[:-1] + (width - leaves.shape[-1],), leaves.dtype)],
      axis=-1)
  layers = [layer]
  while layer.shape[-1] > 1:
    layer = layer.reshape(layer.shape[:-1] + (-1, arity)).sum(axis=-1)
    layers.append(layer)
  return layers[::-1]


def leaves_of(flat: np.ndarray, s: Mapping) -> np.ndarray:
  """The leaf histograms [..., num_bins] of flat trees (`tree_layers`)."""
  width = s['arity'] ** (tree_depth(s['num_bins'], s['arity']) - 1)
  return flat[..., flat.shape[-1] - width:flat.shape[-1] - width + s['num_bins']]


@functools.lru_cache(maxsize=None)
def _consistency_weights(num_bins: int, arity: int) -> np.ndarray:
  """[num_bins, nodes]: the consistent leaves as a linear map of the tree's nodes (TFF's
  `enforce_consistency` is least squares, so linear): column i decodes node i alone."""
  s = {'num_bins': num_bins, 'arity': arity}
  nodes = sum(len(x) for x in tree_layers(np.zeros(num_bins), arity))
  return np.stack([_decoder(np.eye(nodes)[i], s)[0][:num_bins]
                   for i in range(nodes)], axis=1)


def _decoder(flat: np.ndarray, s: Mapping):
  """TFF's decoder of the flat tree, made consistent; and its leaves."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.python.analytics.hierarchical_histogram import (  # pylint: disable=g-import-not-at-top
      hierarchical_histogram_decoder as hhd)

  lengths = [s['arity'] ** level
             for level in range(tree_depth(s['num_bins'], s['arity']))]
  tree = tf.RaggedTensor.from_row_lengths(np.asarray(flat, np.float64), lengths)
  decoder = hhd.HierarchicalHistogramDecoder(tree, s.get('lower', 0.0),
                                             s.get('upper', 1.0))
  decoder.enforce_consistency()
  return np.asarray([decoder.node_query(len(lengths) - 1, b)
                     for b in range(lengths[-1])]), decoder


def decode_tree(flat: np.ndarray, s: Mapping, quantiles: Sequence[float]):
  """(consistent leaf counts [num_bins], the midpoints of the quantiles' bins)."""
  leaves, decoder = _decoder(flat, s)
  width = (s['upper'] - s['lower']) / s['num_bins']
  out = []
  for q in quantiles:
    try:
      lo, hi = decoder.quantile_query(q)
      out.append(min((lo + hi) / 2, s['upper'] - width / 2))
    except (ValueError, IndexError):  # a tree whose noisy total is not positive
      out.append(math.nan)
  return leaves[:s['num_bins']], out


def leaf_stddev(node_stddev: float, s: Mapping) -> float:
  """The stddev of a consistent leaf count when every node has noise `node_stddev`
  (the largest over leaves)."""
  w = _consistency_weights(s['num_bins'], s['arity'])
  return float(node_stddev * np.sqrt((w**2).sum(axis=1)).max())
