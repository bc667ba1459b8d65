"""``blt``: BLT-DP-FTRL, buffered linear Toeplitz matrix factorization (Dvijotham,
McMahan, Pillutla, Steinke, Thakurta 2024, "Efficient and near-optimal noise generation
for streaming differential privacy"; several participations: McMahan et al. 2024,
arXiv 2408.08868, "A hassle-free algorithm for private learning in practice: don't use
tree aggregation, use BLTs"), the mechanism of Gboard's production models.

The strategy C is a BLT with a few buffers (at most `dp.max_buffers`), its parameters
optimized for the run's rounds, k and b (`matrix_factorization.optimize_blt`); the
noise generator keeps one model-sized buffer per buffer, O(buffers x model size)
memory for any number of rounds. Accounted as one Gaussian mechanism
(`mechanisms.matrix`), on the production schedules only.
"""

from __future__ import annotations

from fl_analytics.privacy import matrix_factorization as mf
from fl_analytics.privacy.mechanisms import base
from fl_analytics.privacy.mechanisms import matrix

MAX_BUFFERS = base.ConfigKey(
    'max_buffers', 6, 'blt: the most buffers of the strategy (1..10); more are tried '
    'while one lowers the loss by more than 1%.')


def _check(settings: base.DpSettings) -> None:
  buffers = settings.param(MAX_BUFFERS)
  if isinstance(buffers, bool) or int(buffers) != buffers or not 1 <= buffers <= 10:
    raise ValueError(f'dp.max_buffers must be an integer in [1, 10]. Found {buffers!r}.')


def _optimizer(settings):
  """optimize(n, k, b) with the settings' buffers (`mf.optimize_blt` caches)."""
  return lambda n, k, b: mf.optimize_blt(n, b, k,
                                         max_buffers=int(settings.param(MAX_BUFFERS)))


MECHANISM = matrix.mechanism(
    name='blt', label='BLT', title='BLT-DP-FTRL (buffered linear Toeplitz)',
    optimizer=_optimizer, check=_check, config=(MAX_BUFFERS,),
    noise='correlated noise of a buffered linear Toeplitz (BLT) factorization',
    color='tab:brown', marker='P', linestyle='-')
