"""What SecAgg+ costs (`make bench-secagg` -> results/benchmark/secagg.json).

- `protocol_point`: one round of the protocol (`fl_analytics.privacy.secagg`) over n
  devices holding a model's update as TFF's `dp.secure_sum` quantizes it (32-bit
  integers, summed mod 2^(32 + ceil(log2 n))): each device's bytes sent and received
  and CPU, the server's CPU per stage, the wall time of the whole simulation, and the
  simulated secure sum's time on the same inputs; optionally with devices dropping
  after their shares (the server then rebuilds their mask keys).
- `predicted_bytes`: every message's size from the wire format, which the measured
  bytes must equal.
- `unit_costs` and `predicted_cpu`: the protocol's operation counts (X25519 agreements,
  Shamir sharing and rebuilding, PRG words) times this machine's cost of each, against
  which the measured CPU is checked (`cpu_ratio`).
- The round on the `vectorized` engine (`suite.engine_point`, churn at 1,000 clients,
  `gaussian_fixed` over a secure sum): simulated against the protocol.
"""

from __future__ import annotations

import gc
import time
from typing import Callable

import numpy as np

from fl_analytics.privacy import secagg
from fl_analytics.privacy import shamir

COHORTS = (100, 1_000, 5_000)
# Parameters of the benchmark's models (benchmarks/suite.py ENGINE_MODELS): the churn
# MLP and the next-action (sequence) model.
MODELS = {'churn_mlp': 577, 'next_action_conv': 17_691}
BITS = 32  # TFF SecureSumFactory's quantization with dp.secure_sum
DROPOUT = 0.05  # the dropout-recovery points: this share drops after sending shares
_HEADER = secagg._HEADER.size  # pylint: disable=protected-access
_SHARE = len(shamir.Share(1, 0).to_bytes())
_SEALED = 8 + 12 + 2 * _SHARE + 16  # id and length, nonce, two shares, GCM tag


def layout(clients: int, parameters: int) -> secagg.Layout:
  return secagg.Layout(((parameters, 2**(BITS + (clients - 1).bit_length())),))


def predicted_bytes(members: int, parameters: int, word_bytes: int,
                    segments: int = 1) -> dict[str, int]:
  """Bytes a device that stays sends and receives with `members` in its neighbourhood
  (itself included) and nobody dropping, message by message."""
  others = members - 1
  received = {'setup': _HEADER + 4 + 12 * segments, 'neighbours': _HEADER + 4 + 68 * others,
              'forwarded shares': _HEADER + _SEALED * others,
              'unmask request': _HEADER + 8 + 4 * members}
  sent = {'keys': _HEADER + 64, 'shares': _HEADER + _SEALED * others,
          'masked input': _HEADER + word_bytes * parameters,
          'unmask shares': _HEADER + (5 + _SHARE) * members}
  return {'sent': sum(sent.values()), 'received': sum(received.values())}


def _seconds(function: Callable, repeats: int) -> float:
  start = time.thread_time()
  for _ in range(repeats):
    function()
  return (time.thread_time() - start) / repeats


def unit_costs(members: int, threshold: int, parameters: int, clients: int) -> dict:
  """This machine's CPU seconds per operation of the protocol, at these sizes."""
  from cryptography.hazmat.primitives.asymmetric import x25519  # pylint: disable=g-import-not-at-top

  a, b = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
  public = secagg._raw(b.public_key())  # pylint: disable=protected-access
  field = secagg.Field(layout(clients, parameters).moduli())
  words = np.zeros(parameters, np.uint64)
  shares = shamir.split(bytes(32), threshold=threshold, num_shares=members)
  share_bytes = shares[0].to_bytes()
  sealed = secagg._ciphertexts_body([(1, bytes(_SEALED - 8))] * members)  # pylint: disable=protected-access
  masked = secagg.encode_vector(words, field_bytes := layout(clients, parameters).word_bytes)
  return {
      'agreement_s': _seconds(lambda: secagg._pairwise_seed(a, public, bytes(16), b'x'), 200),  # pylint: disable=protected-access
      'share_s': _seconds(lambda: shamir.split(bytes(32), threshold=threshold,
                                               num_shares=members), 20),
      'rebuild_s': _seconds(lambda: shamir.combine(shares, threshold=threshold), 20),
      'mask_s': _seconds(lambda: field.add(words, secagg.prg(bytes(32), field)), 20),
      # the server's handling: a share read, an encrypted share routed, an input read
      'read_share_s': _seconds(lambda: shamir.Share.from_bytes(share_bytes), 200),
      'route_s': _seconds(lambda: secagg._ciphertexts_body(  # pylint: disable=protected-access
          secagg._parse_ciphertexts(sealed)), 20) / members,  # pylint: disable=protected-access
      'read_input_s': _seconds(lambda: secagg.decode_vector(masked, parameters,
                                                            field_bytes), 20),
  }


def predicted_cpu(unit: dict, *, members: int, clients: int, dropped: int) -> dict:
  """CPU seconds from the operation counts: a device agrees two keys with each
  neighbour (the key that seals the shares both ways, and their mask's seed), shares
  two secrets, expands a mask per member; the server rebuilds each
  survivor's seed, adds its input and removes its mask, and rebuilds each dropped
  device's key and the masks it shared with its surviving neighbours; besides, it
  routes every encrypted share and reads every input and unmasking share."""
  others = members - 1
  client = 2 * others * unit['agreement_s'] + 2 * unit['share_s'] + members * unit['mask_s']
  survivors = clients - dropped
  server = (clients * others * unit['route_s']
            + survivors * (unit['read_input_s'] + members * unit['read_share_s'])
            + survivors * (unit['rebuild_s'] + 2 * unit['mask_s'])
            + dropped * (unit['rebuild_s'] + others * (unit['agreement_s'] + unit['mask_s'])))
  return {'client_s': client, 'server_s': server}


def protocol_point(clients: int, parameters: int, *, dropout: float = 0.0,
                   seed: int = 0) -> dict:
  """One protocol round (module docstring); RuntimeError if its sum is not the plain
  sum of the survivors' inputs."""
  lay = layout(clients, parameters)
  rng = np.random.default_rng(seed)
  dropped = int(round(dropout * clients))
  inputs = [rng.integers(0, 2**BITS, parameters, dtype=np.uint64)
            for _ in range(clients - dropped)]
  start = time.perf_counter()
  plain = np.sum(np.stack(inputs).astype(np.int64), axis=0)  # the simulated sum
  simulated_s = time.perf_counter() - start
  # The collector off while timing, as `timeit` does: a collection that the heap
  # left by earlier points triggers would be charged to whichever stage it falls in.
  gc.collect()
  gc.disable()
  try:
    outcome = secagg.run_cohort(inputs, lay, secagg.Parameters(),
                                secagg.Dropouts(after_shares=dropped))
  finally:
    gc.enable()
  if not np.array_equal(outcome.total.astype(np.int64), plain):
    raise RuntimeError(f'The protocol\'s sum differs from the plain sum ({clients} clients).')
  c = outcome.costs
  stays = slice(0, clients - dropped)
  unit = unit_costs(c.neighbourhood, c.threshold, parameters, clients)
  predicted = predicted_cpu(unit, members=c.neighbourhood, clients=clients, dropped=dropped)
  server_s = sum(c.server_cpu.values())
  return {
      'clients': clients, 'parameters': parameters, 'dropped_after_shares': dropped,
      'neighbourhood': c.neighbourhood, 'threshold': c.threshold,
      'client_sent_bytes': float(np.mean(c.sent[stays])),
      'client_received_bytes': float(np.mean(c.received[stays])),
      'predicted': predicted_bytes(c.neighbourhood, parameters, lay.word_bytes),
      'client_cpu_ms': 1e3 * float(np.mean(c.client_cpu[stays])),
      'client_cpu_ms_max': 1e3 * float(np.max(c.client_cpu[stays])),
      'client_stage_cpu_ms': {k: 1e3 * v / clients for k, v in c.client_stage_cpu.items()},
      'server_cpu_s': server_s, 'server_stage_cpu_s': c.server_cpu, 'wall_s': c.wall,
      'simulated_sum_s': simulated_s, 'unit_costs': unit,
      'predicted_client_cpu_ms': 1e3 * predicted['client_s'],
      'predicted_server_cpu_s': predicted['server_s'],
      'client_cpu_ratio': float(np.mean(c.client_cpu[stays])) / predicted['client_s'],
      'server_cpu_ratio': server_s / predicted['server_s'],
  }


def table(rows) -> str:
  lines = [f'{"clients":>7} {"params":>7} {"drop":>5} {"k":>3} {"t":>3} {"sent B":>9} '
           f'{"recv B":>7} {"client ms":>9} {"x pred":>6} {"server s":>8} {"x pred":>6} '
           f'{"wall s":>7} {"plain s":>8}']
  for r in rows:
    lines.append(
        f'{r["clients"]:>7,} {r["parameters"]:>7,} {r["dropped_after_shares"]:>5} '
        f'{r["neighbourhood"]:>3} {r["threshold"]:>3} {r["client_sent_bytes"]:>9,.0f} '
        f'{r["client_received_bytes"]:>7,.0f} {r["client_cpu_ms"]:>9.2f} '
        f'{r["client_cpu_ratio"]:>6.2f} {r["server_cpu_s"]:>8.3f} '
        f'{r["server_cpu_ratio"]:>6.2f} {r["wall_s"]:>7.2f} {r["simulated_sum_s"]:>8.4f}')
  return '\n'.join(lines)


def round_summary(simulated: dict, protocol: dict, point: dict) -> dict:
  """A round on the engine over the simulated sum and over the protocol
  (`suite.engine_point` rows), and the protocol's critical path at the same size
  (`point`): in a deployment the devices work side by side, so a round waits for the
  server's CPU and the slowest device's, not for every device's in turn."""
  critical = simulated['round_s'] + point['server_cpu_s'] + 1e-3 * point['client_cpu_ms_max']
  return {'model': simulated['model'], 'clients': simulated['clients_per_round'],
          'parameters': simulated['parameters'], 'simulated_round_s': simulated['round_s'],
          'protocol_round_s': protocol['round_s'],
          'protocol_over_simulated': protocol['round_s'] / simulated['round_s'],
          'critical_path_round_s': critical,
          'critical_path_over_simulated': critical / simulated['round_s']}


def round_line(r: dict) -> str:
  return (f'{r["model"]} at {r["clients"]:,} clients, vectorized: {r["simulated_round_s"]:.3f} '
          f's a round over the simulated secure sum, {r["protocol_round_s"]:.3f} s over the '
          f'protocol ({r["protocol_over_simulated"]:.2f}x, every device in turn); '
          f'{r["critical_path_round_s"]:.3f} s with devices side by side '
          f'({r["critical_path_over_simulated"]:.2f}x)')


def markdown(result: dict) -> str:
  """The cost table of docs/secure_aggregation.md, from secagg.json."""
  lines = ['| clients | parameters | dropped | neighbourhood k, t | device sends | device '
           'receives | device CPU (x model) | server CPU (x model) | simulation wall | '
           'simulated sum |', '|' + '---|' * 10]
  for r in result['rows']:
    lines.append(
        f'| {r["clients"]:,} | {r["parameters"]:,} | {r["dropped_after_shares"]} | '
        f'{r["neighbourhood"]}, {r["threshold"]} | {r["client_sent_bytes"]:,.0f} B | '
        f'{r["client_received_bytes"]:,.0f} B | {r["client_cpu_ms"]:.2f} ms '
        f'({r["client_cpu_ratio"]:.2f}) | {r["server_cpu_s"]:.3f} s '
        f'({r["server_cpu_ratio"]:.2f}) | {r["wall_s"]:.2f} s | {r["simulated_sum_s"]:.4f} s |')
  return '\n'.join(lines)
