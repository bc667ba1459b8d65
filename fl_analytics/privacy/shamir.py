"""Shamir secret sharing over a prime field: the sharing step of secure aggregation.

SecAgg (Bonawitz et al. 2017) and SecAgg+ (Bell et al. 2020) have every device share
its mask seed and its secret key among its neighbours with a threshold t, so that the
server can rebuild what it needs from any t surviving neighbours (the masks of a device
that dropped out) and learns nothing from fewer. This module is that sharing (Shamir
1979, "How to share a secret"): a secret of up to `MAX_SECRET_BYTES` bytes is the
constant term of a random polynomial of degree t - 1 over GF(p); share i is the
polynomial at x = i; any t shares give the constant term back by Lagrange
interpolation at 0, and any t - 1 shares are uniformly distributed whatever the
secret (every secret is consistent with exactly one polynomial through them).

The field is GF(2^521 - 1) (a Mersenne prime), so a 64-byte secret (an X25519 key is
32) fits with its length; the coefficients come from `secrets` (the operating
system's cryptographic randomness). A share is bytes on the wire (`Share.to_bytes`).
"""

from __future__ import annotations

import dataclasses
import secrets as os_secrets
from typing import Callable, Sequence

PRIME = 2**521 - 1
MAX_SECRET_BYTES = 64
_X_BYTES = 2  # share indices 1..65535
_Y_BYTES = (PRIME.bit_length() + 7) // 8


@dataclasses.dataclass(frozen=True)
class Share:
  x: int  # the share's index, 1..65535 (0 is the secret)
  y: int  # the polynomial at x, in [0, prime)

  def to_bytes(self) -> bytes:
    return self.x.to_bytes(_X_BYTES, 'big') + self.y.to_bytes(_Y_BYTES, 'big')

  @classmethod
  def from_bytes(cls, data: bytes) -> 'Share':
    if len(data) != _X_BYTES + _Y_BYTES:
      raise ValueError(f'A share is {_X_BYTES + _Y_BYTES} bytes. Found {len(data)}.')
    return cls(int.from_bytes(data[:_X_BYTES], 'big'),
               int.from_bytes(data[_X_BYTES:], 'big'))


def _encode(secret: bytes) -> int:
  """The secret as a field element; a leading 1 byte keeps its leading zeros."""
  if not isinstance(secret, bytes) or len(secret) > MAX_SECRET_BYTES:
    raise ValueError(f'A secret is at most {MAX_SECRET_BYTES} bytes. Found '
                     f'{len(secret) if isinstance(secret, bytes) else type(secret)}.')
  return int.from_bytes(b'\x01' + secret, 'big')


def _decode(value: int) -> bytes:
  data = value.to_bytes((value.bit_length() + 7) // 8, 'big')
  if not data or data[0] != 1 or len(data) > MAX_SECRET_BYTES + 1:
    raise ValueError('The shares do not combine to a secret: too few, from different '
                     'secrets, or damaged.')
  return data[1:]


def share_value(value: int, *, threshold: int, num_shares: int, prime: int = PRIME,
                randbelow: Callable[[int], int] = os_secrets.randbelow) -> list[Share]:
  """`num_shares` shares (x = 1..num_shares) of the field element `value`: a random
  polynomial of degree threshold - 1 with constant term `value`, at each x. `prime`
  and `randbelow` are for tests (a small field for worked examples)."""
  if not 1 <= threshold <= num_shares < min(prime, 2**(8 * _X_BYTES)):
    raise ValueError(f'Shamir sharing needs 1 <= threshold <= num_shares < '
                     f'{min(prime, 2**(8 * _X_BYTES))}. Found threshold={threshold}, '
                     f'num_shares={num_shares}.')
  if not 0 <= value < prime:
    raise ValueError(f'{value} is not an element of the field of {prime}.')
  coefficients = [value] + [randbelow(prime) for _ in range(threshold - 1)]
  shares = []
  for x in range(1, num_shares + 1):
    y = 0
    for c in reversed(coefficients):  # Horner
      y = (y * x + c) % prime
    shares.append(Share(x, y))
  return shares


def split(secret: bytes, *, threshold: int, num_shares: int,
          randbelow: Callable[[int], int] = os_secrets.randbelow) -> list[Share]:
  """`num_shares` shares of `secret`, any `threshold` of which give it back
  (`combine`)."""
  return share_value(_encode(secret), threshold=threshold, num_shares=num_shares,
                     randbelow=randbelow)


def interpolate_at_zero(shares: Sequence[Share], *, prime: int = PRIME) -> int:
  """The constant term of the polynomial through `shares` (Lagrange at x = 0)."""
  xs = [s.x for s in shares]
  if len(set(xs)) != len(xs) or any(not 0 < x < prime for x in xs):
    raise ValueError(f'Shares need distinct indices in 1..{prime - 1}. Found {xs}.')
  total = 0
  for i, si in enumerate(shares):
    num, den = 1, 1
    for j, sj in enumerate(shares):
      if i != j:
        num = num * (-sj.x) % prime
        den = den * (si.x - sj.x) % prime
    total = (total + si.y * num * pow(den, -1, prime)) % prime
  return total


def combine(shares: Sequence[Share], *, threshold: int) -> bytes:
  """The secret of `split`, from at least `threshold` of its shares (the first
  `threshold` are used)."""
  if len(shares) < threshold:
    raise ValueError(f'{len(shares)} share(s) cannot give back a secret shared with '
                     f'threshold {threshold}.')
  return _decode(interpolate_at_zero(list(shares)[:threshold]))
