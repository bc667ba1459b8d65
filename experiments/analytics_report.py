r"""The report of an analytics session, (re)drawn from its files; optionally its screenshot.

  .venv/bin/python experiments/analytics_report.py --workdir=DIR [--screenshot=PNG]

Reads DIR/analytics.csv, DIR/privacy.json and DIR/accuracy.csv (if there); writes
DIR/report.html and DIR/figures/; with --screenshot, a PNG of the page in headless
Chromium (tools/install_browser.sh).
"""

from absl import flags

from fl_analytics.core import cli
from fl_analytics.core import rundir
from fl_analytics.reporting import analytics_report

_WORKDIR = flags.DEFINE_string('workdir', None, 'A session\'s directory.')
_SCREENSHOT = flags.DEFINE_string('screenshot', None, 'Where to write a PNG of the page.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  path = analytics_report.write_report(_WORKDIR.value)
  print(f'Report: {path}')
  if _SCREENSHOT.value:
    analytics_report.screenshot(path, _SCREENSHOT.value)
    print(f'Screenshot: {_SCREENSHOT.value}')


if __name__ == '__main__':
  cli.run(main, known=(rundir.RunDirectoryError, FileNotFoundError))
