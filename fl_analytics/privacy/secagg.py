"""Secure aggregation for real: the SecAgg+ protocol over simulated devices.

The protocol of Bonawitz et al. 2017 ("Practical secure aggregation for privacy-
preserving machine learning", CCS) with the sparse neighbourhoods of Bell, Bonawitz,
Gascón, Lepoint and Raykova 2020 ("Secure single-server aggregation with
(poly)logarithmic overhead", CCS: SecAgg+), in the honest-but-curious setting (no
signatures, no consistency round). Every message is a `bytes` object; the server side
(`Server`) handles only those bytes and the protocol's output. The stages are those of
Flower's SecAgg+ workflow:

0. setup (server to every device): the round's id, the vector's layout (segments of
   coordinates and the modulus R of each: the masked sum is computed mod R), the
   neighbourhood size and the threshold t.
1. advertise keys: each device makes two X25519 key pairs (`c` to encrypt shares, `s`
   to agree on masks) and sends both public keys. The server places the devices that
   answered on a ring in a random order; a device's neighbours are the `num_shares // 2`
   nearest on each side (a Harary graph, as SecAgg+; `num_shares` >= the number of
   devices: everybody, the original SecAgg). It sends each device its neighbours' keys.
2. share keys: each device draws a self-mask seed `b` (32 bytes from the OS), splits `b`
   and its mask secret key `s` into Shamir shares (`fl_analytics.privacy.shamir`,
   threshold t, one share per member of its neighbourhood, itself included) and sends
   each neighbour's share encrypted with AES-GCM under a key agreed with `c` (HKDF of
   X25519), through the server.
3. masked input: each device that got its neighbours' shares sends
   `y = x + PRG(b) + sum over neighbours v of +-PRG(KA(s, s_v))  (mod R)`, the sign
   + when its index is below v's, so that pairwise masks cancel in the sum. The PRG
   is AES-256-CTR keyed by the seed (the pairwise seed: HKDF of the X25519 secret),
   its 64-bit words reduced mod R.
4. unmask: the server tells each device which of its neighbours sent a masked input
   and which dropped after sharing keys; the device returns, for each, the share of
   `b` (survivors) or of `s` (dropped), never both. With t shares of each, the server
   removes every survivor's self mask and the pairwise masks that survivors added with
   dropped devices, and gets the sum of the survivors' inputs mod R.

Dropouts: a device can drop before sending its keys, after sending its shares (its
input is not in the sum: the server rebuilds its `s` to remove its pairwise masks), or
after sending its masked input (its input is in the sum; it just sends no shares). A
round in which some mask cannot be rebuilt (fewer than t shares answered) fails closed
with `AbortError` naming the count, before any sum is formed. A replayed, misdirected or
malformed message is refused with `ProtocolError`, one line.

What it protects: the server, following the protocol, learns the sum and who dropped,
nothing else about any input; any coalition of fewer than t members of a device's
neighbourhood learns nothing about its masks (the server colluding with them too). It
does not protect against a server that lies about dropouts (the consistency round and
signatures of the malicious-server variant are not run).
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import struct
import time
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fl_analytics.privacy import shamir

# Dropout stages of a device (`Dropouts`).
BEFORE_KEYS, AFTER_SHARES, AFTER_INPUT = 'before_keys', 'after_shares', 'after_input'
STAGES = ('setup', 'advertise_keys', 'share_keys', 'masked_input', 'unmask')
MAX_MODULUS = 2**63
_MAGIC, _VERSION = b'SA', 1
_HEADER = struct.Struct('>2sBB16sII')  # magic, version, kind, round id, sender, recipient
SERVER = 0xFFFFFFFF  # the server's id in headers (devices are 0, 1, ...)
_KEY = 32  # X25519 keys, self-mask seeds and derived seeds, bytes
_SHARE = len(shamir.Share(1, 0).to_bytes())
_NONCE = 12
(_SETUP, _KEYS, _NEIGHBOURS, _SHARES, _FORWARDED, _MASKED, _UNMASK, _REVEAL) = range(1, 9)
_KIND_NAMES = {_SETUP: 'setup', _KEYS: 'keys', _NEIGHBOURS: 'neighbours',
               _SHARES: 'shares', _FORWARDED: 'forwarded shares', _MASKED: 'masked input',
               _UNMASK: 'unmask request', _REVEAL: 'unmask shares'}


class ProtocolError(ValueError):
  """A message that is not the one expected: malformed, replayed or misdirected."""


class AbortError(RuntimeError):
  """The round cannot finish (too many dropouts); no sum was formed."""


@dataclasses.dataclass(frozen=True)
class Parameters:
  """`num_shares`: the size of a device's neighbourhood, itself included (odd; 0:
  2 ceil(log2 n) + 1, Bell et al.'s O(log n) growth; capped at n, which is SecAgg).
  `threshold`: t as a fraction of the neighbourhood, t = floor(threshold * size) + 1."""

  num_shares: int = 0
  threshold: float = 0.5

  def check(self) -> None:
    if isinstance(self.num_shares, bool) or not isinstance(self.num_shares, int) or (
        self.num_shares < 0 or (self.num_shares and self.num_shares % 2 == 0)
        or self.num_shares == 1):
      raise ValueError('secure_aggregation.num_shares must be 0 (automatic) or an odd '
                       f'integer >= 3. Found {self.num_shares!r}.')
    if not (isinstance(self.threshold, (int, float)) and 0 <= self.threshold < 1):
      raise ValueError('secure_aggregation.threshold must be a fraction in [0, 1) of the '
                       f'neighbourhood. Found {self.threshold!r}.')

  def neighbourhood(self, n: int) -> tuple[int, int]:
    """(members of a device's neighbourhood, itself included; t) for n devices that
    sent keys. Members = n: everybody (SecAgg)."""
    members = min(n, self.num_shares or 2 * math.ceil(math.log2(max(n, 2))) + 1)
    return members, min(members, math.floor(self.threshold * members) + 1)


@dataclasses.dataclass(frozen=True)
class Layout:
  """The summed vector: consecutive segments of (length, modulus R)."""

  segments: tuple[tuple[int, int], ...]

  def __post_init__(self):
    for length, modulus in self.segments:
      if length < 0 or not 2 <= modulus <= MAX_MODULUS:
        raise ValueError(f'A segment needs length >= 0 and modulus in [2, 2^63]. Found '
                         f'({length}, {modulus}).')

  @property
  def length(self) -> int:
    return sum(n for n, _ in self.segments)

  def moduli(self) -> np.ndarray:
    return np.concatenate([np.full(n, m, np.uint64) for n, m in self.segments] or
                          [np.zeros(0, np.uint64)])

  @property
  def word_bytes(self) -> int:
    """Bytes per coordinate on the wire: enough for the largest modulus."""
    return max([((m - 1).bit_length() + 7) // 8 for _, m in self.segments] or [1])

  def to_bytes(self) -> bytes:
    return struct.pack('>I', len(self.segments)) + b''.join(
        struct.pack('>IQ', n, m) for n, m in self.segments)

  @classmethod
  def from_bytes(cls, data: bytes) -> 'Layout':
    (count,), rest = struct.unpack('>I', data[:4]), data[4:]
    if len(rest) != 12 * count:
      raise ProtocolError(f'A layout of {count} segments is {4 + 12 * count} bytes. '
                          f'Found {len(data)}.')
    return cls(tuple(struct.unpack('>IQ', rest[12 * i:12 * i + 12]) for i in range(count)))


SUMS = ('simulated', 'protocol')  # `secure_aggregation.sum`


def parameters_of(section) -> Optional[Parameters]:
  """The protocol's parameters from a config's `secure_aggregation` section (a mapping;
  missing keys at their defaults), None when the secure sums are simulated; ValueError
  naming a bad key and what is allowed."""
  section = dict(section or {})
  how = section.get('sum', 'simulated')
  if how not in SUMS:
    raise ValueError(f'secure_aggregation.sum must be one of {", ".join(SUMS)}. '
                     f'Found {how!r}.')
  late = section.get('dropout_after_input', 0.0)
  if isinstance(late, bool) or not isinstance(late, (int, float)) or not 0 <= late < 1:
    raise ValueError('secure_aggregation.dropout_after_input must be a number in [0, 1). '
                     f'Found {late!r}.')
  parameters = Parameters(section.get('num_shares', 0), section.get('threshold', 0.5))
  parameters.check()
  return parameters if how == 'protocol' else None


def check_config(section, *, secure_sums: bool) -> None:
  """`parameters_of`, and the protocol refused for a run without secure sums."""
  if parameters_of(section) is not None and not secure_sums:
    raise ValueError('secure_aggregation.sum=protocol runs the round\'s secure sums, and '
                     'this run has none: set dp.secure_sum=True (a mechanism that '
                     'allows it) or dp.mechanism=distributed, or use '
                     'secure_aggregation.sum=simulated.')


def describe(parameters: Optional[Parameters]) -> str:
  """What ran as the secure sum, and what it guarantees against whom, in words (the
  privacy statement's `secure_aggregation`)."""
  if parameters is None:
    return ("TFF's local runtime simulates the secure sum in the clear, so no "
            'cryptography ran here (secure_aggregation.sum=simulated)')
  size = (f'{parameters.num_shares} devices' if parameters.num_shares else
          '2 ceil(log2 n) + 1 devices for n devices')
  return ('the SecAgg+ protocol (Bell et al. 2020; Bonawitz et al. 2017) run between '
          'the simulated devices and the server, which handled only their messages: '
          'X25519 key agreement, AES-CTR masks, Shamir shares of each device\'s mask '
          f'keys among its neighbourhood of {size} (all of them if fewer), threshold '
          f't = floor({parameters.threshold:g} * neighbourhood) + 1. It holds against an '
          'honest-but-curious server, also colluding with fewer than t members of any '
          'device\'s neighbourhood: they learn the sum of the surviving devices\' '
          'updates and who dropped out, nothing else. It does not hold against a server '
          'that lies about who dropped out (no consistency round, no signatures).')


class Field:
  """Arithmetic mod each coordinate's modulus R (by a mask where every R is a power of
  two, which is the common case and several times faster than `%`)."""

  def __init__(self, moduli: np.ndarray):
    self.moduli = np.asarray(moduli, np.uint64)
    self._mask = (self.moduli - np.uint64(1)
                  if not np.any(self.moduli & (self.moduli - np.uint64(1))) else None)

  def __len__(self) -> int:
    return len(self.moduli)

  def reduce(self, values: np.ndarray) -> np.ndarray:
    return values & self._mask if self._mask is not None else values % self.moduli

  def add(self, total: np.ndarray, values: np.ndarray, sign: int = 1) -> np.ndarray:
    """total + sign * values (mod R), both in [0, R)."""
    if sign < 0:
      values = self.reduce(self.moduli - values)
    return self.reduce(total + values)


def prg(seed: bytes, field: Field) -> np.ndarray:
  """AES-256-CTR keystream of `seed`, one 64-bit word per coordinate, reduced mod its
  modulus (the bias, at most R / 2^64 per word, is below 2^-32 for R <= 2^32 and
  none for a power of two)."""
  words = np.frombuffer(Cipher(algorithms.AES(seed), modes.CTR(b'\0' * 16)).encryptor()
                        .update(bytes(8 * len(field))), '<u8')
  return field.reduce(words)


def _derive(secret: bytes, info: bytes) -> bytes:
  return HKDF(hashes.SHA256(), _KEY, salt=None, info=info).derive(secret)


def encode_vector(values: np.ndarray, word_bytes: int) -> bytes:
  return np.ascontiguousarray(
      values.astype('<u8').view(np.uint8).reshape(-1, 8)[:, :word_bytes]).tobytes()


def decode_vector(data: bytes, length: int, word_bytes: int) -> np.ndarray:
  if len(data) != length * word_bytes:
    raise ProtocolError(f'A masked input is {length * word_bytes} bytes. Found {len(data)}.')
  padded = np.zeros((length, 8), np.uint8)
  padded[:, :word_bytes] = np.frombuffer(data, np.uint8).reshape(length, word_bytes)
  return padded.reshape(-1).view('<u8')


class _Wire:
  """Message framing: header (magic, version, kind, round id, sender, recipient) and
  checks of every received header."""

  def __init__(self, me: int):
    self.me, self.round_id = me, None
    self._seen: set = set()

  def pack(self, kind: int, recipient: int, body: bytes) -> bytes:
    return _HEADER.pack(_MAGIC, _VERSION, kind, self.round_id, self.me, recipient) + body

  def unpack(self, message, kind: int, sender: Optional[int] = None) -> tuple[int, bytes]:
    """(sender, body) of a message of `kind` for this party, else ProtocolError."""
    if not isinstance(message, bytes) or len(message) < _HEADER.size:
      raise ProtocolError(f'Party {self.me}: a {_KIND_NAMES[kind]} message must be bytes '
                          f'with a {_HEADER.size}-byte header. Found {type(message).__name__}'
                          f' of {len(message) if isinstance(message, bytes) else "?"} bytes.')
    magic, version, got, round_id, frm, to = _HEADER.unpack_from(message)
    why = ('not a SecAgg message' if (magic, version) != (_MAGIC, _VERSION) else
           f'expected {_KIND_NAMES[kind]}, found kind {got}' if got != kind else
           'from another round (replayed)' if self.round_id and round_id != self.round_id
           else f'addressed to {to}' if to != self.me else
           f'sender {frm}, expected {sender}' if sender is not None and frm != sender else
           'a replay (already received)' if (kind, frm) in self._seen else '')
    if why:
      raise ProtocolError(f'Party {self.me} refused a {_KIND_NAMES[kind]} message: {why}.')
    self._seen.add((kind, frm))
    if self.round_id is None:
      self.round_id = round_id
    return frm, message[_HEADER.size:]


def _ring_neighbours(order: Sequence[int], members: int) -> dict[int, list[int]]:
  """Each device's neighbours on the ring `order`: `members // 2` on each side
  (members >= len(order): every other device)."""
  n, pos = len(order), {u: i for i, u in enumerate(order)}
  if members >= n:
    return {u: sorted(set(order) - {u}) for u in order}
  half = members // 2
  return {u: sorted(order[(pos[u] + d) % n] for d in range(-half, half + 1) if d)
          for u in order}


def _keys_body(entries: Sequence[tuple[int, bytes, bytes]]) -> bytes:
  return b''.join(struct.pack('>I', u) + c + s for u, c, s in entries)


def _parse_keys(body: bytes) -> list[tuple[int, bytes, bytes]]:
  size = 4 + 2 * _KEY
  if len(body) % size:
    raise ProtocolError(f'A key list is a multiple of {size} bytes. Found {len(body)}.')
  return [(struct.unpack('>I', body[i:i + 4])[0], body[i + 4:i + 36], body[i + 36:i + size])
          for i in range(0, len(body), size)]


def _ids_body(ids: Sequence[int]) -> bytes:
  return struct.pack(f'>I{len(ids)}I', len(ids), *ids)


def _parse_ids(body: bytes, offset: int = 0) -> tuple[list[int], int]:
  if len(body) < offset + 4:
    raise ProtocolError('A list of devices is cut short.')
  (count,) = struct.unpack_from('>I', body, offset)
  end = offset + 4 + 4 * count
  if len(body) < end:
    raise ProtocolError(f'A list of {count} devices is cut short.')
  return list(struct.unpack_from(f'>{count}I', body, offset + 4)), end


def _ciphertexts_body(items: Sequence[tuple[int, bytes]]) -> bytes:
  return b''.join(struct.pack('>II', u, len(c)) + c for u, c in items)


def _parse_ciphertexts(body: bytes) -> list[tuple[int, bytes]]:
  items, i = [], 0
  while i < len(body):
    if len(body) < i + 8:
      raise ProtocolError('A list of encrypted shares is cut short.')
    u, size = struct.unpack_from('>II', body, i)
    if len(body) < i + 8 + size:
      raise ProtocolError('An encrypted share is cut short.')
    items.append((u, body[i + 8:i + 8 + size]))
    i += 8 + size
  return items


def _sign(u: int, v: int) -> int:
  """+1 if device u adds the mask it shares with v, -1 if it subtracts it."""
  return 1 if u < v else -1


def _raw(key) -> bytes:
  return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _pairwise_seed(private: x25519.X25519PrivateKey, public: bytes, round_id: bytes,
                   purpose: bytes) -> bytes:
  return _derive(private.exchange(x25519.X25519PublicKey.from_public_bytes(public)),
                 b'fl_analytics secagg ' + purpose + round_id)


class Device:
  """One device's side of a round, over bytes. `vector`: its input (uint64, each
  coordinate below its modulus), or None for a device that drops before sending it."""

  def __init__(self, index: int, vector: Optional[np.ndarray]):
    self._wire = _Wire(index)
    self._vector = vector
    self._c = x25519.X25519PrivateKey.generate()
    self._s = x25519.X25519PrivateKey.generate()
    self._b = secrets.token_bytes(_KEY)
    self._held: dict[int, tuple[bytes, bytes]] = {}  # neighbour -> (share of s, of b)
    self._keys: dict[int, tuple[bytes, bytes]] = {}  # neighbour -> its public keys
    self._share_keys: dict[int, bytes] = {}  # neighbour -> the AES-GCM key of shares

  @property
  def index(self) -> int:
    return self._wire.me

  def advertise_keys(self, message: bytes) -> bytes:
    """Stage 1: the setup read (the layout), both public keys sent."""
    _, body = self._wire.unpack(message, _SETUP, SERVER)
    self._layout = Layout.from_bytes(body)
    self._field = Field(self._layout.moduli())
    self._moduli = self._field.moduli
    if self._vector is not None:
      self._vector = np.asarray(self._vector, np.uint64).reshape(-1)
      if len(self._vector) != len(self._moduli) or np.any(self._vector >= self._moduli):
        raise ValueError(f'Device {self.index}: its input must have '
                         f'{len(self._moduli)} coordinates, each below its modulus.')
    return self._wire.pack(_KEYS, SERVER, _raw(self._c.public_key())
                           + _raw(self._s.public_key()))

  def share_keys(self, message: bytes) -> bytes:
    """Stage 2: shares of `s` and `b` for each neighbour, encrypted to it."""
    _, body = self._wire.unpack(message, _NEIGHBOURS, SERVER)
    if len(body) < 4:
      raise ProtocolError(f'Device {self.index}: a neighbour list is cut short.')
    (t,), entries = struct.unpack('>I', body[:4]), _parse_keys(body[4:])
    ids = [u for u, _, _ in entries]
    if self.index in ids or len(set(ids)) != len(ids) or not 1 <= t <= len(ids) + 1:
      raise ProtocolError(f'Device {self.index} refused a neighbour list: itself listed, '
                          f'a device twice, or threshold {t} for {len(ids) + 1} members.')
    self._t, self._keys = t, {u: (c, s) for u, c, s in entries}
    members = sorted(ids + [self.index])
    s_raw = self._s.private_bytes(serialization.Encoding.Raw,
                                  serialization.PrivateFormat.Raw,
                                  serialization.NoEncryption())
    s_shares = shamir.split(s_raw, threshold=t, num_shares=len(members))
    b_shares = shamir.split(self._b, threshold=t, num_shares=len(members))
    # One AES-GCM key per neighbour, the same both ways: it seals the shares sent now
    # and opens those received in stage 3.
    self._share_keys = {u: _pairwise_seed(self._c, c, self._wire.round_id, b'share key')
                        for u, (c, _) in self._keys.items()}
    out = []
    for x, u in enumerate(members):
      pair = (s_shares[x].to_bytes(), b_shares[x].to_bytes())
      if u == self.index:
        self._held[u] = pair
        continue
      key = self._share_keys[u]
      nonce = secrets.token_bytes(_NONCE)
      aad = self._wire.round_id + struct.pack('>II', self.index, u)
      out.append((u, nonce + AESGCM(key).encrypt(nonce, pair[0] + pair[1], aad)))
    return self._wire.pack(_SHARES, SERVER, _ciphertexts_body(out))

  def masked_input(self, message: bytes) -> bytes:
    """Stage 3: the neighbours' shares kept, the masked input sent."""
    _, body = self._wire.unpack(message, _FORWARDED, SERVER)
    senders = []
    for u, sealed in _parse_ciphertexts(body):
      if u not in self._keys or u in self._held:
        raise ProtocolError(f'Device {self.index} refused a share from {u}: not a '
                            'neighbour, or a second one.')
      aad = self._wire.round_id + struct.pack('>II', u, self.index)
      try:
        plain = AESGCM(self._share_keys[u]).decrypt(sealed[:_NONCE], sealed[_NONCE:], aad)
      except InvalidTag:
        raise ProtocolError(f'Device {self.index}: the share from {u} does not '
                            'authenticate.') from None
      if len(plain) != 2 * _SHARE:
        raise ProtocolError(f'Device {self.index}: the share from {u} is malformed.')
      self._held[u] = (plain[:_SHARE], plain[_SHARE:])
      senders.append(u)
    if self._vector is None:
      raise ValueError(f'Device {self.index} has no input to send.')
    y = self._field.add(self._vector, prg(self._b, self._field))
    for v in senders:
      seed = _pairwise_seed(self._s, self._keys[v][1], self._wire.round_id, b'mask')
      y = self._field.add(y, prg(seed, self._field), _sign(self.index, v))
    return self._wire.pack(_MASKED, SERVER, encode_vector(y, self._layout.word_bytes))

  def unmask(self, message: bytes) -> bytes:
    """Stage 4: for each listed neighbour, the share of `b` (it sent its input) or of
    `s` (it dropped after sharing), never both."""
    _, body = self._wire.unpack(message, _UNMASK, SERVER)
    survived, end = _parse_ids(body)
    dropped, end = _parse_ids(body, end)
    if (end != len(body) or set(survived) & set(dropped) or self.index not in survived
        or self.index in dropped
        or not set(survived) | set(dropped) <= set(self._held)):
      raise ProtocolError(f'Device {self.index} refused an unmask request: a device both '
                          'survived and dropped, itself missing, or one it holds no '
                          'share of.')
    out = [struct.pack('>IB', u, 1) + self._held[u][1] for u in survived]
    out += [struct.pack('>IB', u, 0) + self._held[u][0] for u in dropped]
    return self._wire.pack(_REVEAL, SERVER, b''.join(out))


class Server:
  """The server's side of a round: it handles only bytes messages (each stage's
  `dict[device, bytes]` in, the next stage's out) and returns the sum mod R."""

  def __init__(self, devices: Sequence[int], layout: Layout, parameters: Parameters):
    parameters.check()
    self._devices = list(devices)
    self._layout, self._parameters = layout, parameters
    self._field = Field(layout.moduli())
    self._wire = _Wire(SERVER)
    self._wire.round_id = secrets.token_bytes(16)
    # Who answered each stage so far (a stage called early expects nobody).
    self._keys: dict[int, tuple[bytes, bytes]] = {}
    self._shared: set[int] = set()
    self._masked: set[int] = set()
    self._total = np.zeros(layout.length, np.uint64)  # the masked inputs, summed as read

  def _receive(self, messages: Mapping[int, bytes], kind: int, expected) -> dict:
    bodies = {}
    for u, message in messages.items():
      if u not in expected:
        raise ProtocolError(f'Server refused a {_KIND_NAMES[kind]} message from device '
                            f'{u}: not in this stage.')
      bodies[u] = self._wire.unpack(message, kind, u)[1]
    return bodies

  def setup(self) -> dict[int, bytes]:
    body = self._layout.to_bytes()
    return {u: self._wire.pack(_SETUP, u, body) for u in self._devices}

  def neighbours(self, messages: Mapping[int, bytes]) -> dict[int, bytes]:
    """Stage 1 answered: the ring, and each device's neighbours' keys and t."""
    bodies = self._receive(messages, _KEYS, set(self._devices))
    self._keys = {}
    for u, body in bodies.items():
      if len(body) != 2 * _KEY:
        raise ProtocolError(f'Server: the keys of device {u} are {len(body)} bytes, '
                            f'not {2 * _KEY}.')
      self._keys[u] = (body[:_KEY], body[_KEY:])
    order = sorted(self._keys)
    for i in range(len(order) - 1, 0, -1):  # a uniform shuffle from the OS's randomness
      j = secrets.randbelow(i + 1)
      order[i], order[j] = order[j], order[i]
    members, self._t = self._parameters.neighbourhood(len(order))
    self._graph = _ring_neighbours(order, members)
    return {u: self._wire.pack(_NEIGHBOURS, u, struct.pack('>I', self._t) + _keys_body(
        [(v, *self._keys[v]) for v in self._graph[u]])) for u in order}

  def forward_shares(self, messages: Mapping[int, bytes]) -> dict[int, bytes]:
    """Stage 2 answered: each device's encrypted shares from the devices that sent."""
    bodies = self._receive(messages, _SHARES, set(self._keys))
    inbox: dict[int, list] = {u: [] for u in bodies}
    for u, body in bodies.items():
      items = _parse_ciphertexts(body)
      if sorted(v for v, _ in items) != self._graph[u]:
        raise ProtocolError(f'Server: device {u} sent shares to devices other than its '
                            'neighbours, exactly once each.')
      for v, sealed in items:
        if v in inbox:
          inbox[v].append((u, sealed))
    self._shared = set(bodies)
    return {v: self._wire.pack(_FORWARDED, v, _ciphertexts_body(items))
            for v, items in inbox.items()}

  def unmask_requests(self, messages: Mapping[int, bytes]) -> dict[int, bytes]:
    """Stage 3 answered: each survivor is asked for its neighbours' shares."""
    bodies = self._receive(messages, _MASKED, self._shared)
    word = self._layout.word_bytes
    for body in bodies.values():  # read and added one by one: O(d) memory, not O(n d)
      self._total = self._field.add(self._total,
                                    decode_vector(body, self._layout.length, word))
    self._masked = set(bodies)
    if len(self._masked) < self._t:
      raise AbortError(f'SecAgg aborted: {len(self._masked)} device(s) sent a masked '
                       f'input, fewer than the threshold t={self._t}; no sum was formed.')
    out = {}
    for v in self._masked:
      near = [u for u in self._graph[v] if u in self._shared]
      survived = sorted([v] + [u for u in near if u in self._masked])
      dropped = [u for u in near if u not in self._masked]
      out[v] = self._wire.pack(_UNMASK, v, _ids_body(survived) + _ids_body(dropped))
    return out

  def _collect(self, bodies: Mapping[int, bytes]) -> tuple[dict, dict]:
    """Shares of each survivor's `b` and each dropped device's `s`, by device."""
    b_shares: dict[int, list] = {u: [] for u in self._masked}
    s_shares: dict[int, list] = {u: [] for u in self._shared - self._masked}
    entry = 5 + _SHARE
    for v, body in bodies.items():
      if len(body) % entry:
        raise ProtocolError(f'Server: the unmask shares of device {v} are malformed.')
      for i in range(0, len(body), entry):
        u, is_b = struct.unpack_from('>IB', body, i)
        target = b_shares if is_b else s_shares
        if u not in target or (u != v and u not in self._graph[v]):
          raise ProtocolError(f'Server: device {v} sent a share of {u} it was not '
                              'asked for.')
        target[u].append(shamir.Share.from_bytes(body[i + 5:i + entry]))
    return b_shares, s_shares

  def result(self, messages: Mapping[int, bytes]) -> np.ndarray:
    """Stage 4 answered: the sum of the survivors' inputs mod R, or AbortError."""
    bodies = self._receive(messages, _REVEAL, set(self._masked))
    b_shares, s_shares = self._collect(bodies)
    for what, shares in (('self-mask seed', b_shares), ('mask key', s_shares)):
      short = {u: len(s) for u, s in shares.items() if len(s) < self._t
               and (what == 'self-mask seed' or set(self._graph[u]) & self._masked)}
      if short:
        u, count = min(short.items(), key=lambda kv: kv[1])
        raise AbortError(
            f'SecAgg aborted: the {what} of {len(short)} device(s) cannot be rebuilt '
            f'(device {u}: {count} of t={self._t} shares answered; too many dropouts); '
            'no sum was formed.')
    total = self._total
    for u in self._masked:
      b = shamir.combine(b_shares[u], threshold=self._t)
      total = self._field.add(total, prg(b, self._field), -1)
    for u, shares in s_shares.items():
      survivors = [v for v in self._graph[u] if v in self._masked]
      if not survivors:
        continue
      s = x25519.X25519PrivateKey.from_private_bytes(
          shamir.combine(shares, threshold=self._t))
      for v in survivors:  # the mask v added with u
        seed = _pairwise_seed(s, self._keys[v][1], self._wire.round_id, b'mask')
        total = self._field.add(total, prg(seed, self._field), -_sign(v, u))
    return total


@dataclasses.dataclass
class Costs:
  """What a round cost: per device (bytes and CPU seconds, as arrays over the devices
  in order), the server's CPU seconds per stage, and the wall time of the whole
  simulation (every device's work and the server's, one after the other)."""

  sent: np.ndarray
  received: np.ndarray
  client_cpu: np.ndarray
  server_cpu: dict[str, float]
  client_stage_cpu: dict[str, float]  # summed over the devices, per stage
  wall: float
  survivors: int
  neighbourhood: int = 0
  threshold: int = 0


@dataclasses.dataclass(frozen=True)
class Outcome:
  total: np.ndarray  # the survivors' inputs summed mod R (uint64)
  costs: Costs


def run(inputs: Sequence[Optional[np.ndarray]], layout: Layout,
        parameters: Parameters = Parameters(), *,
        dropouts: Optional[Mapping[int, str]] = None,
        make_server: Callable = Server) -> Outcome:
  """One round of the protocol: device i holds `inputs[i]` (None if it drops before
  sending an input) and drops at `dropouts.get(i)` (BEFORE_KEYS, AFTER_SHARES,
  AFTER_INPUT; none: it stays). `make_server(devices, layout, parameters)`: the
  server, which sees only the bytes it is sent."""
  dropouts = dict(dropouts or {})
  if bad := {s for s in dropouts.values() if s not in (BEFORE_KEYS, AFTER_SHARES, AFTER_INPUT)}:
    raise ValueError(f'Dropout stages are {BEFORE_KEYS}, {AFTER_SHARES}, {AFTER_INPUT}. '
                     f'Found {sorted(bad)}.')
  n = len(inputs)
  sent, received, cpu = (np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n))
  server_cpu: dict[str, float] = {}
  stage_cpu = dict.fromkeys(STAGES[1:], 0.0)
  wall = time.perf_counter()
  if n == 0:
    return Outcome(np.zeros(layout.length, np.uint64),
                   Costs(sent, received, cpu, server_cpu, stage_cpu, 0.0, 0))
  devices = [Device(i, v) for i, v in enumerate(inputs)]

  def serve(stage, method, *args):
    start = time.thread_time()
    out = method(*args)
    server_cpu[stage] = server_cpu.get(stage, 0.0) + time.thread_time() - start
    return out

  def deliver(outbox, method, gone_at):
    replies = {}
    for u, message in outbox.items():
      if dropouts.get(u, 'stays') == gone_at:
        continue
      received[u] += len(message)
      start = time.thread_time()
      replies[u] = getattr(devices[u], method)(message)
      spent = time.thread_time() - start
      cpu[u] += spent
      stage_cpu[method] += spent
      sent[u] += len(replies[u])
    return replies

  server = serve('setup', make_server, list(range(n)), layout, parameters)
  outbox = serve('setup', server.setup)
  outbox = serve('advertise_keys', server.neighbours,
                 deliver(outbox, 'advertise_keys', BEFORE_KEYS))
  outbox = serve('share_keys', server.forward_shares, deliver(outbox, 'share_keys', ''))
  replies = deliver(outbox, 'masked_input', AFTER_SHARES)
  outbox = serve('masked_input', server.unmask_requests, replies)
  total = serve('unmask', server.result, deliver(outbox, 'unmask', AFTER_INPUT))
  members, t = parameters.neighbourhood(sum(dropouts.get(u) != BEFORE_KEYS for u in range(n)))
  return Outcome(total, Costs(sent, received, cpu, server_cpu, stage_cpu,
                              time.perf_counter() - wall, len(replies), members, t))


@dataclasses.dataclass(frozen=True)
class Dropouts:
  """Who of a round's cohort drops out when (the device model, `clients.dropout` and
  `secure_aggregation.dropout_after_input`): counts of devices with no input that drop
  before sending keys or after sending shares, and the positions, among the devices
  with inputs, of those that drop after sending their masked input."""

  before_keys: int = 0
  after_shares: int = 0
  after_input: tuple[int, ...] = ()


def run_cohort(inputs: Sequence[np.ndarray], layout: Layout, parameters: Parameters,
               dropouts: Dropouts = Dropouts(), **kwargs) -> Outcome:
  """`run` over the devices with `inputs` and the `dropouts`' devices without any."""
  late = {i: AFTER_INPUT for i in dropouts.after_input}
  first = len(inputs)
  early = {first + i: BEFORE_KEYS for i in range(dropouts.before_keys)}
  first += dropouts.before_keys
  early.update({first + i: AFTER_SHARES for i in range(dropouts.after_shares)})
  return run(list(inputs) + [None] * len(early), layout, parameters,
             dropouts={**late, **early}, **kwargs)
