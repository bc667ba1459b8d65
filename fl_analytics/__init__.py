"""fl-analytics: privacy-preserving user analytics with federated learning on TFF.

The subpackages are layers, lowest first: `core` (run-directory files, configs,
processes), `data` and `cluster`, `tasks`, `privacy`, `engines` and `analytics`,
`reporting`, `runs`, `sweeps` and `export`. A module imports only its own package and
lower layers (docs/architecture.md; `tests/layers_test.py` checks it).

Importing the package has no side effects and does not import TensorFlow or TFF; the
modules that train (`fl_analytics.runs.training`, `fl_analytics.tasks.models`,
`fl_analytics.privacy.aggregators`, `fl_analytics.core.runtime`) import them when they
are used.
"""

__version__ = '0.1.0'
