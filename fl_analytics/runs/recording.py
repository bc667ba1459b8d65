"""Recording a round: one call writes what a completed round leaves in its run directory.

`RunRecorder.record` writes, in this order, the metrics table (every row so far), the
checkpoint of the server state (which makes the round count as completed when the run
resumes, so it comes after the metrics it covers; it is sealed with the metrics
table's digest, so a table from elsewhere is not resumed with it), the privacy statement, the
TensorBoard scalars, and the progress line. `RunRecorder.finish` writes what the final
evaluation leaves: `audit.json` (runs with audit canaries), the reliability diagram (`fl_analytics.reporting.plots.calibration`) and then
`evaluation.json`, last, so a run whose figure failed is not taken as evaluated; it
records the digest of every file of the finished run, so that a file replaced later
(another run's, an edited one) makes the run unfinished again. Every
file is written atomically (`fl_analytics.core.rundir`). The training loop computes; this
module writes (and is the one that imports the plotting).
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Sequence

from absl import logging
import tensorflow as tf

from fl_analytics.core import rundir


class RunRecorder:
  """The per-round files of one run directory; a context manager (TensorBoard writer)."""

  def __init__(self, workdir: str, *, columns: Sequence[str], rows: list[dict],
               num_rounds: int, show_reported: bool = False,
               seal: Optional[dict[str, str]] = None):
    """`rows`: the metrics rows of the rounds already completed (a resumed run);
    `seal`: digests every checkpoint carries besides its metrics rows' (the secret
    seed's)."""
    self._workdir = workdir
    self._seal = dict(seal or {})
    self._columns = tuple(columns)
    self.rows = list(rows)
    self._num_rounds = num_rounds
    self._show_reported = show_reported
    self._summary_writer = None

  def __enter__(self):
    self._summary_writer = tf.summary.create_file_writer(
        os.path.join(self._workdir, rundir.TENSORBOARD_DIR))
    return self

  def __exit__(self, *exc):
    self._summary_writer.close()

  def _path(self, name: str) -> str:
    return os.path.join(self._workdir, name)

  def start(self, statement: dict[str, Any]) -> None:
    """A new run: the contract's files exist from the start (no rounds yet)."""
    rundir.write_csv(self._path(rundir.METRICS_FILE), self._columns, [])
    rundir.write_json(self._path(rundir.PRIVACY_FILE), statement)

  def resume(self, statement: dict[str, Any]) -> None:
    """A resumed run: the statement of its checkpoint's round, written again. A kill
    between a round's checkpoint and its statement leaves the file a round behind, and
    the checkpoint is what counts."""
    rundir.write_json(self._path(rundir.PRIVACY_FILE), statement)

  def record(self, row: dict[str, Any], state_leaves: Sequence[Any],
             statement: dict[str, Any]) -> None:
    """Writes completed round `row['round']`: metrics, checkpoint, privacy, TensorBoard,
    and one progress line."""
    round_num = row['round']
    self.rows.append(row)
    metrics = rundir.write_csv(self._path(rundir.METRICS_FILE), self._columns, self.rows)
    rundir.save_checkpoint(self._workdir, round_num, state_leaves,
                           seal={**self._seal, 'metrics': metrics})
    rundir.write_json(self._path(rundir.PRIVACY_FILE), statement)
    with self._summary_writer.as_default(step=round_num):
      for key, value in row.items():
        if key != 'round' and value is not None and math.isfinite(float(value)):
          tf.summary.scalar(key, float(value))
    self._summary_writer.flush()
    logging.info(
        'round %d/%d  eps %s  cohort %d%s  train_loss %s  eval_acc %s  eval_auc %s  '
        '%.2f s', round_num, self._num_rounds, _fmt(row['epsilon']), row['cohort_size'],
        f" ({row['reported']} reported)" if self._show_reported else '',
        _fmt(row.get('train_loss')), _fmt(row.get('eval_accuracy')),
        _fmt(row.get('eval_auc')), row['round_seconds'])

  def finish(self, result: dict[str, Any], audit: Optional[dict] = None) -> None:
    """Writes the final evaluation `result` (`evaluation.evaluate_run`'s): the audit's
    `audit.json` if the run has canaries, the figure, then `evaluation.json`."""
    if audit is not None:
      rundir.write_json(self._path(rundir.AUDIT_FILE), audit)
    if 'calibration' in result:
      from fl_analytics.reporting import plots  # pylint: disable=g-import-not-at-top  (matplotlib)

      plots.calibration(self._workdir, result)
    # Last: its presence (with the figure) marks the run as evaluated, and the digests
    # of the files it goes with let a replaced one be seen (`rundir.incomplete_reasons`).
    rundir.write_json(self._path(rundir.EVALUATION_FILE), {
        **result, 'files': rundir.file_digests(self._workdir, int(result['round']))})

  @property
  def last_row(self) -> Optional[dict]:
    return self.rows[-1] if self.rows else None


def _fmt(value) -> str:
  if value is None or value == '':
    return '-'
  return f'{float(value):.3f}'
