r"""How the canary statistics of `fl_analytics.privacy.audit` behave on simulated releases.

  .venv/bin/python experiments/audit_simulation.py [--dim=5000] [--canaries=500] \
      [--seeds=40] [--noise=1,2,4]

Each run is one Gaussian release of the sum of K unit canaries plus N(0, z**2) noise
per coordinate: the Gaussian mechanism of sensitivity 1 from one canary's view. For
each z: the RDP claim, the exact epsilon of the Gaussian mechanism, and over the
seeds the estimate (median and range), how often the bootstrap interval's lower end is
above the claim, and the largest lower bound and how often it is above the exact
epsilon. No TensorFlow.
"""

from absl import flags
import dp_accounting
import numpy as np

from fl_analytics.privacy import audit
from fl_analytics.core import cli

_DIM = flags.DEFINE_integer('dim', 5000, 'Dimensions.', lower_bound=2)
_CANARIES = flags.DEFINE_integer('canaries', 500, 'Seen (and unseen) canaries.',
                                 lower_bound=2)
_SEEDS = flags.DEFINE_integer('seeds', 40, 'Runs per noise level.', lower_bound=1)
_NOISE = flags.DEFINE_list('noise', ['1', '2', '4'], 'Noise multipliers z.')
_DELTA = flags.DEFINE_float('delta', 1e-5, 'Delta.')


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  d, k, delta = _DIM.value, _CANARIES.value, _DELTA.value
  print(f'{d} dimensions, {k} canaries, delta {delta:g}, {_SEEDS.value} seeds')
  print('    z  RDP claim  exact  estimate median [range]  interval above claim  '
        'lower bound max  above exact')
  for z in (float(v) for v in _NOISE.value):
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(z))
    claim, exact = accountant.get_epsilon(delta), audit.gdp_epsilon(1 / z, delta)
    runs = []
    for seed in range(_SEEDS.value):
      directions = audit.canary_directions(2 * k, d, seed=seed)
      update = (directions[:k].sum(axis=0)
                + z * np.random.default_rng([seed, 1]).standard_normal(d))
      runs.append(audit.estimate(audit.cosines(directions[:k], update),
                                 audit.cosines(directions[k:], update), dim=d,
                                 delta=delta))
    est = np.array([r.epsilon for r in runs])
    low = np.array([r.lower_bound for r in runs])
    above = np.mean([r.interval[0] > claim for r in runs])
    print(f'{z:5g}  {claim:9.2f}  {exact:5.2f}  {np.median(est):8.2f} '
          f'[{est.min():.2f}, {est.max():.2f}]  {above:20.0%}  {low.max():15.2f}  '
          f'{np.mean(low > exact):11.0%}')


if __name__ == '__main__':
  cli.run(main)
