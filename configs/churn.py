"""DP-FedAvg churn prediction on the embedded synthetic population.

Run:
  .venv/bin/python experiments/train.py --config=configs/churn.py --workdir=/tmp/churn
Override any value, e.g. --config.dp.target_epsilon=2 --config.num_rounds=50.

Runtime and results on this machine (2 cores): see the README ("What the demo prints"),
which quotes a logged run of this config.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = 'churn'
  c.seed = 0
  c.num_rounds = 40
  c.clients_per_round = 50  # expected (poisson) or exact (fixed_size) cohort
  # poisson | fixed_size (uniform without replacement) | shuffle (cyclic passes; tree)
  c.sampling = 'poisson'
  c.eval_every = 5

  c.data = ml_collections.ConfigDict()
  # synthetic (the embedded generator) or events:PATH (a CSV or Parquet event log with
  # user_id, timestamp, event; README "Real event logs"). With a file, num_users,
  # num_days and the skew knobs do not apply.
  c.data.source = 'synthetic'
  c.data.unknown_events = 'drop'  # event names outside the vocabulary: drop | error
  # Event files: timestamps outside [min_time, max_time) are refused with their row
  # (Unix seconds or ISO 8601).
  c.data.min_time = '1970-01-01T00:00:00Z'
  c.data.max_time = '2100-01-01T00:00:00Z'
  # The population (users, their logs, the held-out split) has its own seed, so runs
  # with different `seed`s differ only in training randomness and share one test set.
  c.data.seed = 0
  c.data.num_users = 1000  # training users + held-out users
  c.data.eval_fraction = 0.2  # share of users held out for evaluation
  c.data.num_days = 90  # days of data collection
  c.data.window_days = 14  # trailing feature window
  c.data.horizon_days = 7  # churn = no event in the next horizon_days days
  c.data.stride_days = 2  # days between two observation days of a user
  c.data.quantity_skew = 1.0  # >= 0: spread of data volume between users
  c.data.label_skew = 1.0  # [0, 1]: how much churn rates differ between users
  c.data.feature_skew = 1.0  # [0, 1]: how much feature usage differs between users

  c.model = ml_collections.ConfigDict()
  c.model.hidden_units = 32

  c.client = ml_collections.ConfigDict()
  c.client.learning_rate = 0.1
  c.client.batch_size = 16
  c.client.local_epochs = 1

  # Realistic clients (fl_analytics/devices.py): users who opted out (never sampled,
  # never used), sampled clients failing to report, per-client caps on local steps
  # (none | uniform:LOW:HIGH | lognormal:MEDIAN:SIGMA, in batches per round).
  c.clients = ml_collections.ConfigDict()
  c.clients.opt_out = 0.0
  c.clients.dropout = 0.0
  c.clients.max_local_steps = 'none'

  c.server = ml_collections.ConfigDict()
  c.server.learning_rate = 1.0
  c.server.momentum = 0.9

  # After the last round, on held-out users (fl_analytics/evaluation.py): per-user
  # metrics, calibration, and personalization (fine-tune on a user's early days for
  # this many local SGD steps, score on their later days; 0: skip).
  c.evaluation = ml_collections.ConfigDict()
  c.evaluation.personalization_steps = 5
  # Write eval_users.csv, one row per held-out user. Off by default: held-out users get
  # no DP protection and a row can be linked back to its user (README "Privacy").
  c.evaluation.per_user_rows = False
  # Held-out users scored every eval_every rounds: a fixed sample of this many, seeded
  # by seed (0: all of them); the final evaluation scores a sample of final_max_users.
  # Both bound the cost of evaluation at any population size; evaluation.json records
  # how many were scored.
  c.evaluation.max_users = 1000
  c.evaluation.final_max_users = 10000

  c.dp = ml_collections.ConfigDict()
  # none | gaussian_fixed | gaussian_adaptive | tree (DP-FTRL, needs sampling=shuffle)
  # | distributed (Skellam over secure aggregation, needs sampling=fixed_size)
  c.dp.mechanism = 'gaussian_adaptive'
  c.dp.noise_multiplier = 1.0  # ignored when target_epsilon is set
  c.dp.target_epsilon = config_dict.placeholder(float)  # calibrate noise to this
  c.dp.delta = 1e-5
  c.dp.accountant = 'rdp'  # rdp | pld (pld: poisson sampling only)
  c.dp.max_epsilon = config_dict.placeholder(float)  # budget guard: stop before it
  c.dp.clip = 0.2  # fixed clip, or the initial clip of adaptive clipping
  c.dp.target_unclipped_quantile = 0.5
  c.dp.clip_learning_rate = 0.2
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
  # distributed: bit width of the modular secure sum (TFF: 1..22; 12 suits ~100
  # clients, 16 ~1000). Its noise is drawn by TFF from a timestamp seed.
  c.dp.bits = 16

  # Uniform quantization of the updates clients send (TFF EncodedSumFactory; none,
  # gaussian_fixed and tree). bits 0: off; 1..16 bits for every tensor of more than
  # `threshold` elements. With DP the accountant covers the quantization error. The
  # bytes each client sent per round are in metrics.csv (client_bytes).
  c.compression = ml_collections.ConfigDict()
  c.compression.bits = 0
  c.compression.threshold = 100

  # Empirical privacy audit (fl_analytics.canaries, fl_analytics.audit; README
  # "Auditing the claimed epsilon"): `canaries` canary clients join the sampled
  # population (0: no audit), `unseen_canaries` directions are never inserted (unset:
  # as many); audit.json compares the estimated epsilon with the claim at confidence
  # 1 - alpha.
  c.audit = ml_collections.ConfigDict()
  c.audit.canaries = 0
  c.audit.unseen_canaries = config_dict.placeholder(int)
  c.audit.alpha = 0.05

  c.runtime = ml_collections.ConfigDict()
  # mapreduce: the process's MapReduceForm run in this process (fast); cpp: TFF's
  # local C++ runtime (a worker_binary); vectorized: as mapreduce, the cohort trained
  # as one computation (churn with none, gaussian_fixed or gaussian_adaptive). Same results; may
  # change when resuming.
  c.runtime.engine = 'mapreduce'
  c.runtime.max_concurrent_computation_calls = -1  # cpp engine; <= 0: no limit
  # mapreduce/vectorized: a round's clients in this many fixed groups (client k in
  # group k % groups), merged in order; results depend on it (float sums), not on
  # where the groups run. 0: 2 for mapreduce, 1 for vectorized; with ray_address, one
  # per ray_cpus_per_group CPUs of the cluster.
  c.runtime.client_groups = 0
  # 'auto' or HOST:PORT of a Ray cluster's head: each client group runs on a Ray actor
  # there, which makes its clients' data itself (README, "Running on a cluster").
  c.runtime.ray_address = config_dict.placeholder(str)
  c.runtime.ray_cpus_per_group = 1
  return c
