"""Committed reference results: the small files of a sweep, copied atomically.

`make reproduce` (and `make mechanisms`, ...) run a sweep and keep its summary, its
figures and each run's `config.json`, `metrics.csv`, `privacy.json` (and `audit.json`,
`evaluation.json`) under
`results/`; checkpoints, TensorBoard logs and per-user files stay behind.
"""

from __future__ import annotations

import os
from typing import Sequence

from fl_analytics.core import rundir
from fl_analytics.reporting import summary

EXPORTED_RUN_FILES = (rundir.CONFIG_FILE, rundir.METRICS_FILE, rundir.PRIVACY_FILE)
# Directories of a committed reference that another target writes (`make
# audit-mechanisms`: results/audit/mechanisms/), carried over when the sweep is exported.
PRESERVED_DIRS = ('mechanisms',)


def export_small_files(src: str, dst: str, *, extra_dirs: Sequence[str] = ()) -> None:
  """Copies what a committed reference keeps: summary (and the equal-utility table where
  there is one), figures, per-run small files.

  The copy is assembled next to `dst` and renamed into place, so an interrupted export
  leaves the previous reference intact.
  """
  import shutil  # pylint: disable=g-import-not-at-top

  tmp = dst.rstrip('/') + '.tmp-export'
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  os.makedirs(tmp)
  shutil.copy2(os.path.join(src, summary.SUMMARY_FILE), tmp)
  if os.path.exists(os.path.join(src, summary.EQUAL_UTILITY_FILE)):
    shutil.copy2(os.path.join(src, summary.EQUAL_UTILITY_FILE), tmp)
  for d in extra_dirs:
    if os.path.isdir(os.path.join(src, d)):
      shutil.copytree(os.path.join(src, d), os.path.join(tmp, d))
  for d in PRESERVED_DIRS:
    if os.path.isdir(os.path.join(dst, d)):
      shutil.copytree(os.path.join(dst, d), os.path.join(tmp, d))
  for run in summary.collect_runs(src):
    os.makedirs(os.path.join(tmp, run.name))
    for name in EXPORTED_RUN_FILES + ((rundir.AUDIT_FILE,) if run.audit else ()) + (
        (rundir.EVALUATION_FILE,) if run.evaluation else ()):
      shutil.copy2(os.path.join(src, run.name, name), os.path.join(tmp, run.name, name))
  if os.path.exists(dst):
    old = dst.rstrip('/') + '.tmp-old'
    os.replace(dst, old)
    os.replace(tmp, dst)
    shutil.rmtree(old)
  else:
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    os.replace(tmp, dst)
