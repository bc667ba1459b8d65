"""The behaviour models of the synthetic population (`data.generator`), and the registry.

* ``archetypes`` (`fl_analytics.data.synthetic`, version 1): four archetypes; each
  session is `app_open` then actions drawn independently from the user's mix of 10
  event types. The committed results of before the second generator use it.
* ``app_paths`` (`fl_analytics.data.app_paths`, version 3): sessions are paths
  through an app of 59 actions (funnels, abandonment, entries and exits), users with
  their own transition tendencies, staggered installs, feature adoption, daily and
  weekly rhythm, trial abandonment and a quit hazard that rises as activity falls;
  calibrated to published app-usage statistics (`data.calibration`).

A generator also fixes the vocabulary of actions: the tasks' inputs and outputs, the
analytics' features, and the names an event file (`data.source=events:PATH`) is read
against, and may add churn features of its own (`churn_extras`). Adding one: a module
with `VOCABULARY`, `VERSION` and `generate_users` of the signature below, and one entry
in `REGISTRY`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from fl_analytics.data import app_paths
from fl_analytics.data import features
from fl_analytics.data import synthetic


@dataclasses.dataclass(frozen=True)
class Generator:
  name: str
  version: int  # part of a run's data fingerprint: a change of any log takes a new one
  vocabulary: tuple[str, ...]  # the action names; a log's events index into it
  # (indices, *, seed, num_days, quantity_skew, label_skew, feature_skew) -> LogBatch;
  # user u's log a function of (u, seed, knobs) only.
  generate_users: Callable[..., synthetic.LogBatch]
  # Churn features beyond counts and summaries (`features.ChurnExtras`), by name:
  # funnels (start, end), key actions whose recency counts, and the user's tenure.
  churn_funnels: tuple[tuple[str, str], ...] = ()
  churn_key_actions: tuple[str, ...] = ()
  churn_tenure: bool = False


REGISTRY: dict[str, Generator] = {g.name: g for g in (
    Generator('archetypes', synthetic.GENERATOR_VERSION, synthetic.EVENT_VOCAB,
              synthetic.generate_users),
    Generator(app_paths.NAME, app_paths.VERSION, app_paths.VOCABULARY,
              app_paths.generate_users, app_paths.CHURN_FUNNELS,
              app_paths.CHURN_KEY_ACTIONS, churn_tenure=True),
)}
# The generator of configs and runs from before `data.generator`.
DEFAULT = 'archetypes'


def get(name: str) -> Generator:
  if name not in REGISTRY:
    raise ValueError(f'data.generator must be one of {", ".join(REGISTRY)}. '
                     f'Found {name!r}.')
  return REGISTRY[name]


def of(data) -> Generator:
  """The generator of config section `data` (DEFAULT when it has no `generator`)."""
  return get(data.get('generator', DEFAULT))


def vocabulary(data) -> tuple[str, ...]:
  """The action names of config section `data`'s logs."""
  return of(data).vocabulary


def churn_extras(data) -> features.ChurnExtras:
  """The churn features config section `data`'s behaviour model adds, as indices."""
  g = of(data)
  index = {a: i for i, a in enumerate(g.vocabulary)}
  return features.ChurnExtras(
      tuple((index[a], index[b]) for a, b in g.churn_funnels),
      tuple(index[a] for a in g.churn_key_actions), g.churn_tenure)
