"""Shamir secret sharing (`privacy.shamir`), the sharing step of secure aggregation."""

import itertools
import random

import numpy as np
import pytest
from scipy import stats

from fl_analytics.privacy import shamir


def test_a_worked_example_in_a_small_field():
  # f(x) = 7 + 3x + 5x^2 over GF(11): f(1) = 15 = 4, f(2) = 33 = 0, f(3) = 61 = 6,
  # f(4) = 99 = 0 (mod 11); any three give f(0) = 7, by hand:
  coefficients = iter([3, 5])
  shares = shamir.share_value(7, threshold=3, num_shares=4, prime=11,
                              randbelow=lambda p: next(coefficients))
  assert [(s.x, s.y) for s in shares] == [(1, 4), (2, 0), (3, 6), (4, 0)]
  for three in itertools.combinations(shares, 3):
    assert shamir.interpolate_at_zero(three, prime=11) == 7
  # Two shares fit a line through them, whose value at 0 is not the secret here.
  assert shamir.interpolate_at_zero(shares[:2], prime=11) != 7


@pytest.mark.parametrize('threshold, num_shares', [(1, 1), (2, 3), (3, 5), (7, 10)])
def test_any_threshold_shares_give_the_secret_back_and_fewer_do_not(threshold, num_shares):
  rng = random.Random(threshold)
  for secret in (b'', b'\x00\x00key', bytes(rng.randrange(256) for _ in range(32)),
                 b'\xff' * shamir.MAX_SECRET_BYTES):
    shares = shamir.split(secret, threshold=threshold, num_shares=num_shares)
    for _ in range(5):
      subset = rng.sample(shares, rng.randint(threshold, num_shares))
      wire = [shamir.Share.from_bytes(s.to_bytes()) for s in subset]  # as sent
      assert shamir.combine(wire, threshold=threshold) == secret
    if threshold > 1:
      with pytest.raises(ValueError, match='cannot give back'):
        shamir.combine(shares[:threshold - 1], threshold=threshold)
      # Interpolating too few anyway gives garbage, not the secret.
      fewer = shamir.interpolate_at_zero(shares[:threshold - 1])
      assert fewer != int.from_bytes(b'\x01' + secret, 'big')


def test_fewer_than_threshold_shares_are_uniform_whatever_the_secret():
  # Threshold 3: two shares' values, for two very different secrets, over many
  # sharings. Where they fall in the field (16 equal bins) must be uniform and alike
  # (chi-square): small coefficients would keep them near the secret. So they are when
  # the coefficients are uniform in the field (drawn here from a seeded source, so
  # that the test repeats).
  def bins(secret):
    draw = random.Random(len(secret) + secret[0]).randrange
    out = []
    for _ in range(1500):
      a, b = shamir.split(secret, threshold=3, num_shares=5, randbelow=draw)[1:3]
      out += [16 * a.y // shamir.PRIME, 16 * b.y // shamir.PRIME]
    return np.bincount(out, minlength=16)
  zeros, ones = bins(b'\x00' * 32), bins(b'\xff' * 32)
  for counts in (zeros, ones):
    assert stats.chisquare(counts).pvalue > 1e-3
  assert stats.chi2_contingency(np.stack([zeros, ones]))[1] > 1e-3


def test_bad_inputs_are_refused_by_name():
  with pytest.raises(ValueError, match='at most 64 bytes'):
    shamir.split(b'x' * 65, threshold=2, num_shares=3)
  with pytest.raises(ValueError, match='1 <= threshold <= num_shares'):
    shamir.split(b'x', threshold=4, num_shares=3)
  draw = random.Random(0).randrange  # seeded: mixed shares fail to decode, always
  shares = shamir.split(b'secret', threshold=2, num_shares=3, randbelow=draw)
  with pytest.raises(ValueError, match='distinct indices'):
    shamir.combine([shares[0], shares[0]], threshold=2)
  with pytest.raises(ValueError, match='A share is 68 bytes'):
    shamir.Share.from_bytes(b'short')
  other = shamir.split(b'another', threshold=2, num_shares=3, randbelow=draw)
  with pytest.raises(ValueError, match='do not combine to a secret'):
    shamir.combine([shares[0], other[1]], threshold=2)
