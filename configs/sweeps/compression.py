"""Communication against utility: uniform quantization of the updates
(`compression.bits`) for the non-private reference and fixed clipping at two budgets,
on the default churn config (float32, 8, 4 and 2 bits; two seeds; 20 runs of 40 rounds).

Fixed clipping is not run at 2 bits: quantization can grow a clipped update 11.7-fold
there, so the calibrated noise multiplier is 8 to 16, and training diverged (train loss
above ten times chance) in three of its four runs (measured 2026-11-29).

Run: `make compression` (sweep, plots including `communication`, and export of the
small files to results/compression). Fixed clipping accounts for the quantization
(`privacy.compression_sensitivity_factor`): at fewer bits the same budget buys less
noise reduction, so the calibrated noise multiplier rises.
"""

import ml_collections

BITS = (0, 8, 4, 2)
BUDGETS = (2.0, 8.0)
# Bit widths at which DP training diverges (see above).
DP_DIVERGES = (2,)


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/churn.py'
  c.base_overrides = {'num_rounds': 40, 'eval_every': 5}
  c.settings = [{'dp.mechanism': 'none', 'compression.bits': bits} for bits in BITS] + [
      {'dp.mechanism': 'gaussian_fixed', 'dp.target_epsilon': eps, 'compression.bits': bits}
      for eps in BUDGETS for bits in BITS if bits not in DP_DIVERGES]
  c.seeds = [0, 1]
  return c
