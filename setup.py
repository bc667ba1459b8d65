"""fl-analytics: privacy-preserving user analytics with federated learning on TFF.

The pinned dependencies live in requirements.txt, which the Makefile installs: TFF 0.87.0
pins jaxlib==0.4.14, which the package registry does not serve, so TFF's other pins are
installed explicitly (with jax/jaxlib 0.4.13) and TFF itself with --no-deps.
"""

import setuptools

setuptools.setup(
    name='fl-analytics',
    version='0.1.0',
    description='Privacy-preserving user analytics with federated learning (TFF).',
    packages=setuptools.find_packages(include=['fl_analytics', 'fl_analytics.*', 'benchmarks']),
    # Tree aggregation's precomputed sensitivities (tools/tree_sensitivity.py).
    package_data={'fl_analytics.privacy': ['tree_sensitivity.json']},
    python_requires='>=3.9,<3.12',
    install_requires=[
        'absl-py',
        'cryptography==50.0.2',
        'dp-accounting==0.4.3',
        'matplotlib',
        'ml-collections',
        'numpy',
        'tensorflow==2.14.*',
        'tensorflow-federated==0.87.0',
        'tensorflow-privacy==0.9.0',
    ],
)
