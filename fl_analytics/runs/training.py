"""`train_and_evaluate(config, workdir)`: one DP-FedAvg run of a task, resumable.

The algorithm is `tff.learning.algorithms.build_unweighted_fed_avg` (every user counts
equally, so the unit of privacy is one user's whole data), with the model aggregator
of `dp.mechanism` (`fl_analytics.privacy.mechanisms`), cohorts drawn by the `sampling` scheme
(`fl_analytics.privacy.sampling`) and accounting of exactly that mechanism on that sampling
(`fl_analytics.privacy.statement`). `resolve_config` validates and calibrates once per launch,
into one frozen `mechanisms.DpSettings` that the aggregator, the accountant and the
statement read; the sampler reads the same cohort size and population.

Evaluation is on held-out users (never trained on), pooled, every `eval_every` rounds
and after the last round: the task's metrics (`fl_analytics.tasks`; churn: log loss,
accuracy, ROC AUC and the churn base rate; next action: log loss, top-1 and top-3
accuracy), then the final evaluation of `fl_analytics.runs.evaluation`.

The run directory follows `fl_analytics.core.rundir`; after every round the metrics table,
the privacy statement and a checkpoint of the server state are written atomically
(`recording.RunRecorder`), so running the same command again resumes after the last
completed round, and a larger `num_rounds` continues the run. The run holds the directory's lock
(`rundir.locked`) from before it reads the directory until it ends.

Every round of a DP run calls the aggregator, also when no sampled client reported (the
empty cohort contributes zero; the server still adds its noise), so the mechanism's
state advances once per round, as the accountant assumes: DP-FTRL's tree restarts
after every pass of rounds, whoever reported.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, Optional

from absl import logging
import ml_collections
import numpy as np
# TensorFlow must be imported before absl's app.run starts main(): imported inside it,
# tf.keras.Input returns graph tensors and Keras functional models fail to build.
import tensorflow as tf
import tensorflow_federated as tff

from fl_analytics.privacy import aggregators
from fl_analytics.privacy import canaries
from fl_analytics.core import config_files
from fl_analytics.data import devices
from fl_analytics import engines
from fl_analytics.privacy import mechanisms
from fl_analytics.runs import evaluation
from fl_analytics.tasks import models
from fl_analytics.privacy import statement
from fl_analytics.runs import observers
from fl_analytics.runs import recording
from fl_analytics.core import rundir
from fl_analytics.core import cli
from fl_analytics.cluster import ray_cluster
from fl_analytics.privacy import sampling
from fl_analytics.privacy import secagg
from fl_analytics import tasks
from fl_analytics.data import clients
from fl_analytics.data import events

METRIC_COLUMNS = (
    'round',
    'epsilon',
    'cohort_size',
    'reported',
    'train_loss',
    'train_accuracy',
    'train_batches',
    *tasks.EVAL_COLUMNS,  # every task's eval_* columns (one file format)
    'clip',
    'client_bytes',
    'round_seconds',
)
# Keys that may change between launches of the same run.
_MUTABLE_KEYS = ('num_rounds', 'runtime', 'dp.max_epsilon', 'evaluation',
                 'resolved.engine', 'resolved.engine_reason')
# Compared on its own (`rundir.check_same_data`), with a message of its own.
_FINGERPRINT_KEY = 'resolved.data_fingerprint'
# Keys added after runs were recorded, at the value those runs had (the feature off):
# such a run resumes and counts as finished without them in its config.json.
_ADDED_KEYS = {'audit.canaries': 0, 'audit.unseen_canaries': None, 'audit.alpha': 0.05,
               'data.generator': 'archetypes', 'data.context_gaps': False,
               'model.architecture': 'conv', 'model.gru_units': 256,
               'resolved.canaries': 0,
               'participation.max_participations': None, 'participation.min_separation': 1,
               'participation.rounds_per_day': 24, 'participation.window_hours': 8.0,
               'secure_aggregation.sum': 'simulated', 'secure_aggregation.num_shares': 0,
               'secure_aggregation.threshold': 0.5,
               'secure_aggregation.dropout_after_input': 0.0,
               # a mechanism's own keys, declared with it: at their defaults
               **{f'dp.{k.name}': k.default for k in mechanisms.config_keys()}}
# A training or evaluation loss this many times the task's chance loss (uniform
# prediction, about where an untrained model starts) means the run diverged; under DP,
# clipping keeps a diverging loss finite, so finiteness alone does not tell.
DIVERGENCE_FACTOR = 10.0


class InvalidSettingsError(ValueError):
  """A config value no run can use; raised before anything is trained or written."""


class ConfigMismatchError(InvalidSettingsError):
  """The workdir holds a run with a different config."""


class DivergenceError(FloatingPointError):
  """The loss became non-finite or far above a uniform prediction's; the last good
  round is kept."""


def _check_positive(key: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
      value > 0 and math.isfinite(value)):
    raise ValueError(f'{key} must be > 0. Found {value!r}.'
                     + (' It must be finite.' if value == math.inf else ''))


def _check_evaluation(config) -> None:
  evaluation = config.evaluation
  for key in ('max_users', 'final_max_users'):
    value = evaluation[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ValueError(f'evaluation.{key} must be an integer >= 0 (0: every held-out '
                       f'user). Found {value!r}.')
  steps = evaluation.personalization_steps
  if not isinstance(steps, int) or steps < 0:
    raise ValueError(
        f'evaluation.personalization_steps must be an integer >= 0. Found {steps!r}.')
  if (evaluation.per_user_rows and events.source_path(config.data.source) is not None
      and not evaluation.get('per_user_rows_of_real_users', False)):
    raise ValueError(
        f'evaluation.per_user_rows=True with data.source={config.data.source}: each row '
        "of eval_users.csv can be linked back to its real user (by the user's example "
        'count and baseline loss with the event file; by every loss with the final '
        'model too), and held-out users have no DP protection. Set also '
        'evaluation.per_user_rows_of_real_users=True to write them anyway.')


def check_config(config) -> None:
  """Raises ValueError for values no run can use, before anything is built."""
  for key in ('num_rounds', 'eval_every'):
    value = config[key]
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'{key} must be a positive integer. Found {value!r}.')
  _check_positive('clients_per_round', config.clients_per_round)
  for key, value in (('seed', config.seed), ('data.seed', config.data.seed)):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
      raise ValueError(f'{key} must be an integer in [0, 2**63). Found {value!r}.')
  tasks.get(config.task).check_config(config)
  for key in ('client.learning_rate', 'client.batch_size', 'client.local_epochs',
              'server.learning_rate'):
    section, name = key.split('.')
    _check_positive(key, config[section][name])
  _check_evaluation(config)
  if not 0 <= config.server.momentum < 1:
    raise ValueError(f'server.momentum must be in [0, 1). Found {config.server.momentum}.')
  clients.check_data_config(config.data)
  devices.check_clients_config(config.clients)
  mechanisms.check_dropout(config.dp.mechanism, config.clients.dropout)
  dp = config.dp
  if dp.target_epsilon is not None and not mechanisms.get(dp.mechanism).private:
    raise ValueError(
        f'dp.target_epsilon={dp.target_epsilon} is set, but dp.mechanism={dp.mechanism} '
        'adds no noise to calibrate: unset dp.target_epsilon, or choose a DP mechanism.')
  calibrated = dp.target_epsilon is not None or not mechanisms.get(dp.mechanism).private
  statement.check_budget(delta=dp.delta, target_epsilon=dp.target_epsilon,
                         noise_multiplier=None if calibrated else dp.noise_multiplier,
                         prefix='dp.')
  if dp.max_epsilon is not None:
    _check_positive('dp.max_epsilon', dp.max_epsilon)
  statement.check_accounting(accountant=dp.accountant, sampling=config.sampling,
                           mechanism=dp.mechanism)
  aggregators.check_secure_sum(dp.mechanism, dp.secure_sum)
  secagg.check_config(config.secure_aggregation, secure_sums=bool(
      dp.secure_sum or mechanisms.get(dp.mechanism).secure_aggregation))
  aggregators.check_compression(
      mechanism=dp.mechanism, bits=config.compression.bits,
      threshold=config.compression.threshold, secure_sum=dp.secure_sum)
  engines.check_config(config)
  canaries.check_config(config)
  participation_of(config).check()
  if (sampling.get(config.sampling).whole_cohort
      and int(config.clients_per_round) != config.clients_per_round):
    raise ValueError(f'clients_per_round must be a whole number with sampling='
                     f'{config.sampling}. Found {config.clients_per_round}.')


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """A launch's settings, checked, calibrated and resolved once (`resolve_config`):
  what the round loop, the engine, the recorder and the statement read."""

  config: ml_collections.FrozenConfigDict  # the run's config, read-only
  resolved: dict[str, Any]  # config.json's body, with its `resolved` section
  dp: mechanisms.DpSettings  # what the aggregator, accountant and statement read

  @property
  def task(self) -> tasks.Task:
    return tasks.get(self.config.task)


def resolve_config(config, *, population_size: int, stored: Optional[dict] = None,
                   opted_out_users: int = 0,
                   data_fingerprint: Optional[str] = None) -> RunSettings:
  """The run's settings, validated and calibrated once.

  `config` has passed `check_config` (the checks that need no data; `train_and_evaluate`
  runs them once, before loading data); here come the checks that need the population
  and the mechanism's parameters. `population_size` is who can be sampled: the enrolled
  training users and the `audit.canaries`. With `dp.target_epsilon` set, the noise
  multiplier is calibrated (`statement.calibrate`) so that `num_rounds` rounds spend the target at
  `dp.delta`. A continued run keeps the noise multiplier it was started with (recorded
  in `stored`), so the rounds it already ran stay accounted for correctly; its epsilon
  then grows past the target. The dict's `resolved` section records what was resolved,
  with `data_fingerprint` (`clients.LogSource.fingerprint`: what the data was);
  `dp_settings` reads the settings back from it.
  """
  resolved = config.to_dict()
  dp = resolved['dp']
  if population_size < config.clients_per_round:
    raise ValueError(
        f'clients_per_round={config.clients_per_round} is larger than the '
        f'population that can be sampled ({population_size} enrolled training users '
        'and audit canaries). Lower clients_per_round or raise data.num_users.')
  statement.check_budget(delta=dp['delta'], population_size=population_size, prefix='dp.')
  sampling.check_schedule(sampling=config.sampling, population_size=population_size,
                          clients_per_round=config.clients_per_round,
                          rounds=config.num_rounds, participation=participation_of(config))
  tensor_sizes = tasks.get(config.task).tensor_sizes(config)
  engine, engine_reason = engines.resolve(config, previous=previous_engine(stored))
  resolved['resolved'] = {
      'engine': engine,  # what runs the rounds (runtime.engine=auto chooses)
      'engine_reason': engine_reason,
      'sensitivity_factor': _sensitivity_factor(config, tensor_sizes),
      'population_size': population_size,
      'sampling_probability': statement.sampling_probability(
          clients_per_round=config.clients_per_round, population_size=population_size),
      'noise_multiplier': dp['noise_multiplier'],
      **tasks.get(config.task).resolved_extras(config),
      'opted_out_users': opted_out_users,
      'canaries': config.audit.canaries,
      'data_fingerprint': data_fingerprint,
  }
  m = mechanisms.get(dp['mechanism'])
  if m.private and dp['target_epsilon'] is not None:
    if stored is not None and stored['dp'].get('target_epsilon') == dp['target_epsilon']:
      z = stored['dp']['noise_multiplier']
    else:
      z = statement.calibrate(dp_settings(resolved, num_parameters=sum(tensor_sizes)),
                            rounds=config.num_rounds,
                            target_epsilon=dp['target_epsilon'])
    dp['noise_multiplier'] = resolved['resolved']['noise_multiplier'] = z
  if not m.private:
    resolved['resolved']['noise_multiplier'] = 0.0
  settings = dp_settings(resolved, num_parameters=sum(tensor_sizes))
  if m.private:
    settings = m.resolve(settings)  # distributed: the query's scaled parameters
  aggregators.check(settings)
  if settings.derived is not None:  # recorded under the mechanism's name
    resolved['resolved'][m.name] = dict(settings.derived)
  return RunSettings(ml_collections.FrozenConfigDict(resolved), resolved, settings)


def previous_engine(stored: Optional[dict]) -> Optional[str]:
  """The engine that ran a recorded run's rounds (its config.json; None: none recorded)."""
  if stored is None:
    return None
  engine = stored.get('resolved', {}).get('engine') or stored.get('runtime', {}).get('engine')
  return None if engine == engines.AUTO else engine


def _sensitivity_factor(config, tensor_sizes) -> float:
  """How much a secure sum's or compression's rounding can grow an update's norm."""
  return statement.sensitivity_factor(
      secure_sum=config.dp.secure_sum, compression_bits=config.compression.bits,
      compression_threshold=config.compression.threshold, tensor_sizes=tensor_sizes)


def participation_of(config) -> sampling.Participation:
  """The `participation` section as `sampling.Participation` (its defaults for a
  recorded config from before the section)."""
  section = config.get('participation') or {}
  section = section.to_dict() if hasattr(section, 'to_dict') else dict(section)
  return sampling.Participation(**section)


def dp_settings(resolved: dict,
                num_parameters: Optional[int] = None) -> mechanisms.DpSettings:
  """The DP settings of a run's config dict (`config.json`'s layout)."""
  dp, r = resolved['dp'], resolved['resolved']
  return mechanisms.DpSettings(
      mechanism=dp['mechanism'], noise_multiplier=r['noise_multiplier'],
      clip=dp['clip'], clients_per_round=resolved['clients_per_round'],
      population_size=r['population_size'], sampling=resolved['sampling'],
      accountant=dp['accountant'], delta=dp['delta'],
      params={k.name: dp.get(k.name, k.default) for k in mechanisms.config_keys()},
      noise_seed=resolved['seed'] if dp['reproducible_noise'] else None,
      derived=r.get(dp['mechanism']), num_parameters=num_parameters,
      secure_sum=dp['secure_sum'], compression_bits=resolved['compression']['bits'],
      compression_threshold=resolved['compression']['threshold'],
      sensitivity_factor=r['sensitivity_factor'], dropout=resolved['clients']['dropout'],
      opted_out_users=r['opted_out_users'], canaries=r.get('canaries', 0),
      reproducible_noise=dp['reproducible_noise'],
      reproducible_sampling=dp['reproducible_sampling'],
      participation=participation_of(resolved), planned_rounds=resolved['num_rounds'],
      secure_protocol=secagg.parameters_of(resolved.get('secure_aggregation')))


def restate(run_dir: str) -> bool:
  """Writes a recorded run's privacy statement again from its `config.json` and the
  rounds in its `metrics.csv`, with the current statement code (it is a function of
  those alone), keeping the fields other code added (the audit's). Returns whether it
  changed. For committed results after a change to what statements say; the run's
  `evaluation.json` keeps the digest of the statement it finished with."""
  path = os.path.join(run_dir, rundir.PRIVACY_FILE)
  old = rundir.read_json(path)
  rounds = len(rundir.read_csv(os.path.join(run_dir, rundir.METRICS_FILE)))
  new = statement.statement(dp_settings(rundir.read_json(
      os.path.join(run_dir, rundir.CONFIG_FILE))), rounds)
  new.update({k: v for k, v in old.items() if k not in new})
  if new == old:
    return False
  rundir.write_json(path, new)
  return True


def replay_config(run_config: dict, base, *, num_rounds: Optional[int] = None):
  """The config that re-runs a recorded run (its `config.json`).

  The recorded values are set on `base` (the task's current default config), so keys
  added since the run was recorded keep their defaults. The noise multiplier is the
  recorded (calibrated) one, so the replay spends exactly what the recorded run spent
  per round, whatever `num_rounds` it is given.
  """
  flat = rundir.flatten_dict({k: v for k, v in run_config.items() if k != 'resolved'})
  flat['dp.target_epsilon'] = None
  if num_rounds is not None:
    flat['num_rounds'] = num_rounds
  return config_files.apply_overrides(base, flat, source='recorded config')


def _prepare_workdir(config, workdir: str, data: clients.FederatedData):
  """Validates against any run already in `workdir`, under its lock.

  Returns (the run's `RunSettings`, start round, the start round's checkpoint leaves or
  None, the metrics rows up to the start round). Everything that can refuse
  does so before `config.json` is (re)written.
  """
  config_path = os.path.join(workdir, rundir.CONFIG_FILE)
  metrics_path = os.path.join(workdir, rundir.METRICS_FILE)
  rundir.check_regular_files(workdir, (
      rundir.CONFIG_FILE, rundir.METRICS_FILE, rundir.PRIVACY_FILE, rundir.EVALUATION_FILE,
      rundir.AUDIT_FILE, rundir.CALIBRATION_FILE, rundir.USERS_FILE,
      os.path.join(rundir.FIGURE_DIR, 'calibration.png')))
  stored = rundir.read_json(config_path) if os.path.exists(config_path) else None
  run_settings = resolve_config(
      config, population_size=data.population_size + config.audit.canaries,
      stored=stored, opted_out_users=data.num_opted_out,
      data_fingerprint=data.fingerprint)
  start, leaves, rows = 0, None, []
  if stored is None and (rundir.checkpoint_rounds(workdir) or os.path.exists(metrics_path)):
    raise rundir.RunDirectoryError(
        f'{config_path} is missing, but {workdir} holds the metrics or checkpoints of a '
        'run: starting over would mix two runs. Restore the file, or use a new --workdir.')
  if stored is not None:
    rundir.check_same_data(stored, data.fingerprint, config_path)
    diffs = rundir.config_differences(stored, run_settings.resolved,
                                      ignore=(*_MUTABLE_KEYS, _FINGERPRINT_KEY),
                                      added=_ADDED_KEYS)
    if diffs:
      raise ConfigMismatchError(
          f'{workdir} holds a run with a different config; only num_rounds, '
          'dp.max_epsilon, runtime.* and evaluation.* may change when resuming or continuing a run. '
          'Use a new --workdir. Differences:\n  ' + '\n  '.join(diffs))
    done = rundir.latest_checkpoint_round(workdir)
    before, now = previous_engine(stored), run_settings.resolved['resolved']['engine']
    if done and before and before != now:
      logging.warning(
          'Rounds 1-%d of %s ran on the %s engine; the rest run on %s. The engines agree '
          'to float tolerance (tests/vectorized_test.py, tests/mrf_runner_test.py), not '
          'bit for bit: set runtime.engine=%s for an exact replay.',
          done, workdir, before, now, before)
    if done > config.num_rounds:
      raise ConfigMismatchError(
          f'{workdir} holds a run of {done} completed rounds; num_rounds='
          f'{config.num_rounds} is lower, and its metrics.csv and privacy.json cover '
          f'all {done}. Use num_rounds >= {done}, or a new --workdir.')
    start, leaves = rundir.load_latest_checkpoint(workdir, warn=logging.warning,
                                                  belongs=_belongs_to(workdir))
    rows = _resumed_rows(workdir, start)
    if (config.dp.target_epsilon is not None and mechanisms.get(config.dp.mechanism).private
        and config.num_rounds > stored['num_rounds']):
      logging.warning(
          'Continuing to %d rounds with the noise multiplier calibrated for %d: '
          'epsilon will exceed dp.target_epsilon=%g.', config.num_rounds,
          stored['num_rounds'], config.dp.target_epsilon)
  rundir.write_json(config_path, run_settings.resolved)
  return run_settings, start, leaves, rows


def _belongs_to(workdir: str) -> Callable[[int, dict], Optional[str]]:
  """Why a checkpoint's seal (`recording.RunRecorder.record`) is not of the metrics
  table and secret seed in `workdir`; None when it is, or when there is nothing to
  compare (a missing or shorter table is `_resumed_rows`' to refuse; a missing seed
  `rundir.secret_seed`'s; checkpoints from before seals have none)."""
  metrics_path = os.path.join(workdir, rundir.METRICS_FILE)
  secret_path = os.path.join(workdir, rundir.SECRET_SAMPLING_SEED_FILE)

  def belongs(round_num: int, seal: dict) -> Optional[str]:
    checkpoint = os.path.relpath(rundir.checkpoint_path(workdir, round_num), workdir)
    if 'metrics' in seal and os.path.isfile(metrics_path):
      digest = rundir.metrics_digest(metrics_path, round_num)
      if digest is not None and digest != seal['metrics']:
        return (f'{metrics_path}: its rounds 1..{round_num} are not those '
                f'{checkpoint} was saved with; one of them was edited or is another '
                "run's")
    if 'secret_seed' in seal and os.path.isfile(secret_path) and (
        rundir.file_digest(secret_path) != seal['secret_seed']):
      return (f'{secret_path} is not the seed {checkpoint} was sampled with; one of '
              "them is another run's")
    return None

  return belongs


# Metrics rows a resumable run may hold beyond its newest readable checkpoint: the round
# whose checkpoint was not yet written when it stopped, and the round of a checkpoint
# found unreadable (`rundir.load_latest_checkpoint` falls back to the one before).
_ROWS_BEYOND_CHECKPOINT = 2


def _resumed_rows(workdir: str, start: int) -> list[dict]:
  """The metrics rows of rounds 1..`start` (the newest readable checkpoint), read
  once; RunDirectoryError when metrics.csv has fewer (resuming would lose rounds) or
  more than a resume from `start` could explain (starting over would overwrite them)."""
  metrics_path = os.path.join(workdir, rundir.METRICS_FILE)
  if not os.path.isfile(metrics_path):
    if start:
      raise rundir.RunDirectoryError(
          f'{metrics_path} is missing, but {workdir} holds checkpoints up to round '
          f'{start}: resuming would lose the metrics of rounds 1-{start}. Restore '
          'the file, or use a new --workdir.')
    return []
  rows = rundir.read_metrics(metrics_path)
  if len(rows) > start + _ROWS_BEYOND_CHECKPOINT:
    raise rundir.RunDirectoryError(
        f'{metrics_path} has {len(rows)} rounds, but the newest readable checkpoint in '
        f'{os.path.join(workdir, rundir.CHECKPOINT_DIR)} is of round {start}: resuming '
        f'would run rounds {start + 1}-{len(rows)} again over their metrics. Restore the '
        'checkpoints, or use a new --workdir.')
  if len(rows) < start:
    raise rundir.RunDirectoryError(
        f'{metrics_path} has {len(rows)} rows, but {workdir} holds checkpoints up '
        f'to round {start}: resuming would lose rounds. Restore the file, or use a '
        'new --workdir.')
  return rows[:start]


def _evaluate(task, keras_model, model_weights, x: np.ndarray,
              y: np.ndarray) -> dict[str, float]:
  model_weights.assign_weights_to(keras_model)
  return task.eval_metrics(keras_model(x, training=False).numpy(), y)


def train_and_evaluate(config, workdir: str,
                       on_round: Optional[Callable[[dict], None]] = None) -> dict[str, Any]:
  """Trains and evaluates one run into `workdir`; returns the last metrics row.

  `on_round`, if given, is called with each round's metrics row once it is saved
  (the benchmark reads memory there).

  Raises:
    InvalidSettingsError: for invalid settings, before anything is written.
    ConfigMismatchError: when `workdir` holds a run with another config.
    rundir.RunDirectoryError: when `workdir` cannot be used (not writable, in use by
      another process, files missing or damaged).
    DivergenceError: when the loss becomes non-finite or far above its start.
    ConnectionError: when `runtime.ray_address` has no cluster answering, before
      anything is written.
  """
  try:
    check_config(config)
    rundir.check_writable_directory(workdir)
    if config.runtime.get('ray_address'):  # a cluster that is down: before any write
      ray_cluster.check_reachable(config.runtime.ray_address)
    task = tasks.get(config.task)
    data = task.build_data(config)
  except InvalidSettingsError:
    raise
  except ValueError as e:
    raise InvalidSettingsError(str(e)) from e
  with rundir.locked(workdir):
    try:
      prepared = _prepare_workdir(config, workdir, data)
    except (InvalidSettingsError, rundir.RunDirectoryError):
      raise
    except ValueError as e:
      raise InvalidSettingsError(str(e)) from e
    return _train(workdir, data, *prepared, on_round=on_round)


@dataclasses.dataclass
class _Run:
  """What the round loop and the finish share, built once by `_setup`."""

  run_settings: RunSettings
  workdir: str
  data: clients.FederatedData
  sampling_seed: int
  process: Any
  keras_model: Any
  observers: list
  eval_users: Any
  recorder: recording.RunRecorder
  on_round: Optional[Callable[[dict], None]]
  # What the schedule did, against the bounds the accounting used (sampling.
  # ParticipationCheck); rebuilt on resume by sampling the completed rounds again.
  participation: Optional[sampling.ParticipationCheck] = None

  @property
  def config(self) -> ml_collections.FrozenConfigDict:
    return self.run_settings.config

  @property
  def task(self) -> tasks.Task:
    return self.run_settings.task

  @property
  def settings(self) -> mechanisms.DpSettings:
    return self.run_settings.dp

  def sample(self, round_num: int) -> 'Cohort':
    return sample_round(self.config, population_size=self.settings.population_size,
                        seed=self.sampling_seed, round_num=round_num)

  def checked(self, round_num: int, cohort: Optional['Cohort'] = None) -> dict:
    """Records the sampled users of every round up to `round_num` not recorded yet
    (`cohort`: round `round_num`'s, already drawn; the earlier ones, of a resumed run,
    are drawn again) against the schedule's bounds (`ParticipationError` if broken);
    returns the statement's `participation_checked`."""
    if self.participation is None:
      bounds = self.settings.bounds(self.config.num_rounds)
      self.participation = sampling.ParticipationCheck(
          self.settings.population_size, bounds,
          rate=None if bounds is not None else statement.sampling_probability(
              clients_per_round=self.settings.clients_per_round,
              population_size=self.settings.population_size))
    for r in range(self.participation.rounds + 1, round_num + 1):
      drawn = cohort if r == round_num and cohort is not None else self.sample(r)
      self.participation.record(r, drawn.sampled)
    return self.participation.fields()


def observers_for(config, *, keras_model, data) -> list:
  """The round loop's observers (`fl_analytics.runs.observers`) that `config` asks for."""
  if not config.audit.canaries:
    return []
  return [observers.CanaryAudit(
      config, data=data, keras_model=keras_model,
      initial_weights=keras_model.get_weights()[:len(keras_model.trainable_weights)])]


def _train(workdir: str, data: clients.FederatedData, run_settings: RunSettings,
           start_round: int, start_leaves, rows: list, *,
           on_round: Optional[Callable[[dict], None]]) -> dict[str, Any]:
  """The rounds from `start_round` on, and the final evaluation (under the lock):
  setup, the round loop, finish. Everything reads `run_settings`."""
  config, task, settings = run_settings.config, run_settings.task, run_settings.dp
  _log_population(task, data)
  if (start_round >= config.num_rounds
      and not rundir.incomplete_reasons(workdir, config.num_rounds)):
    logging.info('%s already has %d rounds; nothing to do.', workdir, start_round)
    return rows[-1] if rows else {}
  if start_round:
    logging.info('Resuming %s after round %d.', workdir, start_round)
  run = _setup(run_settings, workdir, data, rows, on_round)
  engine_name = run_settings.resolved['resolved']['engine']
  logging.info('Engine: %s (%s).', engine_name, run_settings.resolved['resolved']['engine_reason'])
  with engines.build(
      engine_name, run.process, client_datasets(config), workdir=workdir,
      max_concurrent_computation_calls=config.runtime.max_concurrent_computation_calls,
      config=config, settings=settings, client_work=client_work) as engine, run.recorder:
    state = _initial_state(run, engine, start_round, start_leaves)
    state = _loop(run, engine, state, start_round)
    if run.recorder.rows:  # the final model, also when the budget guard stopped the run
      _finish(run, engine, state)
  return run.recorder.last_row or {}


def _setup(run_settings: RunSettings, workdir, data, rows, on_round) -> _Run:
  """Everything the loop needs that does not run a round."""
  config, task, settings = run_settings.config, run_settings.task, run_settings.dp
  # Cohorts, dropout and step caps: from the recorded seed (simulation), or from a
  # secret one that config.json does not give away (dp.reproducible_sampling=False).
  sampling_seed = (config.seed if settings.reproducible_sampling
                   else rundir.secret_seed(workdir, resuming=bool(rows)))
  process = build_process(config, task, settings)
  # Built after the process: in Keras 2.14 a model built eagerly *before* TFF traces
  # model_fn is left "in an invalid state" by the tracing. Its seeded initializers
  # give the run's initial weights.
  keras_model = task.build_model(config)
  if settings.secure_sum or mechanisms.get(settings.mechanism).secure_aggregation:
    logging.info('Secure aggregation: TFF secure sums, simulated in the clear '
                 '(no cryptography runs in simulation).')
  # The held-out users scored every eval_every rounds: one fixed sample for the run.
  eval_users = data.held_out(config.evaluation.max_users, seed=config.seed)
  logging.info('Evaluation: %d held-out users with examples (of a sample of %d of %d) '
               'every %d rounds, %d examples%s; up to %d users at the end.',
               len(eval_users.users), min(config.evaluation.max_users or math.inf,
                                          data.num_eval_users),
               data.num_eval_users, config.eval_every, len(eval_users.y),
               task.eval_population_note(eval_users.y),
               config.evaluation.final_max_users or data.num_eval_users)
  cli.install_sigterm_handler()
  secret_path = os.path.join(workdir, rundir.SECRET_SAMPLING_SEED_FILE)
  recorder = recording.RunRecorder(
      workdir, columns=METRIC_COLUMNS, rows=rows, num_rounds=config.num_rounds,
      show_reported=bool(config.clients.dropout),
      seal=({} if settings.reproducible_sampling
            else {'secret_seed': rundir.file_digest(secret_path)}))
  return _Run(run_settings, workdir, data, sampling_seed, process, keras_model,
              observers_for(config, keras_model=keras_model, data=data), eval_users,
              recorder, on_round)


def _initial_state(run: _Run, engine, start_round: int, start_leaves):
  """The server state to start from: the checkpoint's (and the observers' state after
  it), or the model's seeded initial weights (and the contract's files)."""
  if start_round:
    state = _restore(run, engine, start_round, start_leaves)
    run.recorder.resume({**statement.statement(run.settings, start_round),
                         'participation_checked': run.checked(start_round)})
    return state
  run.recorder.start(statement.statement(run.settings, 0))
  return engine.set_model_weights(engine.initialize(), tff.learning.models.ModelWeights(
      *models.initial_weights(run.keras_model)))


def _restore(run: _Run, engine, round_num: int, leaves):
  """The server state of checkpoint `round_num`, its observers' state restored; a
  RunDirectoryError naming the file when the arrays are not this run's state (another
  model or run wrote them)."""
  template = engine.initialize()
  num_state = len(tf.nest.flatten(template))
  expected = num_state + sum(len(observer.leaves()) for observer in run.observers)
  try:
    if len(leaves) != expected:
      raise ValueError(f'{len(leaves)} arrays, not the {expected} of its server state')
    state = tf.nest.pack_sequence_as(template, leaves[:num_state])
    shapes = lambda s: [np.shape(w) for w in tf.nest.flatten(engine.get_model_weights(s))]
    if shapes(state) != shapes(template):
      raise ValueError(f'model weights of shapes {shapes(state)}, not {shapes(template)}')
    rest = list(leaves[num_state:])
    for observer in run.observers:
      count = len(observer.leaves())
      observer.restore(rest[:count])
      rest = rest[count:]
  except (ValueError, TypeError) as e:
    raise rundir.RunDirectoryError(
        f'{rundir.checkpoint_path(run.workdir, round_num)} does not fit the run in '
        f'config.json ({e}): another model or run wrote it. Restore the run\'s '
        'checkpoints, or use a new --workdir.') from None
  return state


def _loop(run: _Run, engine, state, start_round: int):
  """The algorithm, round by round: stop if the round would exceed the budget guard;
  sample the cohort (and who of it reports); run the round on the engine; evaluate
  every `eval_every` rounds; record the round. Returns the last state."""
  config = run.config
  upcoming = None  # the next round's cohort, sampled a round ahead (run_round)
  for round_num in range(start_round + 1, config.num_rounds + 1):
    claim = statement.statement(run.settings, round_num)
    if _over_budget(claim, config.dp.max_epsilon, round_num):
      break
    t0 = time.monotonic()  # round_seconds: sampling, local training, aggregation
    cohort = upcoming if upcoming is not None else run.sample(round_num)
    claim = {**claim, 'participation_checked': run.checked(round_num, cohort)}
    for observer in run.observers:
      observer.before_round(round_num, engine, state)
    upcoming = run.sample(round_num + 1) if round_num < config.num_rounds else None
    state, row = run_round(engine, state, cohort, round_num=round_num, data=run.data,
                           task=run.task, settings=run.settings, config=config,
                           upcoming=upcoming)
    for observer in run.observers:
      observer.after_round(round_num, engine, state, cohort)
    row.update(round_seconds=time.monotonic() - t0,
               epsilon=math.inf if claim['epsilon'] is None else claim['epsilon'])
    if round_num % config.eval_every == 0 or round_num == config.num_rounds:
      ev = _evaluate(run.task, run.keras_model, engine.get_model_weights(state),
                     run.eval_users.x, run.eval_users.y)
      row.update({f'eval_{k}': v for k, v in ev.items()})
      _check_divergence(run.task, row, 'eval_loss', config, run.settings)
    run.recorder.record(row, tf.nest.flatten(state) + [
        leaf for observer in run.observers for leaf in observer.leaves()], claim)
    if run.on_round is not None:
      run.on_round(row)
  return state


def _finish(run: _Run, engine, state) -> None:
  """The final evaluation of the last model, the observers' reports, then the files."""
  final_weights = engine.get_model_weights(state)
  result = _final_evaluation(
      run.task, run.config, run.workdir, run.keras_model, final_weights, run.data,
      round_num=int(run.recorder.last_row['round']),
      per_round_users=len(run.eval_users.users))
  claim = statement.statement(run.settings, len(run.recorder.rows))
  reports = {}
  for observer in run.observers:
    report = observer.finish(final_weights, {
        **claim, 'participation_epsilon': statement.participation_epsilon(run.settings)})
    if report is not None:
      reports[observer.report_name] = report
  run.recorder.finish(result, **reports)


def _log_population(task, data: clients.FederatedData) -> None:
  logging.info('Data: %s.', data.source_note)
  logging.info(
      'Population: %d enrolled training users (made when sampled; one without examples '
      'sends a zero update), %d held-out users, %d opted out.', data.population_size,
      data.num_eval_users, data.num_opted_out)


def build_process(config, task, settings: mechanisms.DpSettings):
  """The learning process: `build_unweighted_fed_avg` with the mechanism's aggregator
  (with `audit.canaries`, the same composition with canary clients)."""
  with tf.Graph().as_default():  # shapes only; see the note on keras_model in _train
    specs = [tf.TensorSpec(v.shape, v.dtype) for v in
             task.build_model(config).trainable_variables]
  kwargs = dict(
      # An iterator loop: TFF's default, dataset.reduce, re-instantiates the training
      # step's function at every client call (about 70 ms each here).
      loop_implementation=tff.learning.LoopImplementation.DATASET_ITERATOR,
      model_aggregator=aggregators.build(settings, record_specs=specs))
  client_optimizer = tff.learning.optimizers.build_sgdm(config.client.learning_rate)
  server_optimizer = tff.learning.optimizers.build_sgdm(
      config.server.learning_rate, momentum=config.server.momentum or None)
  if config.audit.canaries:  # the same algorithm, with canary clients
    return canaries.build_process(
        task.model_fn(config), client_optimizer=client_optimizer,
        server_optimizer=server_optimizer, seed=config.seed, **kwargs)
  return tff.learning.algorithms.build_unweighted_fed_avg(
      task.model_fn(config), client_optimizer_fn=client_optimizer,
      server_optimizer_fn=server_optimizer, **kwargs)


def client_work(config, settings: mechanisms.DpSettings):
  """`(population, process, dataset_fn)` of a run, built from scratch: what a remote
  worker of an engine (a Ray actor's client group) runs its clients with."""
  task = tasks.get(config.task)
  return task.build_data(config), build_process(config, task, settings), client_datasets(config)


def client_datasets(config) -> Callable:
  """`(x, y) -> tf.data.Dataset`: one client's local epochs in batches."""
  # tf.data's default graph rewrites run at every iterator creation, once per client
  # per round (about 1.3 ms here, more than the local training of a small client).
  options = tf.data.Options()
  options.experimental_optimization.apply_default_optimizations = False
  options.autotune.enabled = False

  def batches(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y)).repeat(
        config.client.local_epochs).batch(config.client.batch_size).with_options(options)

  return batches


def _over_budget(privacy_statement: dict, max_epsilon: Optional[float], round_num: int) -> bool:
  """The budget guard: True (and a warning) if this round would exceed dp.max_epsilon."""
  if max_epsilon is None or privacy_statement['epsilon'] is None:
    return False
  if privacy_statement['epsilon'] <= max_epsilon:
    return False
  logging.warning(
      'Budget guard: round %d would spend epsilon %.4g > dp.max_epsilon=%g. '
      'Stopping after round %d (checkpointed; privacy.json covers %d rounds).',
      round_num, privacy_statement['epsilon'], max_epsilon, round_num - 1, round_num - 1)
  return True


@dataclasses.dataclass(frozen=True)
class Cohort:
  """Who a round sampled, who of them reports, and each reporter's local-step cap."""

  sampled: np.ndarray  # training-user indices
  reporting: np.ndarray  # the sampled clients that did not drop out
  caps: Optional[np.ndarray]  # per reporting client; None: no cap
  # When the cohort's devices drop out of the SecAgg protocol (None: simulated sums).
  secure_dropouts: Optional[secagg.Dropouts] = None


def sample_round(config, *, population_size: int, seed: int, round_num: int) -> Cohort:
  """The round's cohort: a pure function of `(seed, round_num)`, so a resumed run
  samples what an uninterrupted one did."""
  sampled = sampling.cohort(sampling=config.sampling, population_size=population_size,
                            clients_per_round=config.clients_per_round, seed=seed,
                            round_num=round_num, participation=participation_of(config))
  # Sampled clients that fail to report send nothing (clients.dropout).
  reporting = devices.reporting(sampled, config.clients.dropout, seed=seed,
                                round_num=round_num)
  caps = devices.max_local_steps(reporting, config.clients.max_local_steps, seed=seed,
                                 round_num=round_num)
  section = config.get('secure_aggregation') or {}
  if section.get('sum') != 'protocol':
    return Cohort(sampled, reporting, caps)
  before, after_shares, late = devices.dropout_stages(
      sampled, config.clients.dropout, section.get('dropout_after_input', 0.0), seed=seed,
      round_num=round_num)
  return Cohort(sampled, reporting, caps, secagg.Dropouts(
      before, after_shares, tuple(int(i) for i in late)))


def run_round(engine: engines.Engine, state, cohort: Cohort, *, round_num: int, data,
              task, settings: mechanisms.DpSettings, config,
              upcoming: Optional[Cohort] = None) -> tuple[Any, dict[str, Any]]:
  """One round on `engine`; returns the new state and the round's metrics row.

  `upcoming`: the next round's cohort, whose users are made while this round trains
  (`FederatedData.prefetch`).

  A DP aggregator runs every round, also with nobody reporting (see the module
  docstring); without DP an empty round leaves the model unchanged. Population indices
  from `data.population_size` on are audit canaries (`fl_analytics.privacy.canaries`): they
  are sent to the engine as clients, and counted in no column of the row.
  """
  mechanism = mechanisms.get(settings.mechanism)
  private = mechanism.private
  users = data.population_size  # indices from here on are audit canaries
  reported = int(np.sum(cohort.reporting < users))
  row: dict[str, Any] = {'round': round_num,
                         'cohort_size': int(np.sum(cohort.sampled < users)),
                         'reported': reported}
  if len(cohort.reporting) or private:
    remote = engine.builds_client_data  # users made where the engine runs them
    examples = iter(() if remote else
                    data.train_examples_many(cohort.reporting[cohort.reporting < users]))
    clients = [engines.Client(*((None, None) if remote else next(examples)),
                              max_steps=-1 if cohort.caps is None else int(cohort.caps[k]),
                              user=int(i))
               if i < users else
               engines.Client(*canaries.client_arrays(data.empty_x, i - users))
               for k, i in enumerate(cohort.reporting)]
    if upcoming is not None and remote:
      engine.prefetch(upcoming.reporting, users)
    elif upcoming is not None:
      data.prefetch(upcoming.reporting[upcoming.reporting < users])
    state, metrics = _engine_round(engine, state, clients, cohort, round_num)
    if len(cohort.reporting) and engine.client_bytes is not None:
      row['client_bytes'] = engine.client_bytes
    dp_metrics = metrics['aggregator'].get('dp_query_metrics') or {}
    if 'clip' in dp_metrics:
      row['clip'] = float(dp_metrics['clip'])
  train = metrics['client_work']['train'] if reported else {}
  if reported and train['num_examples']:  # else every reporter sent a zero update
    row['train_loss'] = float(train['loss'])
    row['train_accuracy'] = float(train[task.train_accuracy_key])
    if not private:  # depends on users' data sizes, un-noised (statement.NOT_COVERED)
      row['train_batches'] = int(train['num_batches'])  # local steps, all clients
    _check_divergence(task, row, 'train_loss', config, settings)
  elif not reported:
    logging.warning('Round %d: no sampled client reported (%d sampled)%s.', round_num,
                    len(cohort.sampled), '; the aggregator still ran (noise only)'
                    if private else '; the model is unchanged')
  if mechanism.fixed_clip:
    row['clip'] = settings.clip
  return state, row


def _engine_round(engine: engines.Engine, state, clients, cohort: Cohort, round_num: int):
  """`engine.next`, with the cohort's SecAgg dropouts if the protocol runs; a round the
  protocol cannot finish fails closed, naming the round (the last checkpoint kept)."""
  try:
    if cohort.secure_dropouts is None:
      return engine.next(state, clients)
    return engine.next(state, clients, dropouts=cohort.secure_dropouts)
  except secagg.AbortError as e:
    raise secagg.AbortError(
        f'Round {round_num}: {e} Rounds up to {round_num - 1} are checkpointed; lower '
        'clients.dropout or secure_aggregation.threshold, or raise '
        'secure_aggregation.num_shares.') from None


def _check_divergence(task, row: dict, key: str, config,
                      settings: Optional[mechanisms.DpSettings] = None) -> None:
  """DivergenceError when `row[key]` is non-finite or above DIVERGENCE_FACTOR times the
  task's chance loss. Raised before the round is recorded, so the last checkpoint is
  the last good round. Under a private mechanism the aggregator's clip is checked
  first (`mechanism_audit.clip_probe`): a clip that does not hold is named as the
  audit failure it is, not blamed on the learning rate."""
  value, limit = row[key], DIVERGENCE_FACTOR * task.chance_loss(config)
  if math.isfinite(value) and value <= limit:
    return
  diverged = (f'Training diverged at round {row["round"]}: {key} is {value:.4g}'
              + (f', more than {DIVERGENCE_FACTOR:g} times the loss of a uniform '
                 f'prediction ({task.chance_loss(config):.3g})' if math.isfinite(value)
                 else ''))
  kept = f'Rounds up to {row["round"] - 1} are checkpointed in the run directory.'
  if settings is not None and mechanisms.get(settings.mechanism).private:
    from fl_analytics.privacy import mechanism_audit  # pylint: disable=g-import-not-at-top

    try:
      clip = mechanism_audit.clip_probe(settings)
    except ValueError:  # settings the probe's small cohort cannot run (dp.bits)
      clip = None
    if clip is not None and not clip.ok:
      raise DivergenceError(
          f'{diverged}. Audit failure: the clip of dp.mechanism={settings.mechanism} '
          f'does not hold ({clip.detail}), so neither does the privacy claim. {kept}')
  raise DivergenceError(
      f'{diverged}. Lower client.learning_rate ({config.client.learning_rate:g}) or '
      f'server.learning_rate ({config.server.learning_rate:g}). {kept}')


def _final_evaluation(task, config, workdir, keras_model, model_weights, data,
                      round_num: int, per_round_users: int) -> dict[str, Any]:
  """Per-user metrics, calibration and personalization of the final model
  (`per_round_users`: how many held-out users the per-round metrics scored)."""
  model_weights.assign_weights_to(keras_model)
  t0 = time.monotonic()
  users = data.eval_sample(config.evaluation.final_max_users, seed=config.seed)
  result = evaluation.evaluate_run(
      task, keras_model, keras_model.get_weights(), users, workdir,
      round_num=round_num,
      personalization_steps=config.evaluation.personalization_steps,
      learning_rate=config.client.learning_rate, batch_size=config.client.batch_size,
      seed=config.seed, write_user_rows=config.evaluation.per_user_rows)
  result['held_out_users'] = {
      'total': data.num_eval_users,
      'per_round': per_round_users,
      'final': len(users)}
  users = result['per_user']
  logging.info(
      'Final evaluation (%.1f s): per-user log loss median %.3f (p10 %.3f, p90 %.3f); '
      'worse than the constant baseline for %.1f%% of %d users.',
      time.monotonic() - t0, users['loss_percentiles']['p50'],
      users['loss_percentiles']['p10'], users['loss_percentiles']['p90'],
      100 * users['share_worse_than_baseline_loss'], users['users'])
  return result
