"""The report of an analytics session: one static HTML page an app team can read.

`write_report(workdir)` reads the session's `analytics.csv`, `privacy.json` and (if
there) `accuracy.csv`, draws the figures into `workdir/figures/` and writes
`workdir/report.html`: each query's answers with 95 % intervals from the known noise,
the budget spent and left, and the accuracy study with the ratio to the central
library. No server: the page references its figures by relative path and has no
external resources. Every number in a table carries the exact `analytics.csv` text in
its `data-value` attribute, and a script marks `data-figures-loaded="k/n"` on the body
once the page has loaded (`tests/analytics_report_test.py` reads both in headless
Chromium).
"""

from __future__ import annotations

import html
import math
import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from fl_analytics.analytics import accuracy  # pylint: disable=g-import-not-at-top
from fl_analytics.analytics import session  # pylint: disable=g-import-not-at-top
from fl_analytics.core import rundir  # pylint: disable=g-import-not-at-top
from fl_analytics.reporting import plots  # pylint: disable=g-import-not-at-top

REPORT_FILE = 'report.html'
TOP_ROWS = 60  # rows drawn, and heavy hitters listed


def _by_query(rows) -> dict[str, list[dict]]:
  out: dict[str, list[dict]] = {}
  for r in rows:
    out.setdefault(r['query'], []).append(r)
  return out


def _answer_figure(workdir: str, name: str, rows: Sequence[Mapping]) -> str:
  # A histogram's bins (its quantiles, in another unit, are in the table).
  rows = [r for r in rows if r['unit'] == rows[0]['unit']][:TOP_ROWS]
  value = np.asarray([float(r['value']) for r in rows])
  half = np.asarray([float(r['ci_high']) - float(r['value']) for r in rows])
  true = np.asarray([float(r['true_value']) for r in rows])
  fig, ax = plt.subplots(figsize=(10, max(3.2, 0.24 * len(rows) + 1)))
  y = np.arange(len(rows))[::-1]
  ax.barh(y, value, xerr=np.nan_to_num(half), color='tab:blue', alpha=0.75,
          error_kw={'capsize': 2, 'lw': 1}, label='DP release (95 % interval)')
  ax.plot(true, y, 'k|', ms=10, label='true value (simulation only)')
  ax.set_yticks(y)
  ax.set_yticklabels([r['item'] for r in rows], fontsize=7)
  ax.set_xlabel(rows[0]['unit'] if rows else '')
  ax.grid(True, axis='x', alpha=0.3)
  ax.legend(fontsize=8, loc='lower right')
  ax.set_title(f"{name} (ε = {float(rows[0]['epsilon']):g})" if rows else name)
  return os.path.basename(plots._save(fig, workdir, f'answers_{name}')[0])  # pylint: disable=protected-access


def _budget_figure(workdir: str, privacy: Mapping) -> str:
  ledger = privacy['ledger']
  names = [r['name'] for r in ledger['releases']]
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={'width_ratios': [2, 1]})
  eps = [float(n.rsplit('=', 1)[1]) for n in names]
  ax.barh(np.arange(len(names))[::-1], eps, color='tab:orange')
  ax.set_yticks(np.arange(len(names))[::-1])
  ax.set_yticklabels(names, fontsize=7)
  ax.set_xlabel('ε of each release')
  spent, total = ledger['spent_epsilon'], ledger['budget']['epsilon']
  bx.bar(['spent', 'left'], [spent, max(total - spent, 0)], color=['tab:red', 'tab:green'])
  bx.axhline(total, color='k', ls='--', lw=1, label=f'budget ε = {total:g}')
  bx.set_ylabel(f"ε at δ = {ledger['budget']['delta']:g}")
  bx.legend(fontsize=8)
  bx.set_title('composed (PLD), not summed', fontsize=9)
  return os.path.basename(plots._save(fig, workdir, 'budget')[0])  # pylint: disable=protected-access


def _accuracy_figure(workdir: str, rows: Sequence[Mapping],
                     units: Mapping[str, str]) -> str:
  """Each query's error against epsilon; `units`: the unit of its answers."""
  names = list(dict.fromkeys(r['query'] for r in rows))
  cols = 3
  fig, axes = plt.subplots(math.ceil(len(names) / cols), cols,
                           figsize=(13, 3.6 * math.ceil(len(names) / cols)), squeeze=False)
  for ax, name in zip(axes.flat, names):
    metric = 'recall' if name == 'heavy_hitters' else 'rmse'
    for (lib, n), style in _series(rows, name):
      pts = sorted((float(r['epsilon']), float(r[metric])) for r in rows
                   if r['query'] == name and r['library'] == lib and int(r['users']) == n)
      ax.plot(*zip(*pts), marker='o', ms=3, label=f'{lib}, {n:,} users', **style)
    ax.set_xscale('log', base=2)
    if metric == 'rmse':
      ax.set_yscale('log')
    ax.set_title(name)
    ax.set_xlabel('ε')
    unit = {'%': 'percentage points'}.get(units.get(name, ''), units.get(name, ''))
    ax.set_ylabel('top-20 recall' if metric == 'recall' else f'RMSE ({unit})')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=6)
  for ax in list(axes.flat)[len(names):]:
    ax.axis('off')
  fig.tight_layout()
  return os.path.basename(plots._save(fig, workdir, 'accuracy')[0])  # pylint: disable=protected-access


def _series(rows, name):
  keys = sorted({(r['library'], int(r['users'])) for r in rows if r['query'] == name})
  colors = {n: c for n, c in zip(sorted({k[1] for k in keys}), ('tab:blue', 'tab:orange',
                                                                 'tab:green', 'tab:red'))}
  return [((lib, n), {'color': colors[n], 'ls': '-' if lib == 'fl_analytics' else '--'})
          for lib, n in keys]


def _cell(text: str, *, value: str = '') -> str:
  attr = f' data-value="{html.escape(value)}"' if value else ''
  return f'<td{attr}>{html.escape(text)}</td>'


def _fmt(x: str) -> str:
  v = float(x)
  return 'n/a' if not math.isfinite(v) else f'{v:,.2f}'


def _answers_table(rows: Sequence[Mapping]) -> str:
  out = ['<table class="answers"><tr><th>item</th><th>DP value</th><th>95 % interval'
         '</th><th>unit</th><th>true (simulation)</th></tr>']
  for r in rows:
    out.append('<tr>' + _cell(r['item']) + _cell(_fmt(r['value']), value=r['value'])
               + _cell(f"{_fmt(r['ci_low'])} to {_fmt(r['ci_high'])}")
               + _cell(r['unit']) + _cell(_fmt(r['true_value']), value=r['true_value'])
               + '</tr>')
  return '\n'.join(out + ['</table>'])


def _accuracy_section(workdir: str, rows: Sequence[Mapping],
                      units: Mapping[str, str]) -> str:
  """The study's figure, the ratio to the central library and the heavy hitters'
  recall."""
  if not rows:
    return ''
  parsed = [{**r, 'users': int(r['users']), 'epsilon': float(r['epsilon']),
             'rmse_counts': float(r['rmse_counts']) if r['rmse_counts'] else None,
             'recall': float(r['recall']) if r['recall'] else 0.0} for r in rows]
  ratio_rows = accuracy.ratios(parsed)
  table = ['<table class="ratios"><tr><th>query</th><th>users</th><th>median ratio '
           '(federated / PipelineDP RMSE)</th><th>range over ε</th></tr>']
  for (name, n) in dict.fromkeys((r['query'], r['users']) for r in ratio_rows):
    vals = [r['ratio'] for r in ratio_rows if (r['query'], r['users']) == (name, n)]
    table.append('<tr>' + _cell(name) + _cell(f'{n:,}')
                 + _cell(f'{np.median(vals):.2f}', value=f'{np.median(vals):.4f}')
                 + _cell(f'{min(vals):.2f} to {max(vals):.2f}') + '</tr>')
  table.append('</table>')
  largest = max(r['users'] for r in parsed)
  at_one = [r['recall'] for r in parsed if r['query'] == 'heavy_hitters'
            and r['library'] == 'fl_analytics' and r['users'] == largest
            and r['epsilon'] == 1.0]
  eps90 = accuracy.recall_epsilon(parsed, users=largest)
  hh_line = (f'<p>Heavy hitters at {largest:,} users: top-20 recall '
             f'{at_one[0]:.2f} at ε = 1; recall reaches 0.9 at ε = '
             f'{eps90 if eps90 is not None else "none of the sweep"}.</p>'
             if at_one else '')
  figure = _accuracy_figure(workdir, rows, units)
  return (f'<h2>Accuracy against ε and users (simulation)</h2>'
          f'<img src="figures/{figure}" alt="accuracy against epsilon">'
          f'{hh_line}<h3>Federated against central DP (PipelineDP)</h3>'
          + '\n'.join(table))


def write_report(workdir: str) -> str:
  """report.html of the session in `workdir`; returns its path."""
  rows = rundir.read_csv(os.path.join(workdir, session.RESULTS_FILE))
  privacy = rundir.read_json(os.path.join(workdir, session.PRIVACY_FILE))
  acc_path = os.path.join(workdir, accuracy.ACCURACY_FILE)
  acc_rows = rundir.read_csv(acc_path) if os.path.exists(acc_path) else []
  ledger = privacy['ledger']
  parts = [f'<h1>Federated analytics of {privacy["population_size"]:,} users</h1>',
           f'<p>Every number below is a differentially private release (unit of '
           f'privacy: {html.escape(privacy["unit_of_privacy"])}). The session spent '
           f'<b data-value="{ledger["spent_epsilon"]}">ε = {ledger["spent_epsilon"]:.3g}'
           f'</b> of its budget ε = {ledger["budget"]["epsilon"]:g} at δ = '
           f'{ledger["budget"]["delta"]:g} (composed by dp_accounting, '
           f'{ledger["accountant"]}); ε = {ledger["left_epsilon"]:.3g} is left. '
           'Intervals are ±1.96 standard deviations of the known noise.</p>',
           f'<img src="figures/{_budget_figure(workdir, privacy)}" alt="budget">']
  described = {q['query']: q for q in privacy['queries']}
  for name, q_rows in _by_query(rows).items():
    q = described.get(name, {})
    parts += [f'<h2 id="{name}">{html.escape(name)}</h2>',
              f'<p>ε = {q.get("epsilon", "?")}; contribution bound: '
              f'{html.escape(str(q.get("bound", "")))} (L2 sensitivity '
              f'{q.get("sensitivity", float("nan")):.3g}); noise stddev '
              f'{q.get("noise_stddev", float("nan")):.3g}.</p>',
              f'<img src="figures/{_answer_figure(workdir, name, q_rows)}" '
              f'alt="{html.escape(name)}">',
              _answers_table(q_rows if name != 'heavy_hitters' else q_rows[:TOP_ROWS])]
  units = {name: q_rows[0]['unit'] for name, q_rows in _by_query(rows).items()}
  parts.append(_accuracy_section(workdir, acc_rows, units))
  page = _PAGE.format(body='\n'.join(parts))
  path = os.path.join(workdir, REPORT_FILE)
  rundir.atomic_write_bytes(path, page.encode())
  return path


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>fl-analytics: federated analytics report</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
img {{ max-width: 100%; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
td:first-child {{ text-align: left; }}
</style></head>
<body>
{body}
<script>
window.addEventListener('load', function () {{
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }});
  document.body.setAttribute('data-figures-loaded', ok.length + '/' + images.length);
}});
</script>
</body></html>
"""


def chromium() -> str:
  """The headless browser (Debian's `chromium`, tools/install_browser.sh)."""
  import shutil  # pylint: disable=g-import-not-at-top

  path = shutil.which('chromium') or shutil.which('chromium-browser')
  if path is None:
    raise FileNotFoundError('chromium is not installed: run tools/install_browser.sh '
                            '(make browser).')
  return path


def _headless(report: str, *flags: str, timeout: float = 120) -> str:
  import subprocess  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as profile:
    done = subprocess.run(
        [chromium(), '--headless', '--no-sandbox', '--disable-gpu',
         '--allow-file-access-from-files', f'--user-data-dir={profile}',
         '--virtual-time-budget=5000', *flags,
         'file://' + os.path.abspath(report)],
        capture_output=True, text=True, timeout=timeout, check=True)
  return done.stdout


def rendered_dom(report: str) -> str:
  """The page's DOM after it loaded and its scripts ran, in headless Chromium."""
  return _headless(report, '--dump-dom')


def screenshot(report: str, png: str, *, width: int = 1200, height: int = 2400) -> None:
  """A PNG of the page's top `height` pixels, in headless Chromium."""
  _headless(report, f'--screenshot={os.path.abspath(png)}',
            f'--window-size={width},{height}', '--hide-scrollbars')
