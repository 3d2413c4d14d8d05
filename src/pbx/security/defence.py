"""
Defence against hostile SIP sources, without fail2ban: per-source rate
limits, threat scores and bans with growing durations.

Every message's bytes pass :meth:`SourceDefence.admit` before they are
parsed; a banned source costs one dict lookup.  Each source address has a
token bucket per kind of message (:mod:`pbx.security.ratelimit`): what
comes faster than its limit is dropped, unanswered, so pbx never sends more
than it receives.  Misbehaviour adds to the source's threat score: each
drop for flooding, failed or locked-out authentication, probes for unknown
users, scanner user agents, malformed messages (:data:`OFFENCES`).  The
score halves every :data:`SCORE_HALF_LIFE` seconds; a source that reaches
the ban score is banned for ``ban_time`` seconds, doubling with every
further ban up to ``ban_max_time``.  Allow-listed networks are never
limited, scored or banned.

State is bounded: idle sources are swept every :data:`SWEEP_INTERVAL`
seconds on the injected clock, and at ``max_sources`` the oldest are
dropped, banned ones last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import islice

from attrs import define, field, frozen

from zope.interface import implementer

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pbx.config import SecurityConfig
from pbx.security.interfaces import ISourceDefence
from pbx.security.networks import Network, contains, parse_networks
from pbx.security.ratelimit import (
    DEFAULT_LIMITS,
    Bucket,
    Limit,
    RetransmissionPasses,
    branch_of,
    kind_of,
)

__all__ = ["OFFENCES", "SCANNER_AGENTS", "Ban", "SourceDefence", "is_scanner"]

#: Points each offence adds to a source's score.  With the default ban
#: score of 100: 500 messages dropped for flooding, 10 failed (or
#: locked-out) authentications, 5 probes for unknown users, 50 malformed
#: messages, or one scanner's User-Agent.  A phone with a bug that sends
#: one malformed message every 20 s settles near 45 points.
OFFENCES: dict[str, float] = {
    "flood": 0.2,
    "malformed": 2.0,
    "auth failure": 10.0,
    "unknown user": 20.0,
    "scanner": 100.0,
}

#: User-Agent substrings (lower case) of SIP scanners and war-diallers.
SCANNER_AGENTS = (
    "friendly-scanner", "sipvicious", "sipcli", "vaxsipuseragent", "sip-scan", "sipscan",
    "iwar", "sundayddr", "pplsip", "sivus", "smap",
)

#: Seconds for a score to halve.
SCORE_HALF_LIFE = 300.0
#: Seconds between sweeps of idle sources.
SWEEP_INTERVAL = 60.0


def is_scanner(user_agent: str) -> bool:
    """Whether a User-Agent value names a known SIP scanner."""
    agent = user_agent.lower()
    return any(name in agent for name in SCANNER_AGENTS)


@frozen
class Ban:
    """One ban in force: who, from and until when (clock times), the how-many-th, and why."""

    host: str
    since: float
    until: float
    strikes: int
    reason: str


@define(eq=False, slots=True)
class _Source:
    """What is known of one source address."""

    allowed: bool
    buckets: dict[str, Bucket] = field(factory=dict)
    score: float = 0.0
    scored_at: float = 0.0
    strikes: int = 0
    banned_at: float = 0.0
    banned_until: float = 0.0
    reason: str = ""


@implementer(ISourceDefence)
@define(eq=False)
class SourceDefence:
    """
    Rate limits, scores and bans per source address; see the module docstring.

    :ivar clock: the injected time source (and the sweep's timer).
    :ivar limits: kind of message -> its bucket's shape (kinds left out are
        not limited).
    :ivar allow: networks never limited, scored or banned.
    :ivar ban_score: the score that bans a source.
    :ivar ban_time: seconds of a source's first ban.
    :ivar ban_max_time: longest ban; past bans are forgotten after a source
        stays out of trouble this long.
    """

    clock: IReactorTime
    limits: Mapping[str, Limit] = field(factory=lambda: dict(DEFAULT_LIMITS))
    allow: tuple[Network, ...] = ()
    ban_score: float = 100.0
    ban_time: float = 60.0
    ban_max_time: float = 86400.0
    max_sources: int = 50_000
    stats: dict[str, int] = field(factory=lambda: {"admitted": 0, "limited": 0, "banned": 0})
    _sources: dict[str, _Source] = field(factory=dict)
    _passes: RetransmissionPasses = field(factory=RetransmissionPasses)
    _sweeper: LoopingCall | None = None
    #: Told of each new ban: the audit trail, the security log, the SIP connections.
    _ban_listeners: list[Callable[[Ban], object]] = field(factory=list, init=False)
    log = Logger()

    @classmethod
    def from_config(cls, clock: IReactorTime, security: SecurityConfig) -> SourceDefence:
        """The defence the ``security`` section describes."""
        return cls(
            clock, dict(security.rate_limits), parse_networks(security.allow),
            ban_score=security.ban_score, ban_time=security.ban_time,
            ban_max_time=security.ban_max_time,
        )

    def __attrs_post_init__(self) -> None:
        if self.ban_score <= 0 or self.ban_time <= 0 or self.ban_max_time < self.ban_time:
            raise ValueError("ban_score and ban_time must be positive, ban_max_time at least ban_time")

    # -- the hot path ------------------------------------------------------

    def admit(self, data: bytes, host: str) -> bool:
        """See :meth:`ISourceDefence.admit`."""
        source = self._sources.get(host)
        if source is None:
            source = self._add(host)
        if source.allowed:
            return True
        now = self.clock.seconds()
        if now < source.banned_until:
            self.stats["banned"] += 1
            return False
        kind = kind_of(data)
        limit = self.limits.get(kind)
        if limit is None:
            return True
        branch = None if kind == "response" else branch_of(data)
        if branch is not None and self._passes.use(host, branch):
            return True  # a retransmission, ACK or CANCEL of an admitted request
        bucket = source.buckets.get(kind)
        if bucket is None:
            bucket = source.buckets[kind] = Bucket(float(limit.burst), now)
        if not bucket.take(limit, now):
            self.stats["limited"] += 1
            self._score(host, source, "flood", now)
            return False
        self.stats["admitted"] += 1
        if branch is not None:
            self._passes.admitted(host, branch)
        return True

    # -- scores and bans ---------------------------------------------------

    def offence(self, host: str, kind: str) -> bool:
        """See :meth:`ISourceDefence.offence`."""
        source = self._sources.get(host)
        if source is None:
            source = self._add(host)
        if source.allowed:
            return False
        now = self.clock.seconds()
        if now < source.banned_until:
            return True
        return self._score(host, source, kind, now)

    def _score(self, host: str, source: _Source, kind: str, now: float) -> bool:
        score = self._decayed(source, now) + OFFENCES[kind]
        source.score, source.scored_at = score, now
        if score < self.ban_score:
            return False
        self._ban(host, source, kind, now)
        return True

    @staticmethod
    def _decayed(source: _Source, now: float) -> float:
        if not source.score:
            return 0.0
        return source.score * 0.5 ** ((now - source.scored_at) / SCORE_HALF_LIFE)

    def _ban(self, host: str, source: _Source, kind: str, now: float) -> None:
        if source.strikes and now >= source.banned_until + self.ban_max_time:
            source.strikes = 0  # out of trouble long enough: start again
        source.strikes += 1
        duration = min(self.ban_time * 2 ** min(source.strikes - 1, 64), self.ban_max_time)
        source.banned_at, source.banned_until = now, now + duration
        source.score = 0.0
        source.buckets.clear()
        source.reason = kind
        self.log.warn(
            "banned {host} for {duration:.0f} s: {reason} (ban {strikes})",
            host=host, duration=duration, reason=kind, strikes=source.strikes,
        )
        ban = Ban(host, now, source.banned_until, source.strikes, kind)
        for listener in self._ban_listeners:
            try:
                listener(ban)
            except Exception:
                self.log.failure("telling of the ban of {host} failed", host=host)

    def add_ban_listener(self, listener: Callable[[Ban], object]) -> None:
        """See :meth:`ISourceDefence.add_ban_listener`."""
        self._ban_listeners.append(listener)

    def banned(self, host: str) -> bool:
        """See :meth:`ISourceDefence.banned`."""
        source = self._sources.get(host)
        return source is not None and self.clock.seconds() < source.banned_until

    def bans(self) -> list[Ban]:
        """See :meth:`ISourceDefence.bans`."""
        now = self.clock.seconds()
        found = [Ban(h, s.banned_at, s.banned_until, s.strikes, s.reason) for h, s in self._sources.items()
                 if now < s.banned_until]
        return sorted(found, key=lambda ban: ban.until)

    def unban(self, host: str) -> bool:
        """See :meth:`ISourceDefence.unban`."""
        source = self._sources.pop(host, None)
        return source is not None and self.clock.seconds() < source.banned_until

    def scores(self) -> list[tuple[str, float]]:
        """See :meth:`ISourceDefence.scores`."""
        now = self.clock.seconds()
        found = [(h, round(self._decayed(s, now), 1)) for h, s in self._sources.items()]
        return sorted([pair for pair in found if pair[1] > 0], key=lambda pair: -pair[1])

    # -- the allow-list ------------------------------------------------------

    def allow_list(self) -> list[str]:
        """See :meth:`ISourceDefence.allow_list`."""
        return [str(n) for n in self.allow]

    def set_allow_list(self, networks: Iterable[str]) -> None:
        """See :meth:`ISourceDefence.set_allow_list`."""
        self.allow = parse_networks(networks)
        self._sources.clear()  # each source's allowed flag is worked out again

    # -- memory --------------------------------------------------------------

    def _add(self, host: str) -> _Source:
        if len(self._sources) >= self.max_sources:
            self._make_room()
        source = self._sources[host] = _Source(contains(self.allow, host))
        return source

    def _idle(self, source: _Source, now: float) -> bool:
        if now < source.banned_until or (source.strikes and now < source.banned_until + self.ban_max_time):
            return False
        if self._decayed(source, now) >= 1.0:
            return False
        return all(bucket.full(self.limits[kind], now) for kind, bucket in source.buckets.items())

    def sweep(self) -> int:
        """
        Forget sources with nothing worth remembering.

        :returns: how many were dropped.
        """
        now = self.clock.seconds()
        idle = [h for h, s in self._sources.items() if self._idle(s, now)]
        for host in idle:
            del self._sources[host]
        return len(idle)

    def _make_room(self) -> None:
        self.sweep()
        if len(self._sources) < self.max_sources:
            return
        # Still full (many new sources at once): drop the oldest tenth, banned
        # ones only if there is nothing else, so a flood of spoofed sources is
        # slow to lift real bans.
        now = self.clock.seconds()
        excess = len(self._sources) - self.max_sources + max(1, self.max_sources // 10)
        oldest = list(islice(self._sources.items(), excess + 64))
        free = [h for h, s in oldest if now >= s.banned_until]
        held = [h for h, s in oldest if now < s.banned_until]
        for host in (free + held)[:excess]:
            del self._sources[host]

    @property
    def tracked(self) -> int:
        """How many sources are remembered now."""
        return len(self._sources)

    def start(self) -> None:
        """Start the periodic sweep on the injected clock."""
        self._sweeper = LoopingCall(self._sweep_safely)
        self._sweeper.clock = self.clock
        self._sweeper.start(SWEEP_INTERVAL, now=False)

    def stop(self) -> None:
        """Stop the sweep."""
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

    def _sweep_safely(self) -> None:
        try:
            self.sweep()
        except Exception:
            self.log.failure("sweep of SIP sources failed")
