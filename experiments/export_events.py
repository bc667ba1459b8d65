r"""Writes a population's event logs as an event file (CSV or Parquet, by suffix).

  .venv/bin/python experiments/export_events.py --config=configs/churn.py \
      --output=events.csv [--config.data.num_users=200 ...]

The synthetic population of the config (or, with data.source=events:PATH, that file's
users, normalized) in the format `data.source=events:PATH` reads (docs/data.md): user_id, timestamp (ISO 8601, UTC), event, and
archetype (ignored when read).
Reading the file back gives every user's log exactly; users without any event cannot
appear in an event file, so the held-out split of the file's users can differ from
that of the synthetic population.
"""

from absl import flags
from ml_collections import config_flags

from fl_analytics.core import cli
from fl_analytics.data import clients
from fl_analytics.data import events
from fl_analytics.data import generators

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.')
_OUTPUT = flags.DEFINE_string('output', None, 'Event file to write (.csv or .parquet).')
flags.mark_flags_as_required(['config', 'output'])


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  data = _CONFIG.value.data
  clients.check_data_config(data)
  logs, _, _, note = clients.load_logs(data, seed=data.seed)
  count = events.write_events(logs, _OUTPUT.value, generators.vocabulary(data))
  active = sum(1 for log in logs if len(log.events))
  print(f'{_OUTPUT.value}: {count} events of the {active} users with any event, of '
        f'{len(logs)} ({note}).')


if __name__ == '__main__':
  cli.run(main, known=(ValueError,))  # the data config's and the event file's checks
