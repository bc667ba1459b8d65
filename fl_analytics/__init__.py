"""fl-analytics: privacy-preserving user analytics with federated learning on TFF.

Importing the package has no side effects and does not import TensorFlow or TFF;
the modules that train (`fl_analytics.training`, `fl_analytics.models`,
`fl_analytics.aggregators`, `fl_analytics.runtime`) import them when they are used.
"""

__version__ = '0.1.0'
