"""
Brute-force lockout with growing delays, shared by SIP digest and API logins.

Failures are counted per key; callers count each attempt under several keys
(``("user", "1001")`` and ``("ip", "192.0.2.7")``) so that neither one
address trying many users nor many addresses trying one user goes unchecked.
A kind of key may have its own threshold: an address (which a whole office
behind NAT, or every client behind a reverse proxy, may share) gets a much
higher one than a user, so one user's wrong PINs lock that user, not everyone
at the same address.

Pure and timer-free: time comes from the injected clock when a method is
called, and nothing is scheduled, so there is nothing to cancel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from itertools import islice

from attrs import define, field

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.config import SecurityConfig

__all__ = ["Lockout"]


@define(eq=False)
class _Entry:
    """What is remembered about one key."""

    failures: deque[float]  # times of recent failures, newest last
    strikes: int = 0  # lockouts so far, sets the next delay
    locked_until: float = 0.0


@define(eq=False)
class Lockout:
    """
    Locks a key out for a while after repeated failures.

    After ``max_failures`` failures within ``window`` seconds the key is
    locked for ``base_delay`` seconds; every further lockout of the same key
    doubles the delay, up to ``max_delay``.  Failures older than ``window``
    are forgotten, and so are past lockouts once a key has stayed quiet for
    ``max_delay`` after its last lock ended: an attacker who waits gets no
    more than ``max_failures`` guesses per ``max_delay`` either way.

    Failures recorded while a key is locked do not count and do not extend
    the lock (callers are expected to refuse locked keys before checking a
    password).  :meth:`record_success` forgets a key entirely.
    :meth:`record_failures` counts one attempt under several keys and logs
    one warning when that locks any of them.

    Memory is bounded: idle keys are pruned every ``prune_every`` failures
    and whenever ``max_keys`` is reached; if all keys are still busy, the
    least recently failed ones are dropped, preferring unlocked ones.

    :ivar clock: source of time (``seconds()``).
    :ivar max_failures: failures within ``window`` that trigger a lockout.
    :ivar thresholds: ``max_failures`` for keys of some kinds (a key's kind
        is its first item), e.g. ``{"ip": 50}``.
    :ivar window: seconds a failure is remembered.
    :ivar base_delay: seconds of the first lockout.
    :ivar max_delay: longest lockout, in seconds.
    :ivar max_keys: most keys remembered at once.
    :ivar prune_every: failures between two sweeps of idle keys.
    """

    clock: IReactorTime
    max_failures: int = 5
    window: float = 300
    base_delay: float = 30
    max_delay: float = 3600
    max_keys: int = 10_000
    prune_every: int = 1_000
    thresholds: Mapping[str, int] = field(factory=dict)
    # Insertion order = order of last failure, oldest first.
    _entries: dict[Hashable, _Entry] = field(init=False, factory=dict)
    _calls: int = field(init=False, default=0)
    log = Logger()

    @classmethod
    def from_config(cls, clock: IReactorTime, security: SecurityConfig) -> Lockout:
        """A lockout with the ``security`` section's thresholds and delays."""
        # The address keys of API logins, phone PIN checks and SIP digest:
        # a whole office behind NAT shares one.
        address = security.lockout_address_failures
        return cls(clock, max_failures=security.lockout_failures, window=security.lockout_window,
                   base_delay=security.lockout_delay, max_delay=security.lockout_max_delay,
                   thresholds={"ip": address, "vm-source": address, "sip-ip": address})

    def __attrs_post_init__(self) -> None:
        if self.max_failures < 1 or any(n < 1 for n in self.thresholds.values()):
            raise ValueError("max_failures and thresholds must be at least 1")
        if self.window <= 0 or self.base_delay <= 0:
            raise ValueError("window and base_delay must be positive")
        if self.max_delay < self.base_delay:
            raise ValueError("max_delay must not be less than base_delay")
        if self.max_keys < 1 or self.prune_every < 1:
            raise ValueError("max_keys and prune_every must be at least 1")

    @property
    def tracked_keys(self) -> int:
        """How many keys are remembered now."""
        return len(self._entries)

    def _limit(self, key: Hashable) -> int:
        """The failures that lock ``key``: its kind's threshold, else ``max_failures``."""
        if self.thresholds and isinstance(key, tuple) and key:
            return self.thresholds.get(key[0], self.max_failures)
        return self.max_failures

    def _delay(self, strikes: int) -> float:
        # Cap the exponent too: 2**strikes must not grow without bound.
        return min(self.base_delay * 2 ** min(strikes - 1, 64), self.max_delay)

    def _age_out(self, entry: _Entry, now: float) -> None:
        """Forget what has aged out of ``entry``, as of ``now``."""
        while entry.failures and now - entry.failures[0] >= self.window:
            entry.failures.popleft()
        if entry.strikes and now >= entry.locked_until + self.max_delay:
            entry.strikes = 0

    def _idle(self, entry: _Entry, now: float) -> bool:
        self._age_out(entry, now)
        return not entry.failures and not entry.strikes and now >= entry.locked_until

    def prune(self) -> int:
        """
        Forget keys with nothing left to remember.

        :returns: how many keys were dropped.
        """
        now = self.clock.seconds()
        idle = [k for k, e in self._entries.items() if self._idle(e, now)]
        for k in idle:
            del self._entries[k]
        return len(idle)

    def _make_room(self, now: float) -> None:
        self.prune()
        if len(self._entries) < self.max_keys:
            return
        # All busy (a flood of new keys): drop the least recently failed
        # tenth in one go, so the following inserts need no sweep.  Locked
        # keys among the oldest are skipped where possible, so a flood is
        # slow to unlock the keys it is aimed at.
        excess = len(self._entries) - self.max_keys + max(1, self.max_keys // 10)
        oldest = list(islice(self._entries.items(), excess + 64))
        unlocked = [k for k, e in oldest if now >= e.locked_until]
        locked = [k for k, e in oldest if now < e.locked_until]
        for k in (unlocked + locked)[:excess]:
            del self._entries[k]

    def record_failure(self, key: Hashable) -> float:
        """
        Count one failed attempt for ``key``.

        :param key: what failed, e.g. ``("ip", "192.0.2.7")``.
        :returns: seconds the key is locked from now, 0 if it is not.
        """
        now = self.clock.seconds()
        self._calls += 1
        if self._calls % self.prune_every == 0:
            self.prune()
        entry = self._entries.pop(key, None)
        if entry is None:
            if len(self._entries) >= self.max_keys:
                self._make_room(now)
            entry = _Entry(deque(maxlen=self._limit(key)))
        self._entries[key] = entry  # re-inserted: now the most recent
        if now < entry.locked_until:
            return entry.locked_until - now
        self._age_out(entry, now)
        entry.failures.append(now)
        if len(entry.failures) < (entry.failures.maxlen or self.max_failures):
            return 0.0
        entry.failures.clear()
        entry.strikes += 1
        delay = self._delay(entry.strikes)
        entry.locked_until = now + delay
        return delay

    def record_failures(
        self, keys: Iterable[tuple[str, str]], *, what: str, who: str, source: str
    ) -> float:
        """
        Count one failed attempt under each of ``keys``; when that locks any
        of them, log one warning naming who, from where and for how long.

        :param keys: ``(kind, value)`` keys, e.g. ``("sip-user", "1001")``
            and ``("sip-ip", "192.0.2.7")``.
        :param what: what failed, for the log: ``"SIP digest"``, ``"API login"``.
        :param who: the user name the attempt gave (logged quoted: it comes
            from the network).
        :param source: the address the attempt came from.
        :returns: seconds the longest lock on ``keys`` lasts from now, 0 if
            none is locked.
        """
        delays: list[float] = []
        locked: list[str] = []
        for key in keys:
            was_locked = self.is_locked(key)
            delay = self.record_failure(key)
            delays.append(delay)
            if delay and not was_locked:
                locked.append(key[0])
        longest = max(delays, default=0.0)
        if locked:
            self.log.warn(
                "{what} lockout: {who!r} from {source} locked out for {delay:.0f} s"
                " (too many failures by {keys})",
                what=what, who=who, source=source, delay=longest, keys=" and ".join(locked),
            )
        return longest

    def record_success(self, key: Hashable) -> None:
        """
        Forget ``key``'s failures and past lockouts after a good attempt.

        :param key: what succeeded.
        """
        self._entries.pop(key, None)

    def locked_until(self, key: Hashable) -> float | None:
        """
        Tell when ``key``'s lockout ends.

        :param key: the key to look up.
        :returns: the clock time the lock ends, or None if not locked.
        """
        entry = self._entries.get(key)
        if entry is None or self.clock.seconds() >= entry.locked_until:
            return None
        return entry.locked_until

    def is_locked(self, key: Hashable) -> bool:
        """
        Tell whether ``key`` is locked now.

        :param key: the key to look up.
        :returns: True while a lockout is in force.
        """
        return self.locked_until(key) is not None

    def snapshot(self) -> list[tuple[Hashable, float]]:
        """
        List the keys locked now.

        :returns: ``(key, unlock time)`` pairs, soonest unlock first.
        """
        now = self.clock.seconds()
        locked = [
            (k, e.locked_until)
            for k, e in self._entries.items()
            if now < e.locked_until
        ]
        return sorted(locked, key=lambda pair: pair[1])
