"""Benchmarks of fl-analytics: what `experiments/benchmark.py` (`make bench`, `make bench-scale`,
`make bench-ray`) measures. Not part of the library: nothing under `fl_analytics/` imports it."""
