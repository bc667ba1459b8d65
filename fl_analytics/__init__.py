"""fl-analytics: privacy-preserving user analytics with federated learning on TFF.

Importing the package has no side effects and does not import TensorFlow or TFF;
the modules that train (`fl_analytics.runs.training`, `fl_analytics.tasks.models`,
`fl_analytics.privacy.aggregators`, `fl_analytics.core.runtime`) import them when they are used.
"""

__version__ = '0.1.0'
