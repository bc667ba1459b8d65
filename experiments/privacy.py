r"""A privacy statement for DP-FedAvg settings, without training (no TensorFlow).

  .venv/bin/python experiments/privacy.py --num_clients=N --clients_per_round=M \
      --noise_multiplier=Z --rounds=T --delta=D [--accountant=rdp|pld] \
      [--sampling=poisson|fixed_size|shuffle] [--mechanism=gaussian|tree] \
      [--target_epsilon=E] [--json]

Calls `fl_analytics.privacy.privacy_statement`, the function `train.py` uses for
privacy.json. With --target_epsilon it calibrates the noise multiplier instead.
"""

import json
import sys

from absl import app
from absl import flags

from fl_analytics import privacy

_N = flags.DEFINE_integer('num_clients', None, 'Users that can be sampled (population).')
_M = flags.DEFINE_float('clients_per_round', None,
                        'Expected (poisson) or exact (fixed_size) cohort.')
_Z = flags.DEFINE_float('noise_multiplier', None, 'Noise stddev / clip.')
_T = flags.DEFINE_integer('rounds', None, 'Rounds.')
_DELTA = flags.DEFINE_float('delta', privacy.DEFAULT_DELTA, 'Delta.')
_ACCOUNTANT = flags.DEFINE_enum('accountant', 'rdp', list(privacy.ACCOUNTANTS),
                                'Accountant.')
_SAMPLING = flags.DEFINE_enum('sampling', 'poisson', list(privacy.SAMPLINGS),
                              'Sampling (shuffle: cyclic passes, with --mechanism=tree).')
_MECHANISM = flags.DEFINE_enum('mechanism', 'gaussian', ['gaussian', 'tree'],
                               'gaussian (fixed or adaptive clipping) or tree (DP-FTRL).')
_TARGET = flags.DEFINE_float('target_epsilon', None,
                             'Calibrate the noise multiplier to this epsilon.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object.')
flags.mark_flags_as_required(['num_clients', 'clients_per_round', 'rounds'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    privacy.check_accounting(accountant=_ACCOUNTANT.value, sampling=_SAMPLING.value,
                             mechanism=_MECHANISM.value)
    if _TARGET.value is not None:
      z = privacy.calibrate_noise_multiplier(
          target_epsilon=_TARGET.value, clients_per_round=_M.value,
          population_size=_N.value, rounds=_T.value, delta=_DELTA.value,
          sampling=_SAMPLING.value, accountant=_ACCOUNTANT.value)
    elif _Z.value is None:
      raise ValueError('Give --noise_multiplier, or --target_epsilon to calibrate it.')
    else:
      z = _Z.value
    statement = privacy.privacy_statement(
        mechanism=_MECHANISM.value, noise_multiplier=z, clients_per_round=_M.value,
        population_size=_N.value, rounds=_T.value, delta=_DELTA.value,
        sampling=_SAMPLING.value, accountant=_ACCOUNTANT.value)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    raise SystemExit(2) from None
  if _JSON.value:
    print(json.dumps({k: statement[k] for k in
                      ('epsilon', 'delta', 'noise_multiplier', 'accountant', 'sampling')}
                     | {'calibrated': _TARGET.value is not None,
                        'neighboring_relation': statement['neighboring_relation'],
                        'unit_of_privacy': statement['unit_of_privacy'],
                        'rounds': statement['rounds'],
                        'clients_per_round': statement['clients_per_round'],
                        'population_size': statement['population_size']}))
    return
  s = statement
  sampling = {
      'poisson': ('Poisson sampling, each user with probability '
                  f"{s['sampling_probability']:.4g} per round"),
      'fixed_size': (f"exactly {s['clients_per_round']:g} users per round, uniformly "
                     'without replacement'),
      'shuffle': (f"cyclic passes of {s.get('rounds_per_pass')} rounds over one shuffle "
                  'of the users, no amplification claimed'),
  }[s['sampling']]
  eps = 'inf' if s['epsilon'] is None else f"{s['epsilon']:.4g}"
  lines = [
      f"Protected: {s['unit_of_privacy']}.",
      f"Neighbouring datasets: {s['neighboring_relation']}.",
      f"Sampling: {sampling}, from {s['population_size']} users.",
      f"Mechanism: {'tree aggregation (DP-FTRL)' if s['mechanism'] == 'tree' else 'Gaussian'}"
      f" noise, noise multiplier {s['noise_multiplier']:.4g}"
      + (' (calibrated to the target)' if _TARGET.value is not None else '')
      + f", {s['rounds']} rounds.",
      f"Guarantee: ({eps}, {s['delta']:g})-DP by the {s['accountant'].upper()} accountant.",
  ]
  if _TARGET.value is not None:
    lines.append(f"Calibrated noise multiplier for epsilon {_TARGET.value:g}: "
                 f"{s['noise_multiplier']:.6g}")
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
