r"""The white-box audit of every registered mechanism and of the sabotaged ones.

  .venv/bin/python experiments/audit_mechanisms.py --config=configs/audit_mechanisms.py \
      --output=results/audit/mechanisms

Writes OUTPUT/mechanisms.json (each audit's checks, epsilon estimate and verdict) and
OUTPUT/mechanisms.png (fl_analytics/privacy/mechanism_audit.py, docs/audit.md).
"""

import os

from absl import flags
from ml_collections import config_flags

from fl_analytics.core import cli
from fl_analytics.core import rundir
from fl_analytics.privacy import mechanism_audit
from fl_analytics.reporting import plots

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/audit_mechanisms.py',
                                          'The audits.')
_OUTPUT = flags.DEFINE_string('output', 'results/audit/mechanisms',
                              'Directory of mechanisms.json and mechanisms.png.')


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  rundir.check_writable_directory(_OUTPUT.value, '--output')
  os.makedirs(_OUTPUT.value, exist_ok=True)
  results = mechanism_audit.audit_suite(_CONFIG.value,
                                        log=lambda line: print(line, flush=True))
  rundir.write_json(os.path.join(_OUTPUT.value, 'mechanisms.json'), results)
  for path in plots.mechanism_audit(results, _OUTPUT.value):
    print(f'wrote {path}')


if __name__ == '__main__':
  cli.run(main, known=(rundir.RunDirectoryError,))
