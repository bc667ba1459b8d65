r"""A privacy statement for DP-FedAvg settings, without training (no TensorFlow).

  .venv/bin/python experiments/privacy.py --num_clients=N --clients_per_round=M \
      --noise_multiplier=Z --rounds=T --delta=D [--accountant=rdp|pld] \
      [--sampling=poisson|fixed_size|shuffle|min_separation|available] \
      [--max_participations=K --min_separation=B] \
      [--mechanism=gaussian|gaussian_fixed|gaussian_adaptive|tree|distributed] \
      [--clip=C --bits=B --dim=D] [--target_epsilon=E] [--json]

Calls `fl_analytics.privacy.statement.statement`, the function `train.py` uses for privacy.json,
on the same `mechanisms.DpSettings`. With --target_epsilon it calibrates the noise
multiplier instead (`statement.calibrate`). The production schedules
(`--sampling=min_separation` or `available`) claim no amplification: their guarantee
comes from each user's at most --max_participations participations, at least
--min_separation rounds apart, e.g. Gboard's 2022 DP-FTRL setting:

  experiments/privacy.py --mechanism=tree --sampling=min_separation --rounds=2000 \
      --max_participations=6 --min_separation=313 --noise_multiplier=7 \
      --clients_per_round=6500 --num_clients=10000000 --delta=1e-10

prints epsilon 8.9 and rho 0.81. `--mechanism=distributed` (Skellam over secure
aggregation, sampling=fixed_size) also needs the clip, the bit width and the number of
model parameters: its scaled parameters come from TFF's own construction
(`mechanisms.distributed.parameters`), so only this mechanism loads TensorFlow.
"""

import dataclasses

import json

from absl import flags

from fl_analytics.core import cli
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import statement
from fl_analytics.privacy import sampling as sampling_lib

_N = flags.DEFINE_integer('num_clients', None, 'Users that can be sampled (population).')
_M = flags.DEFINE_float('clients_per_round', None,
                        'Expected (poisson) or exact (fixed_size) cohort.')
_Z = flags.DEFINE_float('noise_multiplier', None, 'Noise stddev / clip.')
_T = flags.DEFINE_integer('rounds', None, 'Rounds.')
_DELTA = flags.DEFINE_float('delta', statement.DEFAULT_DELTA, 'Delta.')
_ACCOUNTANT = flags.DEFINE_enum('accountant', 'rdp', list(statement.ACCOUNTANTS),
                                'Accountant.')
_SAMPLING = flags.DEFINE_enum('sampling', 'poisson', list(statement.SAMPLINGS),
                              'Sampling (shuffle: cyclic passes, with --mechanism=tree).')
# The private values of dp.mechanism (fl_analytics.privacy.mechanisms), and `gaussian` for the
# fixed and adaptive pair, which the same events account for (as gaussian_fixed).
_GAUSSIAN = 'gaussian_fixed'
_MECHANISM = flags.DEFINE_enum(
    'mechanism', 'gaussian', ['gaussian', *mechanisms.names(private=True)],
    'gaussian (gaussian_fixed or gaussian_adaptive), tree (DP-FTRL) or distributed '
    '(Skellam): the values of dp.mechanism.')
_K = flags.DEFINE_integer(
    'max_participations', None, 'min_separation, available: at most this many '
    'participations per user (default: as many as --min_separation allows).')
_B = flags.DEFINE_integer('min_separation', 1, 'min_separation, available: two '
                          'participations of a user at least this many rounds apart.')
_CLIP = flags.DEFINE_float('clip', 0.2, 'distributed: the L2 clip (dp.clip).')
# Every mechanism's own keys (`Mechanism.config`), as flags of the same names.
_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}
_OWN = [_DEFINE[type(k.default)](k.name, k.default, k.doc) for k in mechanisms.config_keys()]
_DIM = flags.DEFINE_integer('dim', None, 'distributed: number of model parameters '
                            '(577 for the default churn model).')
_TARGET = flags.DEFINE_float('target_epsilon', None,
                             'Calibrate the noise multiplier to this epsilon.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object.')
flags.mark_flags_as_required(['num_clients', 'clients_per_round', 'rounds'])


# What a production schedule's statement adds (its bounds; zCDP rho for one tree).
_SCHEDULE_FIELDS = ('max_participations', 'min_separation', 'zcdp_rho',
                    'strategy_sensitivity', 'strategy_max_error')


def _mechanism() -> str:
  return _GAUSSIAN if _MECHANISM.value == 'gaussian' else _MECHANISM.value


def _settings(z: float) -> mechanisms.DpSettings:
  """The flags as the settings `train.py` resolves from a config."""
  name = _mechanism()
  num_parameters = None
  if mechanisms.get(name).needs_num_parameters:
    if _DIM.value is None or _DIM.value < 1:
      raise ValueError(f'--mechanism={name} needs --dim, the number of model '
                       'parameters (577 for the default churn model).')
    if int(_M.value) != _M.value:
      raise ValueError(f'--clients_per_round must be a whole number for '
                       f'--mechanism={name}. Found {_M.value}.')
    num_parameters = _DIM.value
  participation = sampling_lib.Participation(max_participations=_K.value,
                                             min_separation=_B.value)
  participation.check(prefix='--')
  return mechanisms.settings(
      mechanism=name, noise_multiplier=z, clip=_CLIP.value, clients_per_round=_M.value,
      population_size=_N.value, sampling=_SAMPLING.value, accountant=_ACCOUNTANT.value,
      delta=_DELTA.value, num_parameters=num_parameters, participation=participation,
      **{flag.name: flag.value for flag in _OWN})


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  # The validation train.py applies to dp.* (one function for both).
  statement.check_budget(
      delta=_DELTA.value, population_size=_N.value, target_epsilon=_TARGET.value,
      noise_multiplier=_Z.value if _TARGET.value is None else None, prefix='--')
  statement.check_accounting(accountant=_ACCOUNTANT.value, sampling=_SAMPLING.value,
                         mechanism=_mechanism())
  if _TARGET.value is None and _Z.value is None:
    raise ValueError('Give --noise_multiplier, or --target_epsilon to calibrate it.')
  settings = _settings(1.0 if _Z.value is None else _Z.value)
  m = mechanisms.get(settings.mechanism)
  if _TARGET.value is not None:
    settings = dataclasses.replace(settings, noise_multiplier=statement.calibrate(
        settings, rounds=_T.value, target_epsilon=_TARGET.value))
  privacy_statement = statement.statement(m.resolve(settings), _T.value)
  if _JSON.value:
    print(json.dumps({k: privacy_statement[k] for k in
                      ('epsilon', 'delta', 'noise_multiplier', 'accountant', 'sampling')}
                     | {'calibrated': _TARGET.value is not None,
                        'neighboring_relation': privacy_statement['neighboring_relation'],
                        'unit_of_privacy': privacy_statement['unit_of_privacy'],
                        'rounds': privacy_statement['rounds'],
                        'clients_per_round': privacy_statement['clients_per_round'],
                        'population_size': privacy_statement['population_size']}
                     | {k: privacy_statement[k] for k in _SCHEDULE_FIELDS
                        if k in privacy_statement}))
    return
  s = privacy_statement
  sampling = sampling_lib.get(s['sampling']).description.format(**s)
  eps = 'inf' if s['epsilon'] is None else f"{s['epsilon']:.4g}"
  lines = [
      f"Protected: {s['unit_of_privacy']}.",
      f"Neighbouring datasets: {s['neighboring_relation']}.",
      f"Sampling: {sampling}, from {s['population_size']} users.",
      f"Mechanism: {mechanisms.get(s['mechanism']).noise}"
      f", noise multiplier {s['noise_multiplier']:.4g}"
      + (' (calibrated to the target)' if _TARGET.value is not None else '')
      + f", {s['rounds']} rounds.",
      f"Guarantee: ({eps}, {s['delta']:g})-DP by the {s['accountant'].upper()} accountant"
      + (f" (from {s['zcdp_rho']:.4g}-zCDP)." if 'zcdp_rho' in s else '.'),
  ]
  if 'strategy_sensitivity' in s:  # a matrix mechanism: what its noise multiplier means
    lines.insert(-1, f"Strategy: optimized for {s['accounted_rounds']} rounds, "
                     f"{s['max_participations']} participations {s['min_separation']} "
                     f"apart; sensitivity {s['strategy_sensitivity']:.4g} (the noise "
                     "stddev is noise multiplier x clip x sensitivity).")
  if _TARGET.value is not None:
    lines.append(f"Calibrated noise multiplier for epsilon {_TARGET.value:g}: "
                 f"{s['noise_multiplier']:.6g}")
  print('\n'.join(lines))


if __name__ == '__main__':
  cli.run(main, known=(ValueError,))  # every input is a flag: statement's checks
