"""The analytics report: a static page that renders in headless Chromium, with every
figure loaded and the numbers of analytics.csv."""

import html.parser
import math
import os
import shutil

import numpy as np
import pytest

from fl_analytics.analytics import accuracy
from fl_analytics.analytics import queries
from fl_analytics.analytics import session
from fl_analytics.core import rundir
from fl_analytics.privacy import ledger as ledger_lib
from fl_analytics.reporting import analytics_report

pytestmark = pytest.mark.skipif(shutil.which('chromium') is None,
                                reason='needs chromium (make browser)')


def _session(workdir):
  """A session's files as the script writes them, from made-up answers."""
  ledger = ledger_lib.Ledger(workdir, epsilon=2.0, delta=1e-6)
  entries = [ledger_lib.Entry('funnel epsilon=0.5', 6.0),
             ledger_lib.Entry('heavy_hitters epsilon=1', 4.0, extra_delta=5e-7)]
  ledger.charge(entries)
  rng = np.random.default_rng(0)
  funnel = [queries.Answer(f'{j}. step', 80.0 / (j + 1) + rng.normal(), 0.4, '%')
            for j in range(1, 5)] + [queries.Answer('withheld', math.nan, math.nan, '%')]
  paths = [queries.Answer(f'app_open>path_{k}', 900.0 - 40 * k, 7.5, 'users')
           for k in range(6)]
  results = [
      session.QueryResult('funnel', 0.5, 6.0, 14.7,
                          [session._row('funnel', a, 0.5, a.value + 0.3) for a in funnel],  # pylint: disable=protected-access
                          {'bound': 'one 0/1 per step', 'sensitivity': 2.0}),
      session.QueryResult('heavy_hitters', 1.0, 4.0, 8.0,
                          [session._row('heavy_hitters', a, 1.0, a.value - 2) for a in paths],  # pylint: disable=protected-access
                          {'bound': 'at most 4 paths', 'sensitivity': 2.0})]
  session.write(workdir, results, delta=1e-6, num_users=5000, ledger=ledger,
                engine='groups', specs={'funnel': {}, 'heavy_hitters': {}})
  rows = [{'query': q, 'library': lib, 'users': n, 'epsilon': e, 'repeats': 2,
           'rmse': 10 / e, 'rmse_counts': 10 / e * (1.2 if lib == 'fl_analytics' else 1),
           'recall': min(1, e / 2)}
          for q in ('funnel', 'heavy_hitters') for lib in ('fl_analytics', 'pipeline_dp')
          for n in (1000, 5000) for e in (0.5, 1.0, 2.0)]
  rundir.write_csv(os.path.join(workdir, accuracy.ACCURACY_FILE), accuracy.COLUMNS,
                   accuracy.fill(rows))
  return ledger


class _Cells(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.values, self.images, self.body = [], 0, {}

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'table' and attrs.get('class') != 'answers':
      self.values.append(None)  # the answers tables end here
    if tag == 'td' and 'data-value' in attrs and None not in self.values:
      self.values.append(attrs['data-value'])
    self.images += tag == 'img'
    if tag == 'body':
      self.body = attrs


def test_the_report_renders_with_every_figure_and_the_numbers_of_the_csv(tmp_path):
  workdir = str(tmp_path)
  ledger = _session(workdir)
  report = analytics_report.write_report(workdir)
  dom = analytics_report.rendered_dom(report)
  cells = _Cells()
  cells.feed(dom)
  assert cells.images >= 4  # budget, two queries' answers, the accuracy study
  assert cells.body.get('data-figures-loaded') == f'{cells.images}/{cells.images}'
  rows = rundir.read_csv(os.path.join(workdir, session.RESULTS_FILE))
  expected = [v for r in rows for v in (r['value'], r['true_value'])]
  assert cells.values[:cells.values.index(None)] == expected
  assert f'data-value="{ledger.spent}"' in dom
  assert 'median ratio' in dom and '1.20' in dom  # federated / PipelineDP


def test_a_screenshot_is_a_png_of_the_page(tmp_path):
  _session(str(tmp_path))
  report = analytics_report.write_report(str(tmp_path))
  png = tmp_path / 'report.png'
  analytics_report.screenshot(report, str(png), height=800)
  assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 10_000
