"""Evaluation metrics of the tasks, in NumPy: binary (churn) and multiclass (next action)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def loss_and_correct(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray,
                                                                      np.ndarray]:
  """Per-example log loss and top-1 correctness: one logit per example (binary, at
  logit 0) or one per class (integer labels)."""
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels).reshape(-1)
  if logits.ndim == 1 or logits.shape[1] == 1:
    z, y = logits.reshape(-1), labels.astype(np.float64)
    # log(1 + exp(-|z|)) + max(z, 0) - z * y: the stable logistic loss.
    return np.logaddexp(0.0, z) - z * y, (z > 0) == (y > 0.5)
  return (softmax_cross_entropy(logits, labels),
          np.argmax(logits, axis=1) == labels.astype(np.int64))


def binary_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Mean log loss, accuracy at logit 0, ROC AUC and base rate of the labels.

  AUC is the Mann-Whitney statistic (ties count one half); NaN when only one class
  is present.
  """
  logits = np.asarray(logits, np.float64).reshape(-1)
  labels = np.asarray(labels, np.float64).reshape(-1)
  losses, correct = loss_and_correct(logits, labels)
  loss, accuracy = losses.mean(), correct.mean()
  pos = labels > 0.5
  n_pos, n_neg = int(pos.sum()), int((~pos).sum())
  if n_pos == 0 or n_neg == 0:
    auc = float('nan')
  else:
    ranks = stats.rankdata(logits)
    auc = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
  return {
      'loss': float(loss),
      'accuracy': float(accuracy),
      'auc': float(auc),
      'base_rate': float(labels.mean()),
  }


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Per-example cross entropy of integer `labels` under softmax(`logits`)."""
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels).reshape(-1).astype(np.int64)
  log_norm = np.logaddexp.reduce(logits, axis=1)
  return log_norm - logits[np.arange(len(labels)), labels]


def multiclass_metrics(logits: np.ndarray, labels: np.ndarray, *,
                       top_k: int = 3) -> dict[str, float]:
  """Mean log loss, top-1 and top-k accuracy (ties broken by class index), and the
  accuracy of always predicting the most frequent label (the trivial baseline)."""
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels).reshape(-1).astype(np.int64)
  if not len(labels):
    nan = float('nan')
    return {'loss': nan, 'accuracy': nan, f'top{top_k}_accuracy': nan,
            'majority_accuracy': nan}
  order = np.argsort(-logits, axis=1, kind='stable')
  return {
      'loss': float(np.mean(softmax_cross_entropy(logits, labels))),
      'accuracy': float(np.mean(order[:, 0] == labels)),
      f'top{top_k}_accuracy': float(np.mean(np.any(order[:, :top_k] == labels[:, None],
                                                   axis=1))),
      'majority_accuracy': float(np.bincount(labels).max() / len(labels)),
  }


def online_bigram_ranks(prev: np.ndarray, targets: np.ndarray, *, num_classes: int,
                        fallback: np.ndarray, top_k: int = 3) -> np.ndarray:
  """One user's per-user bigram baseline, learnt online on its own examples in time
  order: example i is predicted from the examples before it only, ranking the actions
  by how often they followed `prev[i]` before, then by how often the user took them,
  then by `fallback` (population frequencies, in [0, 1)). Returns the top_k ranked
  actions `[n, top_k]`."""
  n = len(targets)
  onehot = np.zeros((n, num_classes))
  onehot[np.arange(n), targets] = 1.0
  before = np.tril(np.ones((n, n)), -1)  # [i, j]: example j is before example i
  bigram = (before * (prev[:, None] == prev[None, :])) @ onehot  # [n, V] counts
  own = before @ onehot
  scale = n + 1.0
  score = bigram * scale**2 + own * scale + np.asarray(fallback)[None, :]
  return np.argsort(-score, axis=1, kind='stable')[:, :top_k]
