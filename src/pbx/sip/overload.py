"""
Graceful overload: when pbx falls behind, new work is refused at once
(RFC 7339 §1 on why a server sheds load early and cheaply), so the work
already accepted still finishes in time.  A refused request gets a
stateless 503 with Retry-After (RFC 3261 §21.5.4), built by
:func:`refusal`: the client learns at once, a phone waits out Retry-After,
and the answer costs less than one more copy of the request would.
Dropping it instead (its client retransmits, §17.1.1.2) only moves the
work later, where it meets the rest of the load, and leaves the client
waiting up to 32 s.

Two signals say pbx is behind (:class:`OverloadGuard`): how long a UDP
request waited in the socket's receive queue, as the kernel stamped it
(:mod:`pbx.sip.udp_port`), and the reactor's lag.  The wait is what a
client over UDP feels; while it stands over ``queue_ms`` (or one request
waited over twice that), new work is refused.  New work is an INVITE
outside a dialog (no To tag, §12.1.1) or a REGISTER, without credentials
(it opens a challenge round; the second request of a round finishes work
already accepted).  Past
``severe_lag_ms``, every new INVITE and REGISTER is refused, with
credentials or not.  In-dialog requests, ACK, CANCEL, BYE and every
response always pass.  The thresholds are the ``sip.overload`` section
(:class:`pbx.config.SIPOverloadConfig`).

Refusing has to cost far less than the work it saves, or a flood three
times the capacity still wins: the decision reads the start line and a few
header lines of the raw bytes, and the 503 is written from the request's
own Via, From, To, Call-ID and CSeq lines (§8.2.6.1-§8.2.6.2), without
parsing the message (9 µs here, against 25-40 µs to parse it and answer
with :func:`pbx.sip.message.make_response`).
"""

from __future__ import annotations

import math
import re

from attrs import define, field

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pbx.config import SIPOverloadConfig
from pbx.sip.ids import new_tag
from pbx.sip.transaction import Peer

__all__ = ["GAIN", "MAX_EXCESS", "RELEASE", "SAMPLE_INTERVAL", "SMOOTHING", "OverloadGuard", "new_work", "refusal"]

#: Seconds between samples of the reactor's lag.
SAMPLE_INTERVAL = 0.025
#: Seconds the lag is smoothed over.
SMOOTHING = 0.5
#: How fast the refused share grows, per second and per unit of pressure
#: over 1: at pressure 2 it goes from none to all in two thirds of a second.
#: A stall of the reactor shorter than that (another process taking the
#: core, a garbage collection) is waited out; clients retransmit, and the
#: backlog is read once the reactor runs again.
GAIN = 1.5
#: The most excess pressure counted: the share grows from none to all in a
#: third of a second at the fastest.
MAX_EXCESS = 2.0
#: How fast it shrinks, per second and per unit of pressure under 1: from
#: all to none in half a second once nothing waits.  Shrinking as gently as
#: it grows keeps the share steady near the load's excess, where dropping it
#: at once would let a flood in again.
RELEASE = 2.0

_CREDENTIALS = re.compile(rb"\n(?:proxy-)?authorization[ \t]*:", re.IGNORECASE)
_TO_TAG = re.compile(rb"\n(?:to|t)[ \t]*:[^\n]*;[ \t]*tag[ \t]*=", re.IGNORECASE)
#: The header lines a response copies (§8.2.6.2), compact forms too (§7.3.3).
_LINE = re.compile(rb"^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_FOLD = re.compile(rb"\r?\n[ \t]+")
_COPIED = {b"via": b"Via", b"v": b"Via", b"from": b"From", b"f": b"From", b"to": b"To", b"t": b"To",
           b"call-id": b"Call-ID", b"i": b"Call-ID", b"cseq": b"CSeq"}
_RPORT = re.compile(rb";[ \t]*rport(?![=\w-])", re.IGNORECASE)
_SENT_BY = re.compile(rb"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*UDP[ \t]+(\[[^\]]*\]|[^;:, \t]+)(?::([0-9]+))?",
                      re.IGNORECASE)


def new_work(data: bytes, severe: bool) -> bool:
    """
    Whether the request in ``data`` starts new work: a REGISTER, or an
    INVITE without a To tag; unless ``severe``, only one without credentials.
    """
    head = _head_end(data)
    if data.startswith(b"REGISTER "):
        pass
    elif data.startswith(b"INVITE "):
        if _TO_TAG.search(data, 0, head):
            return False  # a re-INVITE in a dialog (§14)
    else:
        return False
    return severe or not _CREDENTIALS.search(data, 0, head)


def _head_end(data: bytes) -> int:
    """Where the header section ends (§7: CRLF CRLF; bare LFs are tolerated)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    return end if end >= 0 else len(data)


def refusal(data: bytes, peer: Peer, retry_after: int) -> tuple[bytes, Peer] | None:
    """
    A stateless 503 for the request in ``data``, and where it goes; None
    when the request lacks what a response needs (then it is dropped).

    The response copies the Via, From, To, Call-ID and CSeq lines (§8.2.6.2)
    and adds a To tag; the top Via gets ``received`` and ``rport`` (§18.2.1,
    RFC 3581 §4) and the response goes where §18.2.2 says: back on a
    stream's connection; for UDP to the source address, at the source port
    when the client asked with ``rport`` and otherwise at the Via's port.
    """
    head = data[: _head_end(data)]
    if b"\n " in head or b"\n\t" in head:
        head = _FOLD.sub(b" ", head)  # §7.3.1: a folded line continues the one above
    copied = [(_COPIED[name.lower()], value.rstrip()) for name, value in _LINE.findall(head)]
    if len({name for name, _ in copied}) != 5:
        return None
    top = next(value for name, value in copied if name == b"Via")
    top = top.split(b",", 1)[0]
    host = peer.host.encode()
    to = peer  # streams answer on the request's connection (§18.2.2)
    if _RPORT.search(top):
        stamped = _RPORT.sub(b";rport=" + str(peer.port).encode(), top, count=1) + b";received=" + host
    else:
        stamped = top + b";received=" + host
        if peer.transport == "udp":
            sent_by = _SENT_BY.match(top)
            if sent_by is None:
                return None
            to = Peer("udp", peer.host, int(sent_by.group(2) or 5060))
    out = [b"SIP/2.0 503 Service Unavailable"]
    via_done = False
    for name, value in copied:
        if name == b"Via" and not via_done:
            rest = value[len(top):]
            value, via_done = stamped + rest, True
        elif name == b"To" and b"tag=" not in value.lower():
            value = value + b";tag=" + new_tag().encode()
        out.append(name + b": " + value)
    out.append(b"Retry-After: " + str(retry_after).encode())
    out.append(b"Content-Length: 0")
    return b"\r\n".join(out) + b"\r\n\r\n", to


@define(eq=False)
class OverloadGuard:
    """
    Decides what new work to refuse, on two signals.

    The wait of each UDP datagram in the receive queue, as the kernel
    stamped it (:mod:`pbx.sip.udp_port`): while the wait has stood over
    ``queue_ms`` for ``queue_ms``, or a request waited over twice that, new
    requests are refused.  Refusing is cheap, so the queue drains while
    requests wait too long and new work is taken again as soon as they do
    not: pbx takes as much new work as it can finish before clients
    retransmit (500 ms, RFC 3261 §17.1.1.2), and no more, without any rate
    to tune.  This is the signal that works over UDP; 0 turns it off.

    The reactor's lag, sampled on ``clock`` every :data:`SAMPLE_INTERVAL`
    seconds and smoothed over :data:`SMOOTHING` (one late turn, a garbage
    collection, is not overload), for what carries no queue stamp (TCP and
    TLS).  The share of new work refused follows the lag as RFC 7339 §3.3's
    loss-based control asks: it grows while the lag is over ``lag_ms`` (by
    :data:`GAIN` per second and unit of excess) and shrinks while it is
    under (by :data:`RELEASE`).  Past ``severe_lag_ms``, smoothed or in a
    reactor turn that has not let the sampling timer run yet, everything new
    is refused, with credentials or not.  ``lag_ms`` 0 turns it off.

    :ivar clock: the injected reactor time; its lateness is the lag.
    :ivar limits: the thresholds (``sip.overload``).
    """

    clock: IReactorTime
    limits: SIPOverloadConfig = SIPOverloadConfig()
    #: Lag of the last sample, seconds.
    lag: float = 0.0
    #: The smoothed lag, seconds.
    level: float = 0.0
    #: The share of new work refused on the lag, 0 to 1.
    share: float = 0.0
    #: How long the last new request refused on its wait had waited, seconds.
    waited: float = 0.0
    stats: dict[str, int] = field(factory=lambda: {"refused": 0, "episodes": 0, "late": 0})
    _due: float = 0.0
    _last: float = 0.0
    _timer: IDelayedCall | None = None
    _shedding: bool = False
    _late_at: float | None = None
    _above_since: float | None = None
    _debt: float = 0.0
    log = Logger()

    def start(self) -> None:
        """Take the first sample of the lag one interval from now (if the lag counts)."""
        if self.limits.lag_ms > 0 and self._timer is None:
            self._last = self.clock.seconds()
            self._arm()

    def stop(self) -> None:
        """Cancel the sampling timer."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _arm(self) -> None:
        self._due = self.clock.seconds() + SAMPLE_INTERVAL
        self._timer = self.clock.callLater(SAMPLE_INTERVAL, self._sample)

    def _sample(self) -> None:
        now = self.clock.seconds()
        self.lag = max(0.0, now - self._due)
        elapsed = max(now - self._last, 1e-6)
        self._last = now
        self._arm()
        # An average weighted by time: a sample stands for the time since the last.
        weight = 1.0 - math.exp(-elapsed / SMOOTHING)
        self.level += (self.lag - self.level) * weight
        pressure = self.level * 1000 / self.limits.lag_ms
        if pressure > 1.0:
            excess = min(pressure - 1.0, MAX_EXCESS)
            self.share = min(1.0, self.share + GAIN * excess * elapsed)
        else:
            share = self.share - RELEASE * (1.0 - pressure) * elapsed
            self.share = share if share > 1e-9 else 0.0
        shedding = self.share > 0
        if shedding and not self._shedding:
            self._episode("the reactor is {ms:.0f} ms late", 1000 * self.level)
        elif self._shedding and not shedding:
            self.log.info("overload over: {refused} request(s) refused so far", refused=self.stats["refused"])
        self._shedding = shedding

    def _episode(self, why: str, ms: float) -> None:
        self.stats["episodes"] += 1
        self.log.warn("overloaded: " + why + "; refusing new calls and registrations", ms=ms)

    def _overdue(self) -> float:
        """How late the sampling timer is now, in a reactor turn that has not let it run."""
        return self.clock.seconds() - self._due

    def refuses(self, data: bytes, waited: float | None = None) -> bool:
        """
        Whether the message in ``data`` is new work to refuse now (counted);
        ``waited``: the seconds it waited in the UDP receive queue (None:
        not known, as on a stream).
        """
        late = waited is not None and self.limits.queue_ms > 0 and self._late(waited)
        if not data.startswith((b"INVITE ", b"REGISTER ")):
            return False
        severe = self._timer is not None and max(self.level, self._overdue()) * 1000 > self.limits.severe_lag_ms
        share = 1.0 if severe or late else self.share
        if not share or not new_work(data, severe):
            if waited is not None and self._late_at is not None and not late:
                self._late_over()
            return False
        if late:
            self.waited = waited  # type: ignore[assignment]
            self.stats["late"] += 1
            if self._late_at is None:
                self._episode("requests wait {ms:.0f} ms to be read", 1000 * self.waited)
            self._late_at = self.clock.seconds()
        elif share < 1.0:
            # Refuse that share of new work, evenly: one in two at share 0.5.
            self._debt += share
            if self._debt < 1.0:
                return False
            self._debt -= 1.0
        self.stats["refused"] += 1
        return True

    def _late(self, waited: float) -> bool:
        """
        Whether requests wait too long now: this one waited over twice
        ``queue_ms``, or every one read for ``queue_ms`` waited over it (a
        queue that stands, as CoDel tells one from a burst, RFC 8289 §2).
        A pause of the reactor (a garbage collection) delays what arrives
        during it, and the backlog is read down at once; it refuses only
        what waited so long that its client is about to send it again.
        """
        target = self.limits.queue_ms / 1000
        if waited <= target:
            self._above_since = None
            return False
        now = self.clock.seconds()
        if self._above_since is None:
            self._above_since = now
        return waited > 2 * target or now - self._above_since >= target

    def _late_over(self) -> None:
        """A new request read in time, a second after the last one refused on its wait."""
        assert self._late_at is not None
        if self.clock.seconds() - self._late_at >= 1.0:
            self._late_at = None
            self.log.info("overload over: {refused} request(s) refused so far", refused=self.stats["refused"])
