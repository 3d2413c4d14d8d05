"""
DTMF digits, whatever the phone used: one :class:`DigitEvent` per key press.

A phone signals a key press in one (or, carelessly, several) of three ways:

* RFC 4733 ``telephone-event`` packets in the RTP stream:
  :func:`encode_event` / :func:`decode_event` for the payload,
  :class:`RFC4733Receiver` to turn the packets of one stream into key presses
  and :class:`RFC4733Sender` to produce the packets for one;
* SIP INFO requests (``application/dtmf-relay`` or ``application/dtmf``):
  :func:`parse_dtmf_info`;
* the tones themselves, in band: ``pbx.media.goertzel.GoertzelDetector``
  (kept apart because it needs numpy).

:class:`DigitStream` merges the three into one stream and drops the second
report of a press that two sources reported.

Pure code: no Twisted, no clock.  Times are RTP timestamps (the receiver) or
seconds from the caller's clock (the stream), always passed in.
"""

from __future__ import annotations

import re
import struct
from collections import deque

from attrs import Factory, define, field, frozen, validators

__all__ = [
    "DEFAULT_INFO_DURATION_MS",
    "DIGITS",
    "FLASH",
    "MAX_DURATION",
    "SOURCES",
    "DigitEvent",
    "DigitStream",
    "EventPacket",
    "RFC4733Receiver",
    "RFC4733Sender",
    "TelephoneEvent",
    "decode_event",
    "digit_for_event",
    "encode_event",
    "event_for_digit",
    "parse_dtmf_info",
]

DIGITS = "0123456789*#ABCD!"
"""The keys, indexed by RFC 4733 event code (§3.2): 0-9, * = 10, # = 11,
A-D = 12-15, and ``"!"`` for flash (event 16, a hook flash)."""
FLASH = "!"
MAX_DURATION = 0xFFFF
"""The largest duration a telephone-event payload can carry (§2.3.5)."""
SOURCES = ("rfc4733", "info", "inband")
"""Where a digit came from, best first: :class:`DigitStream`'s preference."""
DEFAULT_INFO_DURATION_MS = 100
"""The duration given to a SIP INFO digit whose body does not state one."""

_PAYLOAD = struct.Struct("!BBH")
_END = 0x80
_VOLUME = 0x3F
_SERIAL = 1 << 32
_INFO_MAX_BODY = 1024


def _serial_delta(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, which wrap."""
    delta = (a - b) % _SERIAL
    return delta - _SERIAL if delta >= _SERIAL // 2 else delta


@frozen
class DigitEvent:
    """
    One key press.

    :ivar digit: one character of :data:`DIGITS`.
    :ivar duration_ms: how long the key was held, as far as the source knows.
    :ivar source: one of :data:`SOURCES`.
    """

    digit: str
    duration_ms: int
    source: str


@frozen
class TelephoneEvent:
    """
    A decoded RFC 4733 telephone-event payload (§2.3).

    :ivar event: the event code, 0-255 (only 0-16 are keys).
    :ivar end: the E bit: this packet reports the end of the event.
    :ivar volume: power level of the tone in -dBm0, 0-63.
    :ivar duration: length of the event so far, in RTP timestamp units.
    """

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        """The key for this event, or ``None`` if the event is not a key."""
        return digit_for_event(self.event)


def event_for_digit(digit: str | int) -> int:
    """
    The RFC 4733 event code for a key.

    :param digit: a character of :data:`DIGITS` (a-d in either case), or an
        event code 0-255 passed through.
    :raises ValueError: for anything else.
    """
    if isinstance(digit, int) and not isinstance(digit, bool):
        if 0 <= digit <= 255:
            return digit
        raise ValueError(f"event code out of range: {digit!r}")
    if isinstance(digit, str) and len(digit) == 1:
        code = DIGITS.find(digit.upper())
        if code >= 0:
            return code
    raise ValueError(f"not a DTMF key: {digit!r}")


def digit_for_event(event: int) -> str | None:
    """The key for an RFC 4733 event code, or ``None`` if it is not a key."""
    return DIGITS[event] if 0 <= event < len(DIGITS) else None


def encode_event(digit: str | int, end: bool, volume: int, duration: int) -> bytes:
    """
    A 4-byte telephone-event payload (RFC 4733 §2.3).

    :param digit: the key (see :func:`event_for_digit`).
    :param end: set the E bit.
    :param volume: 0-63, the tone's power in -dBm0.
    :param duration: 0-65535 RTP timestamp units since the event began.
    :raises ValueError: if a field is out of range.
    """
    code = event_for_digit(digit)
    if not 0 <= volume <= _VOLUME:
        raise ValueError(f"volume must be 0-63, not {volume!r}")
    if not 0 <= duration <= MAX_DURATION:
        raise ValueError(f"duration must be 0-65535, not {duration!r}")
    return _PAYLOAD.pack(code, (_END if end else 0) | volume, duration)


def decode_event(payload: bytes) -> TelephoneEvent:
    """
    Decode a telephone-event payload; the reserved R bit is ignored (§2.3.3).

    :raises ValueError: if the payload is not exactly 4 bytes.  (Redundant
        events arrive in RFC 2198 blocks, which the RTP layer splits.)
    """
    if len(payload) != _PAYLOAD.size:
        raise ValueError(f"telephone-event payload of {len(payload)} bytes, not 4")
    code, flags, duration = _PAYLOAD.unpack(payload)
    return TelephoneEvent(code, bool(flags & _END), flags & _VOLUME, duration)


# --- receiving RFC 4733 ---------------------------------------------------


@define(eq=False)
class _Pending:
    """The key press being received: its current segment and earlier ones."""

    timestamp: int
    event: int
    duration: int = 0
    earlier: int = 0


@define(eq=False)
class RFC4733Receiver:
    """
    Turns the telephone-event packets of one RTP stream into key presses.

    Every packet of an event carries the event's start as its RTP timestamp
    (§2.5.1.2), so the timestamp identifies the press: repeated start
    packets, updates and the three end packets of one press (§2.5.1.4) give
    one digit, and two presses of the same key give two.  Packets may arrive
    in any order; the longest duration seen wins.

    A press is reported when its end packet arrives, when a packet of a newer
    event arrives (its end packets were lost), or when :meth:`flush` finds it
    has not been updated for :attr:`timeout` timestamp units.  A press longer
    than :data:`MAX_DURATION` arrives in segments, each starting where the
    previous one reached the maximum (§2.5.1.3); they are joined into one.

    :param clock_rate: the telephone-event RTP clock rate (8000 unless the
        SDP says otherwise).
    :param timeout: how long after the end of an event its last packet
        reported :meth:`flush` gives up waiting for more, in timestamp units;
        one second by default.
    """

    clock_rate: int = field(default=8000, validator=validators.gt(0))
    timeout: int = field(
        default=Factory(lambda self: self.clock_rate, takes_self=True),
        validator=validators.gt(0),
    )
    _current: _Pending | None = field(init=False, default=None)
    _finished: deque[int] = field(init=False, factory=lambda: deque(maxlen=32))
    _newest: int | None = field(init=False, default=None)

    def feed(self, timestamp: int, marker: bool, payload: bytes) -> list[DigitEvent]:
        """
        Take one telephone-event packet.

        The marker bit is accepted but not relied on: a lost start packet
        must not lose the press, so any packet with a new timestamp starts
        an event.

        :param timestamp: the packet's RTP timestamp.
        :param marker: the packet's RTP marker bit.
        :param payload: the packet's payload.
        :returns: the presses this packet completed, oldest first (at most
            two: a press whose end was lost, and this one).
        :raises ValueError: if the payload is malformed; nothing changes.
        """
        del marker  # see the docstring
        event = decode_event(payload)
        timestamp %= _SERIAL
        done: list[DigitEvent] = []
        if event.digit is None or timestamp in self._finished:
            return done  # not a key, or a late copy of a finished press
        current = self._current
        if current is not None and timestamp != current.timestamp:
            delta = _serial_delta(timestamp, current.timestamp)
            if delta < 0:
                return done  # a late packet of an older event
            if event.event == current.event and delta == MAX_DURATION:
                # RFC 4733 §2.5.2.3: the next segment of a long press.
                self._finished.append(current.timestamp)
                current.earlier += MAX_DURATION
                current.timestamp = timestamp
                current.duration = 0
                self._newest = timestamp
            else:
                # A newer event: the end packets of this one were all lost.
                done.append(self._finish(current))
                current = None
        if current is None:
            if self._newest is not None and _serial_delta(timestamp, self._newest) < 0:
                return done
            current = self._current = _Pending(timestamp, event.event)
            self._newest = timestamp
        if event.event != current.event:
            return done  # two events under one timestamp: keep the first
        current.duration = max(current.duration, event.duration)
        if event.end:
            done.append(self._finish(current))
        return done

    def flush(self, now_timestamp: int | None = None) -> list[DigitEvent]:
        """
        End a press whose end packets were all lost.

        :param now_timestamp: the stream's current RTP timestamp; the press in
            progress ends if it has not been updated for :attr:`timeout`.
            ``None`` ends it unconditionally (the stream is closing).
        :returns: the press that ended, if any.
        """
        current = self._current
        if current is None:
            return []
        if now_timestamp is not None:
            reported_end = current.timestamp + current.duration
            if _serial_delta(now_timestamp % _SERIAL, reported_end) < self.timeout:
                return []
        return [self._finish(current)]

    def _finish(self, current: _Pending) -> DigitEvent:
        """Report the press in progress and remember its timestamp."""
        self._current = None
        self._finished.append(current.timestamp)
        samples = current.earlier + current.duration
        digit = DIGITS[current.event]
        return DigitEvent(digit, round(samples * 1000 / self.clock_rate), "rfc4733")


# --- sending RFC 4733 -----------------------------------------------------


@frozen
class EventPacket:
    """
    One telephone-event packet to send.

    The RTP layer sends the packets of a press in list order, each with the
    next sequence number, at ``send_offset`` timestamp units after the press
    began, with RTP timestamp ``event_timestamp + timestamp_offset`` (the
    offset is zero except for the later segments of a press longer than
    :data:`MAX_DURATION`), and the marker bit set as given.  Audio sent after
    the press continues from ``event_timestamp + duration``.

    :ivar marker: set the RTP marker bit.
    :ivar payload: the telephone-event payload.
    :ivar timestamp_offset: added to the press's RTP timestamp.
    :ivar send_offset: when to send, in timestamp units after the press began.
    """

    marker: bool
    payload: bytes
    timestamp_offset: int
    send_offset: int


@frozen
class RFC4733Sender:
    """
    Produces the RFC 4733 packets that report one key press.

    A start packet with the marker bit, an update every ``interval_ms`` whose
    duration grows, and the end packet three times, ``interval_ms`` apart
    (§2.5.1.4).  All share the event's RTP timestamp.  A press longer than
    :data:`MAX_DURATION` is sent in segments (§2.5.1.3): each segment but the
    last ends with a packet reporting the maximum duration without the E bit
    (also sent three times), and the next starts at the timestamp where the
    previous one reached it, without the marker bit.

    :param clock_rate: the negotiated telephone-event clock rate.
    :param interval_ms: time between packets; many phones use their audio
        ptime (20 ms).
    :param volume: tone power in -dBm0 written into every packet.
    """

    clock_rate: int = field(default=8000, validator=validators.gt(0))
    interval_ms: int = field(default=50, validator=validators.gt(0))
    volume: int = field(default=10, validator=[validators.ge(0), validators.le(63)])

    @property
    def step(self) -> int:
        """Timestamp units between two packets."""
        return max(1, self.clock_rate * self.interval_ms // 1000)

    def packets(self, digit: str | int, duration_ms: int) -> list[EventPacket]:
        """
        The packets for one press, in sending order.

        :param digit: the key (see :func:`event_for_digit`).
        :param duration_ms: how long the key is held; positive.
        :raises ValueError: for an unknown key or a duration under 1 ms.
        """
        code = event_for_digit(digit)
        if duration_ms < 1:
            raise ValueError(f"duration must be at least 1 ms, not {duration_ms!r}")
        total = max(1, round(duration_ms * self.clock_rate / 1000))
        step = self.step
        out: list[EventPacket] = []
        start = 0
        while True:
            length = min(total - start, MAX_DURATION)
            last = start + length >= total
            for progress in range(step, length, step):
                payload = encode_event(code, False, self.volume, progress)
                out.append(EventPacket(not out, payload, start, start + progress))
            final = encode_event(code, last, self.volume, length)
            for copy in range(3):
                marker = not out
                out.append(
                    EventPacket(marker, final, start, start + length + copy * step)
                )
            if last:
                break
            start += MAX_DURATION
        # A segment's repeated final packets overlap the next segment's first
        # updates in time; sorted() is stable, so the final packet goes first.
        return sorted(out, key=lambda packet: packet.send_offset)


# --- SIP INFO -------------------------------------------------------------

_LINE = re.compile(r"^\s*([A-Za-z-]+)\s*[=:]\s*(\S*)\s*$")
_NUMBER = re.compile(r"[0-9]{1,6}")


def _info_digit(signal: str, codes: bool) -> str | None:
    """The key a Signal value names: a key, or (if ``codes``) an event code."""
    signal = signal.strip().upper()
    if len(signal) == 1 and signal in DIGITS:
        return signal
    if codes and _NUMBER.fullmatch(signal):
        return digit_for_event(int(signal))  # Signal=10 is "*", 16 flash
    return None


def parse_dtmf_info(content_type: str, body: bytes | str) -> DigitEvent | None:
    """
    The key press in the body of a SIP INFO request, or ``None``.

    ``application/dtmf-relay`` bodies are ``Signal=5`` and ``Duration=160``
    lines (the duration in milliseconds; the signal a key or an event code,
    ``10`` for ``*``); ``application/dtmf`` bodies are the key alone.  Case
    and spaces do not matter; a missing or unreadable duration becomes
    :data:`DEFAULT_INFO_DURATION_MS`.  Anything else (another media type, no
    recognisable key, a body that is not text) is ``None``.

    :param content_type: the request's Content-Type header value.
    :param body: the request body.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in ("application/dtmf-relay", "application/dtmf"):
        return None
    if len(body) > _INFO_MAX_BODY:
        return None
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    else:
        text = body
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is not None:
            fields.setdefault(match.group(1).lower(), match.group(2))
    if "signal" in fields:
        digit = _info_digit(fields["signal"], codes=True)
    elif media == "application/dtmf" and not fields:
        digit = _info_digit(text, codes=False)
    else:
        return None
    if digit is None:
        return None
    duration = fields.get("duration", "")
    if _NUMBER.fullmatch(duration):
        duration_ms = int(duration)
    else:
        duration_ms = DEFAULT_INFO_DURATION_MS
    return DigitEvent(digit, duration_ms, "info")


# --- merging ---------------------------------------------------------------


@define(eq=False)
class _Report:
    """A press, the sources that reported it, and whether it is out."""

    event: DigitEvent
    arrived: float
    release_at: float
    sources: set[str]
    released: bool = False


@define(eq=False)
class DigitStream:
    """
    One stream of key presses from RFC 4733, SIP INFO and in-band detection.

    A phone may report the same press twice (RFC 4733 and the tones left in
    the audio, say).  A report of a key is taken as the same press as the
    oldest press of that key, less than :attr:`window` seconds old, that its
    source has not reported yet; each source reports a press at most once,
    so two quick presses stay two.

    To prefer the better source when the worse one arrives first, reports
    from every source but the first in :attr:`preference` are held back
    :attr:`hold` seconds; if their counterpart arrives meanwhile, it goes
    out in their place.  Digits leave in the order their presses arrived.

    Nothing runs by itself: call :meth:`push` with each report and
    :meth:`poll` at :meth:`next_deadline` (or every media tick).  Leave out of
    :attr:`preference` the sources a call cannot use (no telephone-event in
    its SDP, say) so that the others are not held for nothing.

    :param hold: seconds a report from a lesser source waits for a better one.
    :param window: seconds within which two sources' reports are one press.
    :param preference: the sources, best first.
    """

    hold: float = field(default=0.25, validator=validators.ge(0))
    window: float = field(default=1.0, validator=validators.gt(0))
    preference: tuple[str, ...] = SOURCES
    _reports: deque[_Report] = field(init=False, factory=deque)

    def __attrs_post_init__(self) -> None:
        if self.hold > self.window:
            raise ValueError("hold must not exceed window")
        if len(set(self.preference)) != len(self.preference) or not self.preference:
            raise ValueError(
                f"preference must name distinct sources: {self.preference!r}"
            )

    def push(self, event: DigitEvent, now: float) -> list[DigitEvent]:
        """
        Take one source's report of a press.

        :param event: the report.
        :param now: the current time in seconds.
        :returns: the digits now ready, in order.
        :raises ValueError: if the event's source is not in :attr:`preference`.
        """
        rank = self._rank(event.source)
        self._forget(now)
        for report in self._reports:
            if (
                report.event.digit != event.digit
                or event.source in report.sources
                or now - report.arrived >= self.window
            ):
                continue
            report.sources.add(event.source)
            if not report.released and rank < self._rank(report.event.source):
                report.event = event
                if rank == 0:
                    report.release_at = now
            return self._release(now)
        release_at = now if rank == 0 else now + self.hold
        self._reports.append(_Report(event, now, release_at, {event.source}))
        return self._release(now)

    def poll(self, now: float) -> list[DigitEvent]:
        """
        Release the held reports whose wait is over.

        :param now: the current time in seconds.
        :returns: the digits now ready, in order.
        """
        self._forget(now)
        return self._release(now)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` will next release a digit, or ``None``."""
        for report in self._reports:
            if not report.released:
                return report.release_at
        return None

    def _rank(self, source: str) -> int:
        """The position of a source in the preference."""
        try:
            return self.preference.index(source)
        except ValueError:
            raise ValueError(f"unknown digit source {source!r}") from None

    def _release(self, now: float) -> list[DigitEvent]:
        """Release reports in arrival order up to the first still held."""
        ready: list[DigitEvent] = []
        for report in self._reports:
            if report.released:
                continue
            if report.release_at > now:
                break
            report.released = True
            ready.append(report.event)
        return ready

    def _forget(self, now: float) -> None:
        """Drop released reports too old to pair with anything."""
        reports = self._reports
        while (
            reports and reports[0].released and now - reports[0].arrived >= self.window
        ):
            reports.popleft()


def call_digits(telephone_event: bool) -> DigitStream:
    """
    The digit sources of a call by its SDP.  With telephone-event
    negotiated: RFC 4733 and SIP INFO only.  The phone sends its keys as
    events, so its audio is not searched for tones: speech cannot be taken
    for a key ("talk-off", which could end a voicemail recording), and the
    detector, a third of a channel's work, does not run.  Without it: SIP
    INFO and in-band tones, and nothing waits for an event that cannot come.
    """
    return DigitStream(preference=("rfc4733", "info") if telephone_event else ("info", "inband"))
