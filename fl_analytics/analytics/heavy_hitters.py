"""Heavy hitters over an open vocabulary: the most common session paths, with DP.

The server does not know the vocabulary: a device's strings are its sessions' paths,
the first `path_length` (4) actions of each session joined by '>' (e.g.
``app_open>home_view>search_open>search_query``), out of |actions|^4 possible. Each
device keeps at most `max_strings` = L of its distinct paths (its most frequent; ties:
the smaller path code), each counted once: the contribution bound. The sketches are
TFF's IBLT (`tff.analytics.heavy_hitters.iblt`, invertible Bloom lookup tables, as in
Gboard's federated heavy hitters), summed by TFF's (simulated) secure sum and decoded
by the server into every string with its count of users.

DP is the Gaussian sparse histogram (Gaussian thresholding, as PipelineDP's partition
selection and Gopi et al. 2020, "Differentially private set union"): every decoded
count gets Gaussian noise of stddev sigma = z * sqrt(L) (one user changes at most L
counts by 1), and only strings whose noisy count is at least the threshold
tau = 1 + sigma * Phi^-1(1 - delta_t / L) are released. A string held by one user
alone is released with probability at most delta_t / L, so the release is
(epsilon, delta_g + delta_t)-DP, where z is calibrated for (epsilon, delta_g) by the
PLD accountant and delta_t = delta_g = delta / 2 (`THRESHOLD_DELTA_SHARE`). The ledger
charges the Gaussian part by its noise multiplier and delta_t as delta spent outright.

Two engines, as in `release`: ``users`` runs `build_iblt_computation` with one TFF
client per user; ``groups`` encodes each group's strings with TFF's `IbltTensorEncoder`
(the sketch is linear: a group's sketch is the sum of its users'), sums the sketches
modulo the IBLT's field as the secure sum does, and decodes with TFF's decoder.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from fl_analytics.analytics import queries as queries_lib

NAME = 'heavy_hitters'
DEFAULTS = {'path_length': 4, 'max_strings': 4, 'capacity': 3000, 'top_k': 20,
            'string_max_bytes': 64}
THRESHOLD_DELTA_SHARE = 0.5
DESCRIPTION = ('Which session paths (the first actions of a session) are most common, '
               'when the server does not know the possible paths?')
BOUND = 'at most max_strings distinct paths, each counted once'


def path_codes(batch, pop: queries_lib.Population, s: Mapping):
  """(user, code) of every user's bounded contribution: at most `max_strings`
  distinct path codes per user (code: the actions' indices in base |vocabulary|)."""
  user = queries_lib._user_of_event(batch)  # pylint: disable=protected-access
  session = queries_lib._session_ids(batch, user)  # pylint: disable=protected-access
  if not len(session):
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  n = int(session[-1]) + 1
  first = np.searchsorted(session, np.arange(n))
  ends = np.r_[first[1:], len(session)]
  v, length = len(pop.vocabulary), s['path_length']
  code = np.zeros(n, np.int64)
  full = ends - first >= length
  for j in range(length):
    code = code * v + batch.events[np.minimum(first + j, len(session) - 1)]
  owner, code = user[first][full], code[full]
  pairs, counts = np.unique(np.stack([owner, code], 1), axis=0, return_counts=True)
  order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
  pairs = pairs[order]
  start = np.searchsorted(pairs[:, 0], pairs[:, 0], side='left')
  keep = np.arange(len(pairs)) - start < s['max_strings']
  return pairs[keep, 0], pairs[keep, 1]


def code_strings(codes: np.ndarray, pop: queries_lib.Population, s: Mapping) -> list[str]:
  v, length = len(pop.vocabulary), s['path_length']
  out = []
  for c in np.asarray(codes).tolist():
    names = []
    for _ in range(length):
      c, a = divmod(c, v)
      names.append(pop.vocabulary[a])
    out.append('>'.join(reversed(names)))
  return out


def true_counts(codes: np.ndarray, pop, s) -> dict[str, int]:
  uniq, counts = np.unique(codes, return_counts=True)
  return dict(zip(code_strings(uniq, pop, s), counts.tolist()))


def _decoded(strings, counts) -> dict[str, int]:
  return {x.decode() if isinstance(x, bytes) else str(x): int(c)
          for x, c in zip(np.asarray(strings).tolist(), np.asarray(counts).tolist())}


def decode_users(per_user: Sequence[Sequence[str]], s: Mapping):
  """TFF's `build_iblt_computation`, one client per user: ({string: users}, strings
  the IBLT could not decode)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  from fl_analytics.core import runtime  # pylint: disable=g-import-not-at-top

  with runtime.local_cpp_context():
    comp = tff.analytics.heavy_hitters.iblt.build_iblt_computation(
        string_max_bytes=s['string_max_bytes'], max_words_per_user=s['max_strings'],
        multi_contribution=False, capacity=s['capacity'], secure_sum_bitwidth=32)
    data = [tf.data.Dataset.from_tensor_slices([list(x) or ['']]) for x in per_user]
    out = comp(data)
  decoded = _decoded(out.heavy_hitters, out.heavy_hitters_counts)
  decoded.pop('', None)  # the placeholder of users without a path
  return decoded, int(out.num_not_decoded)


def decode_groups(groups: Sequence[Mapping[str, int]], s: Mapping):
  """The same from groups' {string: users}: TFF's IBLT encoder per group, the sketches
  summed modulo the field, TFF's decoder."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.python.analytics.heavy_hitters.iblt import iblt_lib, iblt_tensor  # pylint: disable=g-import-not-at-top

  encoder = iblt_tensor.IbltTensorEncoder(
      capacity=s['capacity'], string_max_bytes=s['string_max_bytes'],
      repetitions=3, value_shape=(1,), seed=0)
  # One trace for groups of any size.
  encode = tf.function(encoder.compute_iblt, input_signature=[
      tf.TensorSpec([None], tf.string), tf.TensorSpec([None, 1], tf.int64)])
  sketch, values = 0, 0
  for group in groups:
    if not group:
      continue
    g_sketch, g_values = encode(
        tf.constant(list(group)), tf.constant([[c] for c in group.values()], tf.int64))
    sketch = (sketch + g_sketch.numpy()) % iblt_lib.DEFAULT_FIELD_SIZE
    values = values + g_values.numpy()
  strings, _, counts, not_decoded = iblt_tensor.decode_iblt_tensor_tf(
      tf.constant(sketch, tf.int64), tf.constant(values, tf.int64),
      capacity=s['capacity'], string_max_bytes=s['string_max_bytes'],
      value_shape=(1,), repetitions=3, seed=0)
  return _decoded(strings, tf.squeeze(counts, 1)), int(not_decoded)


def split_delta(delta: float) -> tuple[float, float]:
  """(delta_g, delta_t): the Gaussian's share of `delta` and the threshold's."""
  return delta * (1 - THRESHOLD_DELTA_SHARE), delta * THRESHOLD_DELTA_SHARE


def threshold(noise_stddev: float, *, delta_t: float, max_strings: int) -> float:
  """tau: a string of one user passes with probability delta_t / L."""
  return 1.0 + noise_stddev * float(stats.norm.isf(delta_t / max_strings))


@dataclasses.dataclass(frozen=True)
class Release:
  epsilon: float
  noise_multiplier: float
  noise_stddev: float
  threshold: float
  released: dict[str, float]  # string -> noisy count, only those over the threshold


def release(decoded: Mapping[str, int], s: Mapping, *, epsilon: float, delta: float,
            rng: np.random.Generator) -> Release:
  """The DP release of `decoded` counts at (epsilon, delta) (module docstring)."""
  from fl_analytics.analytics import release as release_lib  # pylint: disable=g-import-not-at-top

  delta_g, delta_t = split_delta(delta)
  z = release_lib.noise_multiplier_for(epsilon, delta=delta_g)
  sigma = z * math.sqrt(s['max_strings'])
  tau = threshold(sigma, delta_t=delta_t, max_strings=s['max_strings'])
  names = sorted(decoded)
  noisy = np.asarray([decoded[x] for x in names], float) + rng.normal(0, sigma, len(names))
  return Release(epsilon, z, sigma, tau,
                 {x: float(c) for x, c in zip(names, noisy) if c >= tau})


def top_k_metrics(released: Mapping[str, float], truth: Mapping[str, int],
                  k: int) -> dict[str, float]:
  """Recall and precision of the released top k against the true top k."""
  true_top = set(sorted(truth, key=lambda x: (-truth[x], x))[:k])
  got = set(sorted(released, key=lambda x: -released[x])[:k])
  hits = len(true_top & got)
  return {'recall': hits / max(len(true_top), 1), 'precision': hits / max(len(got), 1),
          'released': len(released)}
