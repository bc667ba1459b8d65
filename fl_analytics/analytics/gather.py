"""What the devices send, gathered over a population too large to hold at once.

The users' logs are made (or read from an event store) `chunk` users at a time; each
query's bounded vectors (`queries`) and each device's bounded paths (`heavy_hitters`)
are computed on the chunk and summed per group of `group_size` users, which is what a
TFF client of the ``groups`` engine sends (heavy hitters: one IBLT sketch per chunk of
`path_group` users, since encoding costs per distinct string, not per user). The first
`keep_users` users' own vectors and paths are kept too, for the ``users`` engine (one TFF client per user) and for the
central library, which sees the raw rows.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Callable, Mapping, Optional

import numpy as np

from fl_analytics.analytics import heavy_hitters as hh
from fl_analytics.analytics import queries as queries_lib


@dataclasses.dataclass
class Gathered:
  group_size: int
  num_users: int = 0
  # query -> [groups, dim] sums of the users' vectors
  group_sums: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
  # query -> [users, dim] vectors (keep_users only)
  user_vectors: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
  # heavy hitters: per chunk of path_group users {string: users}; per user its
  # strings (keep_users only)
  path_group: int = 0
  group_paths: list[collections.Counter] = dataclasses.field(default_factory=list)
  user_paths: list[list[str]] = dataclasses.field(default_factory=list)

  def sums(self, name: str, users: Optional[int] = None) -> np.ndarray:
    """The true sum of `name`'s vectors over the first `users` users (all: None)."""
    groups = self.group_sums[name][:self._groups(users)]
    return np.sum(np.stack(groups), axis=0)

  def clients(self, name: str, users: Optional[int] = None) -> np.ndarray:
    return np.stack(self.group_sums[name][:self._groups(users)])

  def vectors(self, name: str) -> np.ndarray:
    return np.concatenate(self.user_vectors[name])

  def paths(self, users: Optional[int] = None) -> collections.Counter:
    total = collections.Counter()
    for g in self.group_paths[:self.path_groups(users)]:
      total.update(g)
    return total

  def _groups(self, users: Optional[int], size: int = 0) -> int:
    size = size or self.group_size
    n = self.num_users if users is None else users
    if n % size and n != self.num_users:
      raise ValueError(f'{n} users are not whole groups of {size}.')
    return -(-n // size)

  def path_groups(self, users: Optional[int]) -> int:
    """How many of `group_paths` hold the first `users` users."""
    return self._groups(users, self.path_group)


def gather(logs: Callable[[np.ndarray], object], users: np.ndarray,
           specs: Mapping[str, Mapping], pop: queries_lib.Population, *,
           group_size: int, keep_users: int = 0, chunk: int = 10_000,
           progress: Optional[Callable[[int, float], None]] = None) -> Gathered:
  """Every query of `specs` (name -> settings; `hh.NAME` for heavy hitters) over the
  users `users` of `logs(indices) -> LogBatch`, `chunk` users at a time (a multiple of
  `group_size`)."""
  chunk = max(group_size, chunk // group_size * group_size)
  out = Gathered(group_size, path_group=chunk)
  t0 = time.monotonic()
  for start in range(0, len(users), chunk):
    batch = logs(users[start:start + chunk])
    keep = max(0, min(keep_users - start, len(batch)))
    for name, s in specs.items():
      if name == hh.NAME:
        _gather_paths(out, batch, pop, s, keep_users=keep)
        continue
      v = queries_lib.get(name).contributions(batch, pop, s)
      out.group_sums.setdefault(name, []).extend(
          v[k:k + group_size].sum(axis=0, dtype=np.float64)
          for k in range(0, len(v), group_size))
      if keep:
        out.user_vectors.setdefault(name, []).append(v[:keep])
    out.num_users += len(batch)
    if progress is not None:
      progress(out.num_users, time.monotonic() - t0)
  return out


def _gather_paths(out: Gathered, batch, pop, s, *, keep_users: int) -> None:
  user, code = hh.path_codes(batch, pop, s)
  distinct, index = np.unique(code, return_inverse=True)
  names = np.asarray(hh.code_strings(distinct, pop, s), object)[index]
  out.group_paths.append(collections.Counter(names.tolist()))
  if keep_users:
    per_user = [[] for _ in range(keep_users)]
    for u, x in zip(user.tolist(), names.tolist()):
      if u < keep_users:
        per_user[u].append(x)
    out.user_paths.extend(per_user)
