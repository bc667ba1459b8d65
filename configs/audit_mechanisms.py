"""The white-box mechanism audit (`make audit-mechanisms`, fl_analytics/privacy/mechanism_audit.py).

Run:
  .venv/bin/python experiments/audit_mechanisms.py --config=configs/audit_mechanisms.py \
      --output=results/audit/mechanisms
Every registered mechanism with noise is audited at noise multiplier 1 and clip 1:
`audits` lists each one's rounds (a canary in every round) and trials, with its own
`dp.*` keys, secure sum or compression where they matter; `faults` are the broken aggregators of
fl_analytics/privacy/sabotage.py, audited against gaussian_fixed's claim, and the
sampler that samples ten times the rate the accountant is told.
"""

import ml_collections


def _audit(mechanism: str, rounds: int, trials: int, **params) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({'mechanism': mechanism, 'rounds': rounds,
                                    'trials': trials, 'params': params})


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # the canaries' presence and the users' updates; the noise is the OS's
  c.noise_multiplier = 1.0
  c.clip = 1.0
  c.delta = 1e-5
  c.alpha = 0.05  # confidence 1 - alpha of the interval and the lower bound
  c.dim = 1000  # canaries (trials) per batch: one per coordinate
  c.users = 20  # background users in every round
  # The sampling check: each scheme's cohorts of clients_per_round in population_size
  # over sampling_rounds rounds.
  c.population_size = 10_000
  c.clients_per_round = 100
  c.sampling_rounds = 200
  # One round at 2 x 10^5 trials: the tightness of the Gaussian mechanisms; then every
  # mechanism over 4 rounds, the correlated ones with a strategy for 4 rounds.
  c.audits = [
      _audit('gaussian_fixed', 1, 200_000),
      _audit('gaussian_adaptive', 1, 200_000),
      _audit('gaussian_fixed', 4, 20_000),
      # Its sum inside TFF's 32-bit secure sum, or quantized to 8 bits (the accountant
      # divides the noise multiplier by each one's sensitivity factor).
      _audit('gaussian_fixed', 1, 20_000, secure_sum=True),
      _audit('gaussian_fixed', 1, 20_000, compression_bits=8, compression_threshold=0),
      _audit('tree', 4, 20_000),
      _audit('banded', 4, 20_000, bands=4),
      _audit('blt', 4, 20_000),
      _audit('distributed', 1, 20_000),
  ]
  c.fault_rounds = 2
  c.fault_trials = 10_000
  return c
