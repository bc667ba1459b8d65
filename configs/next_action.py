"""DP-FedAvg next-action prediction on the embedded synthetic population.

Predict a user's next action in a session from the `data.context_events` actions before
it, with a small sequence model (an embedding, a causal convolution and a dense layer;
or, with model.architecture=gru and data.context_gaps=True, a GRU over the actions and
their time gaps; fl_analytics/tasks/next_action.py), trained federated with the same
mechanisms as churn; top-1 and top-3 accuracy on held-out users.

Run:
  .venv/bin/python experiments/train.py --config=configs/next_action.py --workdir=DIR
Every other key is the churn config's (configs/churn.py), e.g.
--config.dp.target_epsilon=2 --config.dp.mechanism=gaussian_fixed.
"""

import ml_collections

from fl_analytics.core import config_files


def _churn_config():
  """configs/churn.py, loaded by path (config files are not a package on sys.path)."""
  return config_files.load_sibling(__file__, 'churn.py')


def get_config() -> ml_collections.ConfigDict:
  c = _churn_config()
  c.task = 'next_action'  # a user's next action in a session
  c.data.context_events = 8  # actions before the predicted one (padded at session start)
  c.data.max_examples_per_user = 128  # a user's most recent actions to predict
  # Also give each context action its time-gap bucket (the seconds since the action
  # before it); the gru reads them, the conv model does not.
  c.data.context_gaps = False
  c.model = ml_collections.ConfigDict()  # replaces churn's hidden_units
  # conv: embedding, causal convolution, dense (4,314 parameters with archetypes' 10
  # actions, 17,691 with app_paths' 59); gru: action and gap embeddings, a GRU, dense
  # (about 2.7*10^5 with gru_units=256, embedding_dim=64 and app_paths' 59 actions);
  # the gru needs data.context_gaps=True.
  c.model.architecture = 'conv'
  c.model.embedding_dim = 16  # width of each action's embedding
  c.model.filters = 32  # conv: channels of the causal convolution
  c.model.kernel_size = 3  # conv: actions the convolution sees at once
  c.model.gru_units = 256  # gru: width of the recurrent state
  c.client.batch_size = 32  # examples per local step
  return c
