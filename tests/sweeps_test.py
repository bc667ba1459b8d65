"""Sweeps: points and names, summary over seeds, plots, and one real tiny sweep."""

import math
import os
import subprocess
import sys
import textwrap

import ml_collections
import numpy as np
import pytest

from fl_analytics.reporting import plots
from fl_analytics.core import rundir
from fl_analytics.reporting import reference
from fl_analytics.reporting import summary
from fl_analytics import sweeps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sweep_config(**kw):
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/churn.py'
  c.base_overrides = {'num_rounds': 2}
  c.settings = [{'dp.mechanism': 'none'},
                {'dp.mechanism': 'gaussian_fixed', 'dp.target_epsilon': 2.0}]
  c.seeds = [0, 1]
  c.update(kw)
  return c


def test_points_are_settings_times_seeds_named_by_their_overrides():
  points = sweeps.expand(_sweep_config(), repo_root=REPO)
  assert [p.name for p in points] == [
      'mechanism-none_seed-0', 'mechanism-none_seed-1',
      'mechanism-gaussian_fixed_target_epsilon-2_seed-0',
      'mechanism-gaussian_fixed_target_epsilon-2_seed-1']
  assert points[2].overrides == {'num_rounds': 2, 'dp.mechanism': 'gaussian_fixed',
                                 'dp.target_epsilon': 2.0, 'seed': 0}
  assert all(p.num_rounds == 2 for p in points)


def test_unknown_override_key_is_refused_before_running():
  with pytest.raises(ValueError, match=r"unknown config key 'dp.clipp'"):
    sweeps.expand(_sweep_config(settings=[{'dp.clipp': 1.0}]), repo_root=REPO)


def _fake_run(root, name, *, mechanism, seed, eps, auc, acc, target=None, bits=None,
              client_bytes=None, num_users=100):
  d = os.path.join(root, name)
  os.makedirs(d)
  config = {'seed': seed, 'num_rounds': 2, 'clients_per_round': 20,
            'data': {'num_users': num_users, 'seed': 0},
            'dp': {'mechanism': mechanism, 'target_epsilon': target, 'delta': 1e-5,
                   'noise_multiplier': 1.0 + seed / 10, 'clip': 0.2},
            'resolved': {'population_size': 80}}
  if bits is not None:
    config['compression'] = {'bits': bits, 'threshold': 100}
  rundir.write_json(os.path.join(d, 'config.json'), config)
  rundir.write_json(os.path.join(d, 'privacy.json'),
                    {'rounds': 2, 'noise_multiplier': 1.0,
                     'epsilon': None if eps == float('inf') else eps})
  rundir.write_csv(os.path.join(d, 'metrics.csv'),
                   ['round', 'epsilon', 'eval_auc', 'eval_accuracy', 'eval_loss',
                    'eval_base_rate', 'clip', 'client_bytes'],
                   [{'round': 1, 'epsilon': eps / 2, 'eval_auc': 0.5, 'eval_accuracy': 0.5,
                     'eval_loss': 0.7, 'eval_base_rate': 0.2, 'clip': 0.3,
                     'client_bytes': client_bytes},
                    {'round': 2, 'epsilon': eps, 'eval_auc': auc, 'eval_accuracy': acc,
                     'eval_loss': 0.5, 'eval_base_rate': 0.2, 'clip': 0.25,
                     'client_bytes': client_bytes}])


@pytest.fixture
def fake_sweep(tmp_path):
  root = str(tmp_path)
  inf = float('inf')
  _fake_run(root, 'mechanism-none_seed-0', mechanism='none', seed=0, eps=inf, auc=0.80, acc=0.85)
  _fake_run(root, 'mechanism-none_seed-1', mechanism='none', seed=1, eps=inf, auc=0.84, acc=0.87)
  for seed, auc in ((0, 0.70), (1, 0.74), (2, 0.78)):
    _fake_run(root, f'mechanism-gaussian_adaptive_target_epsilon-1_seed-{seed}',
              mechanism='gaussian_adaptive', seed=seed, eps=1.0, auc=auc, acc=0.8,
              target=1.0)
  _fake_run(root, 'mechanism-gaussian_adaptive_target_epsilon-4_seed-0',
            mechanism='gaussian_adaptive', seed=0, eps=4.0, auc=0.79, acc=0.84, target=4.0)
  return root


def test_summary_has_mean_and_std_over_seeds_per_setting(fake_sweep):
  rows = summary.write_summary(fake_sweep)
  by = {r['setting']: r for r in rows}
  assert set(by) == {'mechanism-none', 'mechanism-gaussian_adaptive_target_epsilon-1',
                     'mechanism-gaussian_adaptive_target_epsilon-4'}
  eps1 = by['mechanism-gaussian_adaptive_target_epsilon-1']
  assert eps1['num_seeds'] == 3
  assert eps1['eval_auc_mean'] == pytest.approx(0.74)
  assert eps1['eval_auc_std'] == pytest.approx(np.std([0.70, 0.74, 0.78], ddof=1))
  assert eps1['epsilon_mean'] == pytest.approx(1.0)
  assert by['mechanism-none']['num_seeds'] == 2
  assert by['mechanism-none']['epsilon_mean'] == float('inf')
  assert by['mechanism-gaussian_adaptive_target_epsilon-4']['eval_auc_std'] is None
  written = rundir.read_csv(os.path.join(fake_sweep, 'summary.csv'))
  assert [r['setting'] for r in written] == [r['setting'] for r in rows]
  assert written[0]['epsilon_mean'] == 'inf'
  table = summary.format_summary(rows)
  assert '0.740 ± 0.040' in table


def test_plots_write_every_figure_as_png_and_pdf(fake_sweep):
  paths = plots.plot_sweep(fake_sweep)
  names = {os.path.basename(p) for p in paths}
  for fig in ('frontier', 'auc_by_round', 'epsilon_by_round', 'clip_by_round'):
    assert {f'{fig}.png', f'{fig}.pdf'} <= names
  for p in paths:
    with open(p, 'rb') as f:
      head = f.read(8)
    assert head.startswith(b'\x89PNG') or head.startswith(b'%PDF')


def test_compressed_settings_get_their_bytes_and_own_lines_and_a_communication_plot(
    tmp_path):
  root = str(tmp_path)
  for bits, sent, auc in ((0, 2344.0, 0.80), (8, 892.0, 0.79)):
    for seed in (0, 1):
      _fake_run(root, f'mechanism-none_bits-{bits}_seed-{seed}', mechanism='none',
                seed=seed, eps=float('inf'), auc=auc, acc=0.85, bits=bits,
                client_bytes=sent)
      _fake_run(root, f'mechanism-gaussian_fixed_bits-{bits}_seed-{seed}',
                mechanism='gaussian_fixed', seed=seed, eps=2.0, auc=auc - 0.05, acc=0.8,
                target=2.0, bits=bits, client_bytes=sent + seed)
  rows = summary.summarize(summary.collect_runs(root))
  assert [(r['mechanism'], r['compression_bits'], r['client_bytes_mean'])
          for r in rows] == [('none', 0, 2344.0), ('none', 8, 892.0),
                             ('gaussian_fixed', 0, 2344.5), ('gaussian_fixed', 8, 892.5)]
  names = {os.path.basename(p) for p in plots.plot_sweep(root)}
  assert {'communication.png', 'communication.pdf', 'frontier.png'} <= names


def test_population_sweep_draws_one_frontier_line_and_gap_per_population(tmp_path):
  root = str(tmp_path)
  for users, private_auc in ((1000, 0.70), (100000, 0.83)):
    for seed in (0, 1):
      _fake_run(root, f'num_users-{users}_mechanism-none_seed-{seed}', mechanism='none',
                seed=seed, eps=float('inf'), auc=0.87, acc=0.85, num_users=users)
      for eps in (1.0, 4.0):
        _fake_run(root, f'num_users-{users}_mechanism-gaussian_adaptive_target_epsilon-'
                  f'{eps:g}_seed-{seed}', mechanism='gaussian_adaptive', seed=seed,
                  eps=eps, auc=private_auc + eps / 100, acc=0.8, target=eps,
                  num_users=users)
  rows = summary.summarize(summary.collect_runs(root))
  assert len(rows) == 6  # a population is part of the setting
  paths = plots.plot_sweep(root)
  assert {os.path.basename(p) for p in paths} == {'population_frontier.png',
                                                 'population_frontier.pdf'}
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  drawn = {}  # the figure is closed once saved: draw it again, keeping it
  real_save = plots._save  # pylint: disable=protected-access
  try:
    plots._save = lambda f, w, n: drawn.setdefault(n, f) and []  # pylint: disable=protected-access
    plots.plot_sweep(root)
  finally:
    plots._save = real_save  # pylint: disable=protected-access
  _, gap_ax = drawn['population_frontier'].axes
  gaps = sorted([list(np.round(l.get_ydata(), 6)) for l in gap_ax.get_lines()
                 if l.get_marker() == 'o'])
  # Non-private minus private AUC at eps 1 and 4: smaller for the larger population.
  assert gaps == [[0.03, 0.0], [0.16, 0.13]]
  plt.close('all')


def test_communication_plot_without_logged_bytes_says_why(fake_sweep):
  with pytest.raises(ValueError, match='No run of the sweep logged client_bytes'):
    plots.communication(summary.collect_runs(fake_sweep), fake_sweep)


def test_plot_of_empty_directory_says_what_is_missing(tmp_path):
  with pytest.raises(ValueError, match='No run directories'):
    plots.plot_sweep(str(tmp_path))


def test_export_keeps_only_small_files(fake_sweep, tmp_path):
  summary.write_summary(fake_sweep)
  os.makedirs(os.path.join(fake_sweep, 'mechanism-none_seed-0', 'checkpoints'))
  dst = str(tmp_path / 'ref')
  reference.export_small_files(fake_sweep, dst)
  assert sorted(os.listdir(os.path.join(dst, 'mechanism-none_seed-0'))) == [
      'config.json', 'metrics.csv', 'privacy.json']
  assert os.path.exists(os.path.join(dst, 'summary.csv'))


def test_export_keeps_the_folder_another_target_wrote(fake_sweep, tmp_path):
  """`make audit` exports over results/audit/, where `make audit-mechanisms` writes
  mechanisms/: that folder stays; the old runs go."""
  summary.write_summary(fake_sweep)
  dst = str(tmp_path / 'ref')
  os.makedirs(os.path.join(dst, 'mechanisms'))
  os.makedirs(os.path.join(dst, 'stale-run'))
  rundir.write_json(os.path.join(dst, 'mechanisms', 'mechanisms.json'), {'kept': True})
  reference.export_small_files(fake_sweep, dst)
  assert rundir.read_json(os.path.join(dst, 'mechanisms', 'mechanisms.json')) == {
      'kept': True}
  assert not os.path.exists(os.path.join(dst, 'stale-run'))


def _fake_audit(run_dir, *, claimed, estimate, lower, flagged=False):
  variant = {'epsilon_estimate': estimate, 'epsilon_interval_90': [lower, None],
             'epsilon_lower_bound': lower, 'exceeds_claim': flagged}
  rundir.write_json(os.path.join(run_dir, rundir.AUDIT_FILE), {
      'claimed_epsilon': claimed, 'canaries': 100, 'unseen_canaries': 100,
      'dimension': 577, 'rounds': 2, 'final_model': variant, 'all_iterates': variant,
      'flagged_by': ['final_model'] if flagged else [],
      'membership_inference': {'auc': 0.5}})


@pytest.mark.slow
def test_audited_sweep_summarizes_estimates_beside_claims_plots_and_exports_them(
    fake_sweep, tmp_path):
  runs = {r.name: r for r in summary.collect_runs(fake_sweep)}
  for name, estimate, lower in (('mechanism-gaussian_adaptive_target_epsilon-1_seed-0', 1.5, 0.2),
                                ('mechanism-gaussian_adaptive_target_epsilon-1_seed-1', 2.5, 1.2),
                                ('mechanism-gaussian_adaptive_target_epsilon-4_seed-0', None, 6.0)):
    _fake_audit(os.path.join(fake_sweep, name), claimed=runs[name].privacy['epsilon'],
                estimate=estimate, lower=lower, flagged=lower > 4)
  rows = {r['setting']: r for r in summary.write_summary(fake_sweep)}
  one = rows['mechanism-gaussian_adaptive_target_epsilon-1']
  assert one['audit_estimate_mean'] == pytest.approx(2.0)
  assert one['audit_lower_bound_max'] == pytest.approx(1.2)
  assert one['audit_flagged'] == 0
  four = rows['mechanism-gaussian_adaptive_target_epsilon-4']
  assert four['audit_estimate_mean'] == float('inf') and four['audit_flagged'] == 1
  assert rows['mechanism-none'].get('audit_estimate_mean') is None
  table = summary.format_summary(list(rows.values()))
  assert 'estimated epsilon' in table and '2 ± 0.707' in table
  names = {os.path.basename(p) for p in plots.plot_sweep(fake_sweep)}
  assert {'audit.png', 'audit.pdf'} <= names
  dst = str(tmp_path / 'ref')
  reference.export_small_files(fake_sweep, dst)
  assert 'audit.json' in os.listdir(
      os.path.join(dst, 'mechanism-gaussian_adaptive_target_epsilon-4_seed-0'))
  assert 'audit.json' not in os.listdir(os.path.join(dst, 'mechanism-none_seed-0'))


# No DP, adaptive clipping, and a setting every point of which is refused (clip < 0).
TINY_SETTINGS = [{'dp.mechanism': 'none'},
                 {'dp.mechanism': 'gaussian_adaptive', 'dp.noise_multiplier': 1.0},
                 {'dp.mechanism': 'gaussian_fixed', 'dp.clip': -1.0}]


def write_tiny_sweep(path, settings, seeds, *, num_rounds=2, eval_every=1) -> None:
  """A sweep config over a 150-user population, 20 clients per round, at `path`."""
  path.write_text(textwrap.dedent(f'''
      import ml_collections
      def get_config():
        c = ml_collections.ConfigDict()
        c.base_config = 'configs/churn.py'
        c.base_overrides = {{'num_rounds': {num_rounds}, 'eval_every': {eval_every},
                            'clients_per_round': 20,
                            'data': {{'num_users': 150, 'num_days': 40}}}}
        c.settings = {settings!r}
        c.seeds = {seeds!r}
        return c
  '''))


def sweep_command(config, workdir, *extra) -> list[str]:
  return [sys.executable, os.path.join(REPO, 'experiments', 'sweep.py'),
          f'--config={config}', f'--workdir={workdir}', *extra]


@pytest.mark.slow
def test_tiny_sweep_runs_in_parallel_reports_failures_and_skips_finished(tiny_sweep):
  config, workdir, first = tiny_sweep  # (conftest.py) run with --parallel=2
  assert first.returncode == 1, first.stdout + first.stderr
  assert 'dp.clip must be a finite number > 0' in first.stdout
  assert '1 point(s) failed: mechanism-gaussian_fixed_clip--1_seed-0' in first.stderr
  summary = rundir.read_csv(str(workdir / 'summary.csv'))
  assert [(r['setting'], r['num_seeds']) for r in summary] == [
      ('mechanism-none', '1'), ('mechanism-gaussian_adaptive_noise_multiplier-1', '1')]
  # The summary's AUC is the run's final AUC.
  final = rundir.read_csv(str(workdir / 'mechanism-none_seed-0' / 'metrics.csv'))[-1]
  assert float(summary[0]['eval_auc_mean']) == pytest.approx(float(final['eval_auc']))

  second = subprocess.run(sweep_command(config, workdir, '--parallel=2'),
                          capture_output=True, text=True, timeout=600)
  assert '2 already finished, 1 to run' in second.stdout


def test_next_action_sweep_summarizes_and_plots_top_k_accuracy(tmp_path):
  root = str(tmp_path)
  for name, mechanism, eps, top3 in (('mechanism-none_seed-0', 'none', float('inf'), 0.60),
                                     ('mechanism-gaussian_fixed_seed-0', 'gaussian_fixed',
                                      2.0, 0.55)):
    d = os.path.join(root, name)
    os.makedirs(d)
    rundir.write_json(os.path.join(d, 'config.json'), {
        'task': 'next_action', 'seed': 0, 'num_rounds': 2, 'clients_per_round': 20,
        'data': {'num_users': 100}, 'resolved': {'population_size': 80},
        'dp': {'mechanism': mechanism, 'target_epsilon': None, 'delta': 1e-5,
               'noise_multiplier': 1.0}})
    rundir.write_json(os.path.join(d, 'privacy.json'), {
        'rounds': 2, 'noise_multiplier': 1.0,
        'epsilon': None if eps == float('inf') else eps})
    rundir.write_csv(os.path.join(d, 'metrics.csv'),
                     ['round', 'epsilon', 'eval_loss', 'eval_accuracy', 'eval_auc',
                      'eval_top3_accuracy', 'eval_majority_accuracy'],
                     [{'round': 1, 'epsilon': eps, 'eval_loss': 2.0, 'eval_accuracy': 0.3,
                       'eval_top3_accuracy': top3, 'eval_majority_accuracy': 0.29}])
  rows = summary.summarize(summary.collect_runs(root))
  assert summary.primary_metric(rows) == 'eval_top3_accuracy'
  assert [r['eval_top3_accuracy_mean'] for r in rows] == [0.60, 0.55]
  assert [r['eval_majority_accuracy_mean'] for r in rows] == [0.29, 0.29]
  assert 'top-3' in summary.format_summary(rows)
  names = {os.path.basename(p) for p in plots.plot_sweep(root)}
  assert {'frontier.png', 'top3_accuracy_by_round.png'} <= names


def test_epsilon_for_utility_interpolates_in_log_epsilon_and_says_when_unreached():
  points = [(2.0, 0.70), (8.0, 0.80), (4.0, 0.76)]
  assert summary.epsilon_for_utility(points, 0.76) == (4.0, '=')
  eps, bound = summary.epsilon_for_utility(points, 0.73)
  assert eps == pytest.approx(2 * 2**0.5) and bound == '='
  assert summary.epsilon_for_utility(points, 0.65) == (2.0, '<=')  # less may do
  assert summary.epsilon_for_utility(points, 0.81) == (None, '>')


def test_equal_utility_reads_each_mechanisms_frontier_at_the_references_utility():
  row = lambda m, eps, acc: {'mechanism': m, 'epsilon_mean': eps, 'task': 'churn',
                             'eval_auc_mean': acc}
  rows = [row('none', math.inf, 0.9), row('tree', 2.0, 0.70), row('tree', 8.0, 0.80),
          row('blt', 1.0, 0.70), row('blt', 4.0, 0.80)]
  got = {(r['reference_epsilon'], r['mechanism']): (r['bound'], r['epsilon_ratio'])
         for r in summary.equal_utility(rows, 'tree')}
  assert got == {(2.0, 'tree'): ('=', 1.0), (2.0, 'blt'): ('=', 0.5),
                 (8.0, 'tree'): ('=', 1.0), (8.0, 'blt'): ('=', 0.5)}
  with pytest.raises(ValueError, match="reference mechanism 'banded' has no private"):
    summary.equal_utility(rows, 'banded')
