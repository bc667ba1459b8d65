"""``banded``: banded matrix factorization DP-FTRL (Choquette-Choo et al. 2023,
"(Amplified) banded matrix factorization"), with a banded Toeplitz strategy (McKenna
2024, "Scaling up the banded matrix factorization mechanism").

The strategy C has `dp.bands` coefficients (0: the schedule's `min_separation`, capped
at the rounds), optimized for the run's rounds, k and b
(`matrix_factorization.optimize_banded`); the noise generator keeps the last
`bands - 1` noise vectors, bounded memory for any number of rounds. With bands <= b,
a user's participations touch disjoint bands. Accounted as one Gaussian mechanism
(`mechanisms.matrix`), on the production schedules only.
"""

from __future__ import annotations

from fl_analytics.privacy import matrix_factorization as mf
from fl_analytics.privacy.mechanisms import base
from fl_analytics.privacy.mechanisms import matrix

BANDS = base.ConfigKey(
    'bands', 0, 'banded: nonzero Toeplitz coefficients of the strategy (0: '
    'participation.min_separation, at most num_rounds); its noise keeps bands - 1 '
    'noise vectors.')


def _check(settings: base.DpSettings) -> None:
  bands = settings.param(BANDS)
  if isinstance(bands, bool) or int(bands) != bands or bands < 0:
    raise ValueError(f'dp.bands must be an integer >= 0 (0: min_separation). Found {bands!r}.')


def _optimizer(settings):
  """optimize(n, k, b) with the settings' bands (`mf.optimize_banded` caches)."""
  # 0 bands: b of them (optimize_banded keeps them within [1, n]).
  return lambda n, k, b: mf.optimize_banded(n, int(settings.param(BANDS)) or b, b, k)


MECHANISM = matrix.mechanism(
    name='banded', label='banded MF', title='banded matrix factorization DP-FTRL',
    optimizer=_optimizer, check=_check, config=(BANDS,),
    noise='correlated noise of a banded Toeplitz factorization',
    color='tab:purple', marker='D', linestyle='-.')
