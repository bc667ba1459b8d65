"""jax-privacy's audit statistics on fixed canary scores, as reference values.

Runs in `.venv-oracle` (tools/oracle_venv.sh; `make audit-reference`), never in the
project's environment. Writes results/reference_values/jax_privacy_audit.json: the
canary scores it was given, and `jax_privacy.auditing.CanaryScoreAuditor`'s values on
them at explicit thresholds, which `tests/audit_test.py` compares with
`fl_analytics.privacy.audit`'s own implementations:

- `epsilon_clopper_pearson` (Jagielski, Ullman, Oprea 2020): the epsilon lower bound
  from a Clopper-Pearson lower bound on the true-positive rate and upper bound on the
  false-positive rate at the threshold, each at significance / 2;
- `epsilon_one_run` (Steinke, Nasr, Jagielski 2023, "Privacy auditing with one (1)
  training run"): the epsilon lower bound from the guesses above the threshold and how
  many of them were right;
- `epsilon_from_gdp` (Nasr et al. 2023): the Gaussian-DP lower bound over every
  threshold of the ROC's hull, Bonferroni-corrected (no explicit threshold).

The scores are seeded draws (held-in canaries N(mu, 1), held-out N(0, 1)): the
separations and sizes a canary audit meets, from none to strong.
"""

import json
import os

import numpy as np
from jax_privacy import auditing

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   'results', 'reference_values', 'jax_privacy_audit.json')
# (held-in canaries, held-out canaries, mean separation)
CASES = ((500, 500, 0.0), (500, 500, 1.0), (1000, 1000, 3.0), (100, 1000, 6.0))
QUANTILES = (0.5, 0.9, 0.99)  # thresholds at these quantiles of the held-out scores
SETTINGS = ((0.05, 0.0), (0.05, 1e-5), (0.01, 1e-6))  # (significance, delta)


def main():
  rng = np.random.default_rng(20261204)
  cases = []
  for n_in, n_out, mu in CASES:
    in_scores = np.round(rng.normal(mu, 1.0, n_in), 6)
    out_scores = np.round(rng.normal(0.0, 1.0, n_out), 6)
    auditor = auditing.CanaryScoreAuditor(in_scores, out_scores)
    values = []
    for q in QUANTILES:
      threshold = float(np.quantile(out_scores, q))
      for significance, delta in SETTINGS:
        strategy = auditing.Explicit(threshold)
        values.append({
            'threshold': threshold, 'significance': significance, 'delta': delta,
            'epsilon_clopper_pearson': float(auditor.epsilon_clopper_pearson(
                significance, delta, threshold_strategy=strategy)),
            'epsilon_one_run': (float(auditor.epsilon_one_run(
                significance, delta, threshold_strategy=strategy)) if delta > 0 else None),
        })
    gdp = [{'significance': significance, 'delta': delta,
            'epsilon_from_gdp': float(auditor.epsilon_from_gdp(significance, delta))}
           for significance, delta in SETTINGS if delta > 0]
    cases.append({'mu': mu, 'in_scores': in_scores.tolist(),
                  'out_scores': out_scores.tolist(), 'values': values, 'gdp': gdp})
  with open(OUT, 'w') as f:
    json.dump({'jax_privacy': '2.0.0', 'cases': cases}, f)
  print(f'Wrote {OUT}')


if __name__ == '__main__':
  main()
