"""Generator `app_paths`: sessions as paths through an app, users who adopt, tire and quit.

The second behaviour model (`data.generator=app_paths`; the first, `archetypes`, is
`fl_analytics.data.synthetic`). A session is a walk through the app's screens and
features (`VOCABULARY`: 59 actions in 12 sections, `session_end` among them): it
enters at `app_open` or `notification_open`, moves along the app's links (`_LINKS`)
and ends with `session_end`. Funnels and abandonment points are in the links: category ->
list -> item -> add to cart -> checkout -> shipping -> payment -> purchase (or
`payment_failed`), search -> query -> results (or `search_no_results`) -> item, feed ->
video -> complete. So the next action depends on the ones before it.

Users differ, on purpose (the knobs of `synthetic`, with the same meaning):

* an archetype (`ARCHETYPES`: shopper, social, listener, casual, declining) weights
  the app's sections and sets the activity, its decay and the quit hazard;
* each user's own transition tendencies: a log-normal tilt per destination action,
  of spread `0.8 * feature_skew`, on top of the archetype's weights mixed with the
  population's by `feature_skew` (personalization has something to find);
* `quantity_skew`: a log-normal volume on sessions per active day and on session
  length (the exit propensity);
* `label_skew`: how far activity, decay and quit hazard follow the archetype.

Over a user's life: users install on a day drawn uniformly over the first half of
the window (`INSTALL_SHARE`) and are active that day. The optional sections (search,
cart, social, account, premium, media, settings) are adopted on a day drawn per user
and section (earlier for the sections the user favours; before it, links into the
section are 20 times weaker). Activity decays at the user's rate from install, and
the daily quit hazard at age d (days since install) is
`h * frustration * (1 + 4 * (1 - activity(d) / activity(0))) + trial(d)`: it rises as
activity falls and with the user's frustration, a log-normal per user that also makes
`search_no_results`, `payment_failed` and `error_screen` more likely; `trial(d)` is
the hazard of power-law survival `(1 + d / 0.3) ** -0.45`, the users who try the app
and leave within days, which dominate real install cohorts' retention curves. So churn
has causes in the log: falling activity and frustrating sessions precede quitting.

The constants are calibrated (by hand, against `data.calibration.PUBLISHED`: retention,
DAU/MAU, evening sessions, the heavy tail of action use, sessions per day and session
minutes per category): `make population` measures each beside its published range,
`tests/calibration_test.py` holds every one within it.

Rhythm: a day is active with the user's decayed probability times a day-of-week
factor (`WEEKDAY_FACTOR`, 2024-01-01 is a Monday); its sessions start in distinct
hours drawn by `HOUR_WEIGHTS` (weighted sampling without replacement), at a uniform
second of the hour's first 15 minutes. A session lasts as its actions' dwell times
say, squeezed into an hour at most and to end 31 minutes before the user's next
session, so sessions are always more than the 30 minutes apart that split sessions
in the featurization.

Like `synthetic`, every draw is counter-based (`counter_random`): draw k of stream s
of user u, or of a user's session, is a hash of the seed and those coordinates. A
user's log is the same whichever users are generated with it, and a cohort is made
in one vectorized pass; a session's walk advances all the sessions of the batch one
step at a time over a sparse table of links.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import special

from fl_analytics.data import counter_random as cr
from fl_analytics.data import synthetic

NAME = 'app_paths'
VERSION = 3  # 3: installs, trial abandonment, calibrated (docs/data.md)

# Sections, each with its actions; `session_end` is the exit. Order fixes the indices.
_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ('core', ('app_open', 'notification_open', 'home_view', 'session_end')),
    ('feed', ('feed_scroll', 'feed_refresh', 'story_view', 'video_play',
              'video_complete')),
    ('browse', ('category_view', 'list_view', 'filter_apply', 'sort_apply')),
    ('search', ('search_open', 'search_query', 'search_results', 'search_no_results',
                'search_suggestion_tap')),
    ('item', ('item_view', 'item_images', 'item_reviews', 'item_like', 'item_save',
              'item_share')),
    ('cart', ('add_to_cart', 'cart_view', 'remove_from_cart', 'checkout_start',
              'shipping_info', 'payment_info', 'purchase', 'payment_failed')),
    ('social', ('comments_view', 'comment_post', 'profile_other_view', 'follow_user',
                'messages_open', 'message_send')),
    ('account', ('profile_view', 'profile_edit', 'orders_view', 'order_detail',
                 'wishlist_view')),
    ('settings', ('settings_open', 'notification_settings', 'privacy_settings',
                  'help_open', 'help_article', 'contact_support')),
    ('premium', ('upgrade_page', 'plan_compare', 'subscribe')),
    ('media', ('playlist_view', 'play', 'pause', 'download')),
    ('engage', ('rate_app_prompt', 'invite_friend', 'error_screen')),
)
VOCABULARY: tuple[str, ...] = tuple(a for _, actions in _SECTIONS for a in actions)
SECTION_NAMES: tuple[str, ...] = tuple(name for name, _ in _SECTIONS)
_INDEX = {a: i for i, a in enumerate(VOCABULARY)}
_SECTION_OF = np.array([k for k, (_, actions) in enumerate(_SECTIONS) for _ in actions])
APP_OPEN, NOTIFICATION_OPEN, HOME, END = (_INDEX[a] for a in (
    'app_open', 'notification_open', 'home_view', 'session_end'))
# Actions a frustrated user meets more often.
FRUSTRATIONS = ('search_no_results', 'payment_failed', 'error_screen')

# What the churn features follow beyond counts (`generators.churn_extras`): the
# funnels' completion and the recency of the actions that mark value or frustration.
CHURN_FUNNELS = (('item_view', 'add_to_cart'), ('checkout_start', 'purchase'),
                 ('search_query', 'search_results'), ('video_play', 'video_complete'),
                 ('messages_open', 'message_send'))
CHURN_KEY_ACTIONS = ('purchase', 'message_send', 'play', 'comment_post', 'subscribe',
                     'search_no_results', 'payment_failed', 'error_screen')

# The app's links: from an action, the actions a user goes to next, with weights.
# Besides these, every action but the entries links back home (weight 0.5), to
# `error_screen` (0.04) and to `session_end` (`_EXIT`, default 0.7).
_LINKS: dict[str, dict[str, float]] = {
    'app_open': {'home_view': 6, 'feed_scroll': 3, 'search_open': 1, 'playlist_view': 1},
    'notification_open': {'item_view': 3, 'messages_open': 2, 'story_view': 1,
                          'home_view': 1},
    'home_view': {'feed_scroll': 4, 'category_view': 2, 'search_open': 2,
                  'profile_view': 0.5, 'settings_open': 0.2, 'messages_open': 0.7,
                  'upgrade_page': 0.15, 'playlist_view': 0.8, 'cart_view': 0.3,
                  'orders_view': 0.3, 'wishlist_view': 0.2},
    'feed_scroll': {'feed_scroll': 20, 'item_view': 2, 'story_view': 1, 'video_play': 1.5,
                    'feed_refresh': 0.7, 'comments_view': 0.7, 'profile_other_view': 0.5,
                    'item_like': 0.5},
    'feed_refresh': {'feed_scroll': 3},
    'story_view': {'story_view': 8, 'feed_scroll': 1, 'profile_other_view': 0.5},
    'video_play': {'video_complete': 2, 'feed_scroll': 1.5, 'item_like': 0.5,
                   'comments_view': 0.5},
    'video_complete': {'video_play': 1.5, 'feed_scroll': 2, 'item_share': 0.3},
    'category_view': {'list_view': 4, 'filter_apply': 1},
    'list_view': {'item_view': 4, 'filter_apply': 1, 'sort_apply': 0.7, 'list_view': 1,
                  'category_view': 0.5},
    'filter_apply': {'list_view': 3},
    'sort_apply': {'list_view': 3},
    'search_open': {'search_query': 5, 'search_suggestion_tap': 2},
    'search_query': {'search_results': 5, 'search_no_results': 1},
    'search_suggestion_tap': {'search_results': 4},
    'search_results': {'item_view': 5, 'search_query': 1.5, 'filter_apply': 0.5},
    'search_no_results': {'search_query': 3},
    'item_view': {'item_images': 2, 'item_reviews': 1.2, 'add_to_cart': 1,
                  'item_like': 0.8, 'item_save': 0.6, 'item_share': 0.3, 'list_view': 1,
                  'search_results': 0.8, 'item_view': 1, 'comments_view': 0.3,
                  'play': 0.5},
    'item_images': {'item_view': 1, 'add_to_cart': 1, 'item_reviews': 0.6,
                    'item_images': 1},
    'item_reviews': {'add_to_cart': 0.8, 'item_view': 1, 'item_reviews': 1},
    'item_like': {'feed_scroll': 1.5, 'item_view': 1},
    'item_save': {'item_view': 1, 'wishlist_view': 0.5},
    'item_share': {'item_view': 1, 'feed_scroll': 1},
    'add_to_cart': {'cart_view': 2, 'item_view': 1.5, 'checkout_start': 0.6,
                    'list_view': 0.6},
    'cart_view': {'checkout_start': 2, 'remove_from_cart': 0.5, 'item_view': 1},
    'remove_from_cart': {'cart_view': 1.5},
    'checkout_start': {'shipping_info': 3},
    'shipping_info': {'payment_info': 3},
    'payment_info': {'purchase': 4, 'payment_failed': 0.6},
    'payment_failed': {'payment_info': 1.5},
    'purchase': {'orders_view': 1, 'home_view': 1, 'rate_app_prompt': 0.2,
                 'invite_friend': 0.1},
    'comments_view': {'comment_post': 0.7, 'comments_view': 1, 'profile_other_view': 0.5},
    'comment_post': {'comments_view': 1},
    'profile_other_view': {'follow_user': 0.8, 'feed_scroll': 1, 'messages_open': 0.3},
    'follow_user': {'feed_scroll': 1, 'profile_other_view': 0.5},
    'messages_open': {'message_send': 2, 'messages_open': 0.5},
    'message_send': {'message_send': 5, 'messages_open': 0.7},
    'profile_view': {'profile_edit': 0.6, 'orders_view': 1, 'wishlist_view': 0.7,
                     'settings_open': 0.6, 'invite_friend': 0.2},
    'profile_edit': {'profile_view': 1},
    'orders_view': {'order_detail': 2, 'contact_support': 0.2},
    'order_detail': {'orders_view': 1, 'contact_support': 0.3, 'help_open': 0.3},
    'wishlist_view': {'item_view': 2, 'add_to_cart': 0.6},
    'settings_open': {'notification_settings': 1, 'privacy_settings': 0.7,
                      'help_open': 0.6, 'profile_view': 0.4},
    'notification_settings': {'settings_open': 1},
    'privacy_settings': {'settings_open': 1},
    'help_open': {'help_article': 2, 'contact_support': 0.4},
    'help_article': {'help_article': 1, 'contact_support': 0.4, 'help_open': 0.5},
    'contact_support': {'help_open': 0.3},
    'upgrade_page': {'plan_compare': 2},
    'plan_compare': {'subscribe': 0.6, 'upgrade_page': 0.4},
    'subscribe': {'home_view': 1, 'playlist_view': 0.5},
    'playlist_view': {'play': 4, 'download': 0.4},
    'play': {'pause': 1.5, 'play': 12, 'playlist_view': 1, 'download': 0.3},
    'pause': {'play': 1.5},
    'download': {'play': 1, 'playlist_view': 1},
    'rate_app_prompt': {'home_view': 1},
    'invite_friend': {'home_view': 1},
    'error_screen': {'home_view': 1},
}
# Exit weights that differ from the default 0.5: abandonment points and natural ends.
_EXIT = {'purchase': 2.0, 'search_no_results': 2.0, 'payment_failed': 3.0,
         'error_screen': 3.0, 'video_complete': 0.4, 'subscribe': 1.5,
         'contact_support': 2.0, 'feed_scroll': 0.25, 'play': 0.3}
_DEFAULT_EXIT, _HOME_BACK, _ERROR_LINK = 0.4, 0.5, 0.04
# Seconds spent on an action before the next (the mean of a uniform draw around it).
_DWELL = {'feed_scroll': 15, 'story_view': 10, 'video_play': 60, 'video_complete': 4,
          'item_view': 40, 'item_images': 20, 'item_reviews': 40, 'list_view': 25,
          'search_results': 15, 'help_article': 60, 'message_send': 30, 'play': 200,
          'comments_view': 30, 'comment_post': 30, 'shipping_info': 40,
          'payment_info': 30, 'plan_compare': 40, 'profile_edit': 40}
_DEFAULT_DWELL = 8
_MAX_STEPS = 100  # actions after the entry; a walk still going is ended there
_MAX_SESSION_SECONDS = 3600  # a session longer than this is squeezed into it
_SLOT_START_SECONDS = 900  # sessions start in their hour's first 15 minutes
# A session ends this long before the user's next one starts, at the latest: more than
# the 30 minutes that split sessions (features.SESSION_GAP_SECONDS).
_SESSION_SPACING = 1800 + 60
_MAX_SESSIONS_PER_DAY = 12

# Sessions by hour of day (local time): low at night, a morning rise, evening peak.
HOUR_WEIGHTS = np.array([1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.4, 3.2, 3.3, 3.4, 3.6,
                         4.0, 3.8, 3.5, 3.5, 3.7, 4.0, 4.5, 5.2, 6.5, 16.0, 15.0, 3.0])
# Activity by day of week, Monday first.
WEEKDAY_FACTOR = np.array([0.95, 0.95, 0.95, 0.97, 1.0, 1.12, 1.08])
_ORIGIN_WEEKDAY = 0  # synthetic.ORIGIN_TIMESTAMP, 2024-01-01, a Monday


@dataclasses.dataclass(frozen=True)
class Archetype(synthetic.BaseArchetype):
  exit_factor: float  # multiplies every exit weight (shorter sessions above 1)
  daily_decay: float  # exponential decay of activity per day
  quit_hazard: float  # daily probability of quitting at full activity
  notification_entry: float  # share of sessions entered from a notification
  affinity: dict[str, float]  # section -> weight on links into it (default 1)


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype('shopper', 0.25, 0.55, 1.3, 0.9, 0.004, 0.006, 0.15,
              {'browse': 2.0, 'search': 1.6, 'item': 2.0, 'cart': 2.2, 'social': 0.3,
               'media': 0.3, 'feed': 0.6, 'premium': 0.5}),
    Archetype('social', 0.25, 0.80, 10.0, 1.0, 0.002, 0.004, 0.30,
              {'feed': 2.2, 'social': 3.0, 'item': 0.7, 'cart': 0.3, 'media': 0.6}),
    Archetype('listener', 0.15, 0.70, 1.3, 0.6, 0.002, 0.004, 0.10,
              {'media': 3.5, 'premium': 1.8, 'feed': 0.5, 'cart': 0.2, 'browse': 0.5}),
    Archetype('casual', 0.20, 0.35, 1.2, 1.5, 0.005, 0.012, 0.20, {}),
    Archetype('declining', 0.15, 0.60, 2.0, 1.2, 0.035, 0.02, 0.20,
              {'feed': 1.3, 'search': 0.7}),
)
# Sections every user has from day 0; the others are adopted (module docstring).
_CORE_SECTIONS = ('core', 'feed', 'browse', 'item', 'engage')
_ADOPTION_DAYS = 12.0  # mean adoption delay of a section of affinity 1
_NOT_ADOPTED = 0.05  # weight on links into a section before its adoption
_NOT_ADOPTED_16 = np.uint64(round(_NOT_ADOPTED * 65536))  # as 16-bit draws compare
_HAZARD_RISE = 4.0  # how much the quit hazard rises as activity falls to 0
# Installs: uniform over the first INSTALL_SHARE of the window. Trial abandonment:
# survival (1 + n / _TRIAL_DAYS) ** -_TRIAL_SHAPE over the n days after install.
INSTALL_SHARE = 0.5
_TRIAL_DAYS, _TRIAL_SHAPE = 0.3, 0.45

_NUM_SECTIONS = len(_SECTIONS)
_WEIGHTS = np.array([a.weight for a in ARCHETYPES]) / sum(a.weight for a in ARCHETYPES)
_AFFINITY = np.array([[a.affinity.get(s, 1.0) for s in SECTION_NAMES]
                      for a in ARCHETYPES])  # [archetypes, sections]
_GLOBAL_AFFINITY = _WEIGHTS @ _AFFINITY
_MEANS = {name: float(sum(w * getattr(a, name) for w, a in zip(_WEIGHTS, ARCHETYPES)))
          for name in ('active_prob', 'daily_decay', 'quit_hazard')}


def _link_table() -> tuple[np.ndarray, np.ndarray]:
  """(successors [V, K] padded with END (weight 0), base weights [V, K])."""
  rows = []
  for a in VOCABULARY:
    if a == 'session_end':
      rows.append({})
      continue
    links = dict(_LINKS[a])
    if a not in ('app_open', 'notification_open'):
      links.setdefault('home_view', 0.0)
      links['home_view'] += _HOME_BACK if a != 'home_view' else 0.0
      links['error_screen'] = links.get('error_screen', 0.0) + _ERROR_LINK
    links['session_end'] = _EXIT.get(a, _DEFAULT_EXIT)
    rows.append({k: v for k, v in links.items() if v > 0})
  width = max(len(r) for r in rows)
  successors = np.full((len(VOCABULARY), width), END, np.int64)
  weights = np.zeros((len(VOCABULARY), width))
  for i, links in enumerate(rows):
    successors[i, :len(links)] = [_INDEX[k] for k in links]
    weights[i, :len(links)] = list(links.values())
  return successors, weights


_SUCCESSORS, _BASE_WEIGHTS = _link_table()
_DWELL_OF = np.array([_DWELL.get(a, _DEFAULT_DWELL) for a in VOCABULARY], np.float64)
_FRUSTRATION_INDEX = np.array([_INDEX[a] for a in FRUSTRATIONS])
_ADOPTED_FROM_START = np.array([s in _CORE_SECTIONS for s in SECTION_NAMES])

# Streams of a user's draws, and the draws of the _USER stream.
_USER, _TILT, _ADOPT, _DAYS, _DAY_SESSIONS, _SLOTS, _PATHS = range(7)
_NUM_STREAMS = 7
_LOW16 = np.uint64(0xFFFF)
_GAP_STREAM = np.uint64(0x5EC0DD)  # a session's gap draws: the key xor this
_RETRY_STREAM = np.uint64(0xAD0975)  # a rejected choice's new draws: the key xor this
_MAX_ATTEMPTS = 64  # draws of one choice (the last is taken whatever it is)
_ARCHETYPE, _VOLUME, _FRUSTRATION, _QUIT, _INSTALL = range(5)


@dataclasses.dataclass(frozen=True)
class _Traits:
  """Per user of a batch: what its log is drawn from."""

  archetype: np.ndarray  # [n]
  tilt: np.ndarray  # [n, V]: the user's weight on links into each action
  adopted_day: np.ndarray  # [n, sections]: the first day links into it are full
  active_prob: np.ndarray
  daily_decay: np.ndarray
  sessions_mean: np.ndarray
  exit_factor: np.ndarray
  notification_entry: np.ndarray
  install_day: np.ndarray  # [n]: the user's first day (always active)
  quit_day: np.ndarray  # [n]: the first day the user is gone (num_days: never)


def _uniform32(bits: np.ndarray) -> np.ndarray:
  """float32 in (0, 1] from the 24 high bits (the walk's draws: 2**-24 resolution)."""
  return ((bits >> np.uint64(40)).astype(np.float32) + np.float32(1.0)) * np.float32(
      2.0**-24)


def _normal(bits: np.ndarray) -> np.ndarray:
  return special.ndtri(cr.uniform(bits))


def _user_traits(keys, *, num_days, quantity_skew, label_skew, feature_skew) -> _Traits:
  n = len(keys)
  draw = lambda k: cr.bits(keys[:, _USER], np.full(n, k))
  arch, field, skewed = synthetic.archetype_fields(keys[:, _USER], _ARCHETYPE, ARCHETYPES,
                                                   _WEIGHTS, _MEANS, label_skew)
  volume = np.exp(-0.5 * quantity_skew**2 + quantity_skew * _normal(draw(_VOLUME)))
  spread = 0.5 * label_skew  # frustration: a cause of churn, mean 1
  frustration = np.exp(-0.5 * spread**2 + spread * _normal(draw(_FRUSTRATION)))
  affinity = feature_skew * _AFFINITY[arch] + (1 - feature_skew) * _GLOBAL_AFFINITY
  v = len(VOCABULARY)
  sigma = 0.8 * feature_skew
  z = _normal(cr.bits(keys[:, _TILT, None], np.broadcast_to(np.arange(v), (n, v))))
  tilt = np.exp(sigma * z - 0.5 * sigma**2) * affinity[:, _SECTION_OF]
  tilt[:, _FRUSTRATION_INDEX] *= frustration[:, None]
  tilt[:, END] = 1.0  # exits are scaled by exit_factor instead
  adoption_u = cr.uniform(cr.bits(keys[:, _ADOPT, None],
                                  np.broadcast_to(np.arange(_NUM_SECTIONS),
                                                  (n, _NUM_SECTIONS))))
  adopted_day = np.where(_ADOPTED_FROM_START, 0.0,
                         np.floor(-np.log(adoption_u) * _ADOPTION_DAYS / affinity))
  active_prob, decay = skewed('active_prob'), skewed('daily_decay')
  install_day = np.floor(cr.uniform(draw(_INSTALL)) * INSTALL_SHARE * num_days)
  # Quit: the first day the cumulative hazard passes an exponential draw (days since
  # install; the trial hazard is the power-law survival's, exactly per day).
  age = np.arange(num_days)
  activity = np.exp(-decay[:, None] * age[None, :])
  hazard = (skewed('quit_hazard') * frustration)[:, None] * (
      1 + _HAZARD_RISE * (1 - activity)) + _TRIAL_SHAPE * np.log1p(
          1 / (_TRIAL_DAYS + age))[None, :]
  crossed = np.cumsum(hazard, axis=1) > -np.log(cr.uniform(draw(_QUIT)))[:, None]
  quit_age = np.where(crossed.any(axis=1), crossed.argmax(axis=1) + 1, num_days)
  adopted_day = adopted_day + install_day[:, None]
  return _Traits(arch, tilt, adopted_day, active_prob, decay,
                 np.maximum(1.0, field('sessions_mean') * volume),
                 field('exit_factor') / np.sqrt(volume), field('notification_entry'),
                 install_day.astype(np.int64),
                 np.minimum(install_day.astype(np.int64) + quit_age, num_days))


def _sessions(keys, t: _Traits, *, num_days: int):
  """Every session of the batch, by user then time: (its user, its day, its start)."""
  n = len(keys)
  day = np.arange(num_days)
  weekday = WEEKDAY_FACTOR[(day + _ORIGIN_WEEKDAY) % 7]
  age = day[None, :] - t.install_day[:, None]
  active = (((cr.uniform(cr.bits(keys[:, _DAYS, None], day[None, :]))
              < t.active_prob[:, None] * np.exp(-t.daily_decay[:, None] * age)
              * weekday[None, :]) | (age == 0))
            & (age >= 0) & (day[None, :] < t.quit_day[:, None]))
  day_user, day_of = np.nonzero(active)
  count_bits = cr.bits(keys[day_user, _DAY_SESSIONS], day_of)
  n_sessions = 1 + synthetic.poisson_counts(
      t.sessions_mean - 1.0, np.full(n, _MAX_SESSIONS_PER_DAY - 1), day_user,
      count_bits >> cr.S32)
  active_day, hour_of = _session_hours(keys, day_user, day_of, n_sessions)
  session_user = day_user[active_day]
  session_day = day_of[active_day]
  per_user = np.bincount(session_user, minlength=n)
  session_bits = cr.ragged_bits(keys[:, _PATHS], per_user)
  starts = (synthetic.ORIGIN_TIMESTAMP + session_day * synthetic.SECONDS_PER_DAY
            + hour_of * 3600
            + ((session_bits & cr.LOW32) * np.uint64(_SLOT_START_SECONDS)
               >> cr.S32).astype(np.int64))
  return session_user, session_day, starts, session_bits


_HOUR_CDF = np.cumsum(HOUR_WEIGHTS) / HOUR_WEIGHTS.sum()


def _session_hours(keys, day_user, day_of, n_sessions):
  """Distinct hours of each active day's sessions, drawn by HOUR_WEIGHTS without
  replacement (successive sampling: the k-th session of a day draws until it finds an
  hour the earlier ones left free). Returns (the active day, the hour) of each
  session, by day and hour: in time order."""
  taken = np.zeros(len(n_sessions), np.int64)  # bit h: an hour of the day's sessions
  day_key = keys[day_user, _SLOTS]
  for k in range(_MAX_SESSIONS_PER_DAY):
    pending = np.flatnonzero(n_sessions > k)
    for attempt in range(_MAX_ATTEMPTS):
      if not len(pending):
        break
      u = cr.uniform(cr.bits(day_key[pending], (day_of[pending] * _MAX_SESSIONS_PER_DAY
                                                + k) * _MAX_ATTEMPTS + attempt))
      hour = np.minimum(np.searchsorted(_HOUR_CDF, u, side='right'), 23)
      free = ((taken[pending] >> hour) & 1) == 0
      taken[pending[free]] |= np.int64(1) << hour[free]
      pending = pending[~free]
  return np.nonzero((taken[:, None] >> np.arange(24)) & 1)


def _cdf_table(t: _Traits) -> np.ndarray:
  """Each user's inverse-CDF table of its links with every section adopted:
  [users * V, K] float32, each row normalized and exactly 1 from its last link on."""
  n = len(t.tilt)
  tilt = t.tilt.astype(np.float32)
  tilt[:, END] = t.exit_factor  # the only links into END are exits
  cdf = _BASE_WEIGHTS.astype(np.float32)[None] * tilt[:, _SUCCESSORS]  # [n, V, K]
  np.cumsum(cdf, axis=2, out=cdf)
  total = cdf[..., -1:].copy()
  cdf /= np.where(total > 0, total, np.float32(1.0))
  cdf[cdf * total >= total] = 1.0  # the last link (and padding after it): exactly 1
  return cdf.reshape(n * len(VOCABULARY), _SUCCESSORS.shape[1])


def _next_actions(cdf, rows, current, keys, step, adopted):
  """The next action of walks at `current` (table rows `rows + current`). A link into a section the session's user has not adopted
  (`adopted`: a bit mask of sections per walk) is taken with probability
  _NOT_ADOPTED, else the choice is drawn again: the choices are the links weighted by
  adoption, exactly."""
  draw = cr.bits(keys, np.full(len(keys), step))
  nxt = _SUCCESSORS[current, (cdf[rows + current] >= _uniform32(draw)[:, None]).argmax(
      axis=1)]
  pending = np.flatnonzero(_refused(nxt, adopted, draw))
  for attempt in range(1, _MAX_ATTEMPTS):
    if not len(pending):
      break
    d = cr.bits(keys[pending] ^ _RETRY_STREAM,
                np.full(len(pending), step * _MAX_ATTEMPTS + attempt))
    at = current[pending]
    choice = _SUCCESSORS[at, (cdf[rows[pending] + at] >= _uniform32(d)[:, None]).argmax(
        axis=1)]
    nxt[pending] = choice
    pending = pending[_refused(choice, adopted[pending], d)]
  return nxt


def _refused(choice, adopted, draw):
  """Whether a choice into a section not adopted is refused (bits 16-31 of its draw)."""
  return (((adopted >> _SECTION_OF[choice]) & 1) == 0) & (
      ((draw >> np.uint64(16)) & _LOW16) >= _NOT_ADOPTED_16)


def _walks(t: _Traits, session_user, session_day, session_keys):
  """Each session's walk: [sessions, _MAX_STEPS + 2] actions, padded with -1 after its
  `session_end`. All sessions advance one step at a time (`_next_actions`: an
  inverse-CDF lookup in the user's table with the high 24 bits of the step's draw);
  the walks that ended are dropped after each step."""
  s = len(session_user)
  cdf = _cdf_table(t)
  adopted = ((t.adopted_day[session_user] <= session_day[:, None])
             << np.arange(_NUM_SECTIONS)).sum(axis=1)  # bit k: section k adopted
  walks = np.full((s, _MAX_STEPS + 2), -1, np.int8)
  entry = cr.bits(session_keys, np.zeros(s, np.int64))
  walks[:, 0] = np.where(cr.uniform(entry) < t.notification_entry[session_user],
                         NOTIFICATION_OPEN, APP_OPEN)
  index = np.arange(s)  # the walks still stepped, and their keys, rows and masks
  keys, rows, masks = session_keys, session_user * len(VOCABULARY), adopted
  current = walks[:, 0].astype(np.int64)
  for step in range(1, _MAX_STEPS + 1):
    current = _next_actions(cdf, rows, current, keys, step, masks)
    walks[index, step] = current
    going = current != END
    index, keys, rows, masks, current = (
        x[going] for x in (index, keys, rows, masks, current))
    if not len(index):
      break
  walks[index, _MAX_STEPS + 1] = END  # walks that reached _MAX_STEPS are ended
  return walks


def _longest(session_user, starts):
  """Each session's longest duration: _MAX_SESSION_SECONDS, or up to _SESSION_SPACING
  before the same user's next session (sessions by user then time)."""
  room = np.full(len(starts), _MAX_SESSION_SECONDS, np.int64)
  same = session_user[1:] == session_user[:-1]
  room[:-1][same] = np.minimum(_MAX_SESSION_SECONDS,
                               (starts[1:] - starts[:-1])[same] - _SESSION_SPACING)
  return room


def _timestamps(walks, starts, session_keys, longest):
  """The flat log of the walks: (timestamps, actions, events per session). The gap
  after an action is uniform in [1, 2 * its dwell] seconds (a draw of the session's
  gap stream per position); a session longer than `longest` is squeezed
  into it."""
  valid = walks >= 0
  size = valid.sum(axis=1)
  actions = walks[valid].astype(np.int64)  # row by row: session by session
  first = np.cumsum(size) - size
  session = np.repeat(np.arange(len(size)), size)
  position = np.arange(len(actions)) - first[session]
  u = cr.uniform(cr.bits(session_keys[session] ^ _GAP_STREAM, position))
  gaps = 1 + np.floor(u * (2 * _DWELL_OF)[actions])
  cum = np.cumsum(gaps) - gaps  # time of each action from the batch's first
  offsets = cum - cum[first][session]
  length = offsets[first + size - 1][session]
  room = longest[session]
  offsets = np.where(length > room, offsets * room / np.maximum(length, 1), offsets)
  return starts[session] + np.floor(offsets).astype(np.int64), actions, size


def user_traits(indices, *, seed: int, num_days: int, quantity_skew: float,
                label_skew: float, feature_skew: float) -> _Traits:
  """What users `indices`' logs are drawn from (for tests and calibration)."""
  keys = cr.stream_keys(seed, np.asarray(indices, np.int64).reshape(-1), _NUM_STREAMS)
  return _user_traits(keys, num_days=num_days, quantity_skew=quantity_skew,
                      label_skew=label_skew, feature_skew=feature_skew)


def generate_users(indices, *, seed: int, num_days: int, quantity_skew: float,
                   label_skew: float, feature_skew: float) -> synthetic.LogBatch:
  """The logs of users `indices`, generated together; user u's log is a function of
  (u, seed, the knobs) only (module docstring)."""
  indices = np.asarray(indices, np.int64).reshape(-1)
  chunk = synthetic.CHUNK_USERS
  if len(indices) > chunk:
    return synthetic.LogBatch.concat([
        generate_users(indices[k:k + chunk], seed=seed, num_days=num_days,
                       quantity_skew=quantity_skew, label_skew=label_skew,
                       feature_skew=feature_skew)
        for k in range(0, len(indices), chunk)])
  keys = cr.stream_keys(seed, indices, _NUM_STREAMS)
  traits = _user_traits(keys, num_days=num_days, quantity_skew=quantity_skew,
                        label_skew=label_skew, feature_skew=feature_skew)
  session_user, session_day, starts, session_keys = _sessions(keys, traits,
                                                              num_days=num_days)
  walks = _walks(traits, session_user, session_day, session_keys)
  timestamps, actions, size = _timestamps(walks, starts, session_keys,
                                          _longest(session_user, starts))
  per_user = np.bincount(session_user, weights=size, minlength=len(indices)).astype(
      np.int64)
  return synthetic.LogBatch(
      tuple(f'user_{u:06d}' for u in indices.tolist()), timestamps,
      actions.astype(np.int32), np.concatenate([[0], np.cumsum(per_user)]),
      tuple(ARCHETYPES[a].name for a in traits.archetype.tolist()))
