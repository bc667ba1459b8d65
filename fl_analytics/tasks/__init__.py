"""The learning tasks (`task` in the config): one module each, and the registry.

* ``churn`` (`tasks/churn.py`): will a user be inactive for the next
  `data.horizon_days` days; an MLP on 16 features of the trailing window.
* ``next_action`` (`tasks/next_action.py`): a user's next action in a session from the
  actions before it; an embedding, a causal convolution and a dense layer.

Each module defines one `base.Task`, which owns everything that varies with what is
learnt (see `fl_analytics.tasks.base`). Everything else (federated averaging, the DP
aggregators, sampling, accounting, the run directory) is the same for every task:
`fl_analytics.runs.training` asks the task only for what differs, and summaries,
reports and plots look the task up by the name a run recorded (`for_run`), never by
which columns happen to be filled.

Adding a task: a module here defining `TASK`, and one entry in `REGISTRY`
(docs/extending.md). This package imports neither TensorFlow nor TFF.
"""

from __future__ import annotations

from fl_analytics.tasks import churn
from fl_analytics.tasks import next_action
from fl_analytics.tasks.base import Metric
from fl_analytics.tasks.base import Task

REGISTRY: dict[str, Task] = {m.TASK.name: m.TASK for m in (churn, next_action)}
# The task of runs recorded before config.json had a `task` key.
DEFAULT = 'churn'
# metrics.csv's eval columns: every task's, in a fixed order (one file format).
EVAL_COLUMNS = tuple(dict.fromkeys(c for t in REGISTRY.values() for c in t.eval_columns))


def get(name: str) -> Task:
  if name not in REGISTRY:
    raise ValueError(f'task must be one of {", ".join(REGISTRY)}. Found {name!r}.')
  return REGISTRY[name]


def for_run(config: dict) -> Task:
  """The task of a recorded run (its config.json; runs from before `task`: DEFAULT)."""
  return get(config.get('task', DEFAULT))


def names(**capabilities) -> tuple[str, ...]:
  """The tasks with every given capability, e.g. `names(calibrates=True)`."""
  return tuple(t.name for t in REGISTRY.values()
               if all(getattr(t, k) == v for k, v in capabilities.items()))


__all__ = ['DEFAULT', 'EVAL_COLUMNS', 'Metric', 'REGISTRY', 'Task', 'for_run', 'get',
           'names']
