"""DP-FedAvg churn prediction on the embedded synthetic population.

Run:
  .venv/bin/python experiments/train.py --config=configs/churn.py --workdir=/tmp/churn
Override any value, e.g. --config.dp.target_epsilon=2 --config.num_rounds=50.

Runtime and results on this machine (2 cores): a run of this config is one point of
`make demo` (docs/results.md quotes the demo's output and time). Every key's meaning is
the comment beside it or above it; docs/configuration.md is generated from this file
(`make docs`).
"""

import ml_collections
from ml_collections import config_dict

from fl_analytics.privacy import mechanisms


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # churn (this file) or next_action (configs/next_action.py, which adds its keys)
  c.task = 'churn'
  # Seeds the initial model, client sampling (with dp.reproducible_sampling) and the DP
  # noise (with dp.reproducible_noise).
  c.seed = 0
  c.num_rounds = 40  # federated rounds
  # Expected cohort (poisson: each training user is sampled with probability
  # clients_per_round / population_size) or exact cohort (fixed_size).
  c.clients_per_round = 50
  # poisson | fixed_size (uniform without replacement, accounted under replace-one
  # neighbours) | shuffle (cyclic passes over one shuffle of the users, for tree) |
  # min_separation ((k, b)-participation: min_separation groups in turn) | available
  # (availability-driven check-ins, capped by participation.*); the last two claim no
  # amplification (fl_analytics/privacy/sampling.py).
  c.sampling = 'poisson'
  # What production schedules bound (sampling=min_separation or available; the
  # accounting uses these bounds, and the run checks them round by round).
  c.participation = ml_collections.ConfigDict()
  # At most this many participations per user (None: as many as min_separation allows).
  c.participation.max_participations = config_dict.placeholder(int)
  # Two participations of a user are at least this many rounds apart (1: consecutive
  # rounds allowed).
  c.participation.min_separation = 1
  c.participation.rounds_per_day = 24  # available: rounds per day (the round's hour)
  # available: hours a day each device is idle, charging and on an unmetered network
  # (a window starting around 22:00).
  c.participation.window_hours = 8.0
  c.eval_every = 5  # evaluate on held-out users every this many rounds, and after the last

  # The population (docs/data.md).
  c.data = ml_collections.ConfigDict()
  # synthetic (the embedded generator) or events:PATH (a CSV or Parquet event log with
  # user_id, timestamp, event; docs/data.md). With a file, num_users, num_days and the
  # skew knobs do not apply.
  c.data.source = 'synthetic'
  # The behaviour model (fl_analytics/data/generators.py): archetypes (version 1: each
  # session's actions drawn independently from the user's mix of 10 events) or
  # app_paths (version 3: sessions as paths through an app of 59 actions, funnels,
  # installs, adoption, rhythm, churn with causes; calibrated to published app
  # usage). It also fixes the vocabulary of actions that the tasks, the analytics and
  # an event file use.
  c.data.generator = 'archetypes'
  # Event names outside the vocabulary in an event file: drop (counted in the log) or
  # error.
  c.data.unknown_events = 'drop'
  # Event files: timestamps outside [min_time, max_time) are refused with their row
  # (Unix seconds or ISO 8601).
  c.data.min_time = '1970-01-01T00:00:00Z'
  c.data.max_time = '2100-01-01T00:00:00Z'
  # The population (users, their logs, the held-out split) has its own seed, so runs
  # with different `seed`s differ only in training randomness and share one test set.
  c.data.seed = 0
  # Training users + held-out users; each is generated when first sampled or evaluated,
  # so the population can be 10^6 (docs/performance.md).
  c.data.num_users = 1000
  c.data.eval_fraction = 0.2  # share of users held out, never trained on
  c.data.num_days = 90  # days of logs
  c.data.window_days = 14  # trailing feature window
  c.data.horizon_days = 7  # churn = no event in the next horizon_days days
  c.data.stride_days = 2  # days between two observation days of a user
  c.data.quantity_skew = 1.0  # >= 0: spread of data volume between users
  c.data.label_skew = 1.0  # [0, 1]: how much churn rates differ between user archetypes
  c.data.feature_skew = 1.0  # [0, 1]: how much feature usage differs between users

  # The task's model.
  c.model = ml_collections.ConfigDict()
  c.model.hidden_units = 32  # hidden layer of the MLP (0: logistic regression)

  # Local SGD on the device.
  c.client = ml_collections.ConfigDict()
  c.client.learning_rate = 0.1  # local SGD step size
  c.client.batch_size = 16  # examples per local step
  c.client.local_epochs = 1  # passes over the device's examples each round

  # Realistic clients (fl_analytics/data/devices.py; docs/data.md).
  c.clients = ml_collections.ConfigDict()
  # Fraction of users who opted out: never sampled, never evaluated, not in the
  # population the accountant uses.
  c.clients.opt_out = 0.0
  # Probability that a sampled client fails to report; the round completes with the
  # others (not with distributed).
  c.clients.dropout = 0.0
  # Per-client cap on local steps (batches) each round: none | uniform:LOW:HIGH |
  # lognormal:MEDIAN:SIGMA.
  c.clients.max_local_steps = 'none'

  # The server's optimizer on the averaged update.
  c.server = ml_collections.ConfigDict()
  c.server.learning_rate = 1.0  # server SGD step size
  c.server.momentum = 0.9  # server SGD momentum, in [0, 1)

  # After the last round, on held-out users (fl_analytics/runs/evaluation.py).
  c.evaluation = ml_collections.ConfigDict()
  # Personalization: fine-tune on each held-out user's early days for this many local
  # SGD steps and score on their later days (0: skip); may change when resuming.
  c.evaluation.personalization_steps = 5
  # Write eval_users.csv, one row per held-out user. Off by default: held-out users get
  # no DP protection and a row can be linked back to its user (docs/privacy.md).
  c.evaluation.per_user_rows = False
  # With an event file (data.source=events:PATH), per_user_rows is refused unless this
  # is True too: a row can be linked back to its real user by whoever has the event
  # file (its example count and baseline loss) or also the final model (its losses).
  c.evaluation.per_user_rows_of_real_users = False
  # Held-out users scored every eval_every rounds: a fixed sample of this many, seeded
  # by seed (0: all of them); the final evaluation scores a sample of final_max_users.
  # Both bound the cost of evaluation at any population size; evaluation.json records
  # how many were scored.
  c.evaluation.max_users = 1000
  c.evaluation.final_max_users = 10000

  # Differential privacy (docs/privacy.md).
  c.dp = ml_collections.ConfigDict()
  # none (plain FedAvg) | gaussian_fixed | gaussian_adaptive | tree (DP-FTRL, needs
  # sampling=shuffle) | distributed (Skellam over secure aggregation, needs
  # sampling=fixed_size)
  c.dp.mechanism = 'gaussian_adaptive'
  # Noise stddev / clip; replaced by the calibrated value when target_epsilon is set.
  c.dp.noise_multiplier = 1.0
  # Calibrate the noise so that num_rounds rounds spend this epsilon.
  c.dp.target_epsilon = config_dict.placeholder(float)
  c.dp.delta = 1e-5  # the delta of (epsilon, delta); must be below 1 / population size
  c.dp.accountant = 'rdp'  # rdp | pld (dp_accounting; pld analyses poisson sampling only)
  # Budget guard: stop cleanly, checkpointed, before the round that would exceed it.
  c.dp.max_epsilon = config_dict.placeholder(float)
  # The L2 clip of each user's update (the initial clip of adaptive clipping).
  c.dp.clip = 0.2
  # Each mechanism's own keys (adaptive clipping's quantile and step size, the
  # distributed mechanism's bit width, ...), declared with the mechanism
  # (fl_analytics/privacy/mechanisms/), at their defaults.
  mechanisms.add_config_keys(c.dp)
  # Simulation: draw the DP noise from `seed` so runs repeat exactly and resume
  # bit-exactly. False: TF Privacy's unseeded noise, as a deployment needs.
  c.dp.reproducible_noise = True
  # Simulation: draw the cohorts (and dropout, step caps) from `seed`, which config.json
  # records. False: from a secret seed drawn from the OS at the run's start and kept
  # only in the run directory (secret_sampling_seed, mode 0600), as a deployment needs.
  c.dp.reproducible_sampling = True
  # Sum the clipped updates with TFF's SecureSumFactory (gaussian_fixed and tree only;
  # simulated by TFF's local runtime). The accounting covers its quantization.
  c.dp.secure_sum = False

  # How the round's secure sums run (dp.secure_sum=True, dp.mechanism=distributed):
  # docs/privacy.md, fl_analytics/privacy/secagg.py.
  c.secure_aggregation = ml_collections.ConfigDict()
  # simulated: summed in the clear, as TFF's local runtime does (fast). protocol: the
  # SecAgg+ protocol run for real between the simulated devices and the server (X25519,
  # AES, Shamir shares); the same sums, bit for bit (mapreduce and vectorized engines).
  c.secure_aggregation.sum = 'simulated'
  # protocol: each device's neighbourhood, itself included (odd >= 3; 0: 2 ceil(log2 n)
  # + 1 for n devices; at least n: every device, the original SecAgg).
  c.secure_aggregation.num_shares = 0
  # protocol: the Shamir threshold t = floor(threshold * neighbourhood) + 1. Fewer than
  # t colluding neighbours learn nothing of a device's masks; a round survives as long
  # as every neighbourhood keeps t devices.
  c.secure_aggregation.threshold = 0.5
  # protocol: the chance that a reporting device drops after sending its masked input
  # (its update is in the sum; it sends no shares to unmask). Devices that drop out
  # (clients.dropout) drop before sending their keys or after sending their shares.
  c.secure_aggregation.dropout_after_input = 0.0

  # Uniform quantization of the updates clients send (TFF EncodedSumFactory; none,
  # gaussian_fixed and tree). With DP the accountant covers the quantization error. The
  # bytes each client sent per round are in metrics.csv (client_bytes).
  c.compression = ml_collections.ConfigDict()
  # Bits per element of every tensor of more than `threshold` elements (1..16; 0: off).
  c.compression.bits = 0
  c.compression.threshold = 100  # tensors of at most this many elements stay float32

  # Empirical privacy audit (fl_analytics.privacy.canaries, fl_analytics.privacy.audit;
  # docs/audit.md): audit.json compares the estimated epsilon with the claim.
  c.audit = ml_collections.ConfigDict()
  # Canary clients that join the sampled population (0: no audit; else at least 20).
  c.audit.canaries = 0
  # Canary directions never inserted (unset: as many as canaries).
  c.audit.unseen_canaries = config_dict.placeholder(int)
  c.audit.alpha = 0.05  # the audit's lower bound holds with confidence 1 - alpha

  # How rounds run (docs/performance.md, docs/cluster.md); may change when resuming.
  c.runtime = ml_collections.ConfigDict()
  # auto: vectorized where it can stack the task's model, else mapreduce (logged with
  # the reason; a resumed run keeps its engine). mapreduce: the process's MapReduceForm
  # run in this process; cpp: TFF's local C++ runtime (a worker_binary); vectorized: as
  # mapreduce, the cohort trained as stacked computations (every task, mechanism and
  # option; client-side steps beyond clipping run as TFF's client graph, per client).
  # Same results to float tolerance.
  c.runtime.engine = 'auto'
  # vectorized: engine memory for a chunk of a round's clients trained at once (their
  # stacked weights, one step's activations, their batches; an estimate).
  c.runtime.vectorized_memory_mb = 1024.0
  c.runtime.max_concurrent_computation_calls = -1  # cpp engine; <= 0: no limit
  # mapreduce/vectorized: a round's clients in this many fixed groups (client k in
  # group k % groups), merged in order; results depend on it (float sums), not on
  # where the groups run. 0: 2 for mapreduce, 1 for vectorized; with ray_address, one
  # per ray_cpus_per_group CPUs of the cluster.
  c.runtime.client_groups = 0
  # 'auto' or HOST:PORT of a Ray cluster's head: each client group runs on a Ray actor
  # there, which makes its clients' data itself (docs/cluster.md).
  c.runtime.ray_address = config_dict.placeholder(str)
  c.runtime.ray_cpus_per_group = 1  # CPUs of each Ray actor
  return c
