"""A round's client groups on Ray actors (`runtime.ray_address`): one run across machines.

The round stays the one `fl_analytics.engines.mrf_runner` runs from TFF's MapReduceForm: the
driver (the `train.py` process) runs `prepare`, the aggregation's `zero`, the merge of
the groups' accumulators in group order, `report`, the secure sums and `update`. What
moves is the clients' work: the cohort's fixed groups (client k of a round in group
k % `runtime.client_groups`, as on one machine) each run on a Ray actor, through the
same code (`MapReduceRunner.accumulate_group` for ``mapreduce``, the stacked local
training of `VectorizedRunner` for ``vectorized``). So a run on a cluster gives the
same metrics as the same run on one machine with the same `client_groups`
(`tests/ray_test.py`).

Each actor builds what it needs where it runs, once: the TFF process from the run's
config and resolved DP settings, and the population (the run layer's `client_work`,
`fl_analytics.runs.training.client_work`: `task.build_data`, the pure function of config, seed and user of the synthetic
generator, or the event store at the same path on every node). A round sends each
actor the broadcast (the model, put once in Ray's object store) and its clients' user
indices and step caps; the actor makes those users' examples itself. Only audit
canaries, a few tiny arrays, travel as data.

An actor lost mid-round (its process or its node) is restarted by Ray and the call is
retried (`max_restarts`, `max_task_retries`): its part of the round is a pure function
of what the call carries, so the retried round gives the same result.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from absl import logging
import numpy as np

from fl_analytics.cluster import ray_cluster
from fl_analytics.core import runtime

# Restarts of a lost actor (and retries of the call it was running).
MAX_RESTARTS = 3


class ClientGroupActor:
  """One client group's work, on whichever node Ray placed it.

  `client_work(config, settings)`: `(population, process, dataset_fn)`, built here;
  `make_runner`: the engine's runner factory (`MapReduceEngine.make_runner`)."""

  def __init__(self, client_work: Callable, make_runner: Callable, config, settings):
    t0 = time.monotonic()
    self._data, process, dataset_fn = client_work(config, settings)
    self._runner = make_runner(process, dataset_fn, config, groups=1)
    self.startup_seconds = time.monotonic() - t0

  def ready(self) -> float:
    """Seconds this actor took to build its process and population."""
    return self.startup_seconds

  def accumulate(self, shared, clients: Sequence[tuple], upcoming: Sequence[int] = ()):
    """`accumulate_group` over `clients` (`(user, x, y, max_steps)`; x None: made here).

    `upcoming`: this group's users of the next round, made in the background while
    this round trains (`FederatedData.prefetch`, as the driver does on one machine)."""
    broadcast, acc, secure_params = shared
    users = [c[0] for c in clients if c[1] is None]
    made = iter(self._data.train_examples_many(users) if users else ())
    data = [(*next(made), steps) if x is None else (x, y, steps)
            for _, x, y, steps in clients]
    if len(upcoming):
      self._data.prefetch(upcoming)
    return self._runner.accumulate_group(broadcast, acc, secure_params, data, 0)


class ActorGroups:
  """A runner's `group_executor`: group g of every round on actor g."""

  def __init__(self, address: str, config, settings, *, client_work: Callable,
               make_runner: Callable, groups: int, cpus_per_group: int = 1):
    self._ray = ray = ray_cluster.connect(address)
    self._actors = []
    try:
      ray_cluster.check_cpus(ray, address, groups * cpus_per_group,
                             f'runtime.client_groups={groups} actors of '
                             f'runtime.ray_cpus_per_group={cpus_per_group} CPUs')
    except ray_cluster.ClusterError:
      ray.shutdown()
      raise
    actor_class = ray.remote(
        num_cpus=cpus_per_group, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS,
        runtime_env={'env_vars': runtime.thread_env(cpus_per_group)},
    )(ClientGroupActor)
    t0 = time.monotonic()
    self._upcoming = None
    self._actors = [actor_class.remote(client_work, make_runner, config, settings)
                    for _ in range(groups)]
    try:
      started = ray.get([a.ready.remote() for a in self._actors])
    except Exception:
      self.close()
      raise
    self.startup_seconds = time.monotonic() - t0
    logging.info('Ray: %d client groups on actors of %s, started in %.1f s (each built '
                 'its process and population in %.1f-%.1f s).', groups, address,
                 self.startup_seconds, min(started), max(started))

  def __call__(self, broadcast, acc, secure_params, groups) -> list:
    shared = self._ray.put((list(broadcast), list(acc), secure_params))
    upcoming, self._upcoming = self._upcoming or [[]] * len(self._actors), None
    refs = [actor.accumulate.remote(shared, [_as_tuple(c) for c in clients],
                                    np.asarray(users, np.int64))
            for actor, clients, users in zip(self._actors, groups, upcoming)]
    return [(list(a), s) for a, s in self._ray.get(refs)]

  def prefetch(self, groups: Sequence[Sequence[int]]) -> None:
    """Each group's users of the next round, sent with this round's call."""
    self._upcoming = groups

  def close(self) -> None:
    for actor in self._actors:
      try:
        self._ray.kill(actor)
      except Exception:  # pylint: disable=broad-except
        pass
    self._actors = []
    self._ray.shutdown()


def _as_tuple(client) -> tuple:
  return (client.user, client.x, client.y, client.max_steps)
