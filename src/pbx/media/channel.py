"""
A channel: one call leg whose media pbx terminates, driven by an
application as a coroutine.

Every ptime (20 ms) the endpoint's playout timer hands the channel one
frame of the caller's audio: it is decoded (or concealed when lost),
searched for in-band DTMF, written to a recording, passed to a bridged
channel or put into a mix (:mod:`pbx.media.mix`), or echoed; then one frame
of whatever is playing (a prompt, a tone, the other side, the mix, the echo,
silence) is encoded and sent.  Every method an application calls
returns a Deferred, so an application reads top to bottom::

    async def run(channel, args):
        await channel.answer()
        await channel.play(["echo/digits"])
        digits = await channel.collect_digits(max_digits=10, timeout=5, terminator="#")
        await channel.play(channel.prompts.say_digits(digits))
        await channel.hangup()
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from attrs import define, field, frozen

from zope.interface import implementer

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from pbx.interfaces import IChannel, ICodec
from pbx.media.arrival_order import ArrivalOrder, Gap
from pbx.media.dtmf import DigitEvent, DigitStream, RFC4733Receiver
from pbx.media.goertzel import GoertzelDetector
from pbx.media.jitter import Frame, Lost
from pbx.media.prompts import PromptLibrary
from pbx.media.rtp import RTPPacket
from pbx.media.wav import WavWriter, load_wav

if TYPE_CHECKING:
    from pbx.media.mix import Member, Mix

#: (frequencies in Hz, on seconds, off seconds) of the call-progress tones
#: (North American precise tones, ITU-T E.180 style cadences).
TONES: dict[str, tuple[tuple[float, ...], float, float]] = {
    "ringback": ((440.0, 480.0), 2.0, 4.0),
    "busy": ((480.0, 620.0), 0.5, 0.5),
    "congestion": ((480.0, 620.0), 0.25, 0.25),
    "beep": ((1000.0,), 0.25, 0.0),
    "dial": ((350.0, 440.0), 1.0, 0.0),
}


class HungUp(Exception):
    """The caller hung up while the application waited on the channel."""


@frozen
class Recording:
    """What :meth:`Channel.record` made."""

    path: str | None
    seconds: float
    reason: str  # "silence", "max", "digit", "hangup"
    digit: str = ""


def frame_level(pcm: np.ndarray) -> float:
    """The RMS level of one frame of int16 samples (0 for an empty one)."""
    if not len(pcm):
        return 0.0
    x = pcm.astype(np.float64)
    # A dot product: a third of the time of mean(x ** 2), on every frame recorded.
    return math.sqrt(float(x @ x) / len(x))


def tone_samples(kind: str, seconds: float, rate: int) -> np.ndarray:
    """``seconds`` of a call-progress tone at ``rate`` as int16."""
    freqs, on, off = TONES[kind]
    n = int(seconds * rate)
    t = np.arange(n) / rate
    wave = np.zeros(n)
    for f in freqs:
        wave += np.sin(2 * np.pi * f * t) / len(freqs)
    if off:
        period = on + off
        wave = np.where((t % period) < on, wave, 0.0)
    return (wave * 0.25 * 32767).astype(np.int16)


@implementer(IChannel)
@define(eq=False)
class Channel:
    """
    The media side of one answered call leg.

    :ivar endpoint: the RTP endpoint (:class:`~pbx.media.endpoint.RTPEndpoint`)
        built with ``on_frame=channel.tick``.
    :ivar codec: the negotiated codec.
    :ivar prompts: where prompt ids are found.
    :ivar on_hangup: asks the signalling side to end the call (BYE).
    :ivar caller: who called: the authenticated extension, or the From
        user of a public caller.
    :ivar caller_name: the caller's display name, or "".
    :ivar callee: the number dialled.
    """

    clock: Any
    codec: ICodec
    prompts: PromptLibrary
    load: Callable[[str], Deferred[Any]]
    endpoint: Any = None
    on_hangup: Callable[[str], None] | None = None
    telephone_event_rate: int = 8000
    caller: str = ""
    caller_name: str = ""
    callee: str = ""
    #: Record from :meth:`packet` (the endpoint's ``on_packet``: every packet
    #: in sequence order) rather than from the jitter buffer's playout.
    record_arrivals: bool = False
    _encoder: Any = field(init=False)
    _decoder: Any = field(init=False)
    _detector: GoertzelDetector = field(init=False)
    _events: RFC4733Receiver = field(init=False)
    digits: DigitStream = field(factory=DigitStream)
    _out: deque[np.ndarray] = field(factory=deque)
    _playing: Deferred[str | None] | None = None
    _interrupt: str = ""
    _digit_buffer: list[str] = field(factory=list)
    _digit_waiters: list[Callable[[], None]] = field(factory=list)
    _echo: bool = False
    _bridge: Channel | None = None
    #: Converts the bridged channel's audio to our rate when the codecs' rates differ.
    _from_bridge: Any = None
    #: Our place in the N-party mix joined (:meth:`join`), or None.
    _member: Member | None = None
    _last_in: np.ndarray | None = None
    _recorder: dict[str, Any] | None = None
    answered: bool = False
    hung_up: bool = False
    _hangup_waiters: list[Deferred[None]] = field(factory=list)
    frames_in: int = 0
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self._encoder = self.codec.new_encoder()
        self._decoder = self.codec.new_decoder()
        self._detector = GoertzelDetector(sample_rate=max(8000, self.rate))
        self._events = RFC4733Receiver(clock_rate=self.telephone_event_rate)

    @property
    def rate(self) -> int:
        """The PCM sample rate of this channel (the codec's)."""
        return int(self.codec.sample_rate)

    @property
    def frame_samples(self) -> int:
        """PCM samples in one 20 ms frame."""
        return self.rate // 50

    # -- the media clock ---------------------------------------------------

    def tick(self, frame: Frame | Lost | None) -> None:
        """One ptime of media: take the caller's frame in, send ours out."""
        if self.hung_up:
            return
        pcm = self._decode(frame)
        # Forget the last frame when none came this tick: a bridged channel
        # would otherwise send that 20 ms again on every tick (a buzz) while
        # this caller is silent.
        self._last_in = None
        if pcm is not None:
            self.frames_in += 1
            self._inbound(pcm)
        self._outbound(pcm)
        now = self.clock.seconds()
        for event in self.digits.poll(now):
            self._digit(event)

    def _decode(self, frame: Frame | Lost | RTPPacket | Gap | None, decoder: Any = None) -> np.ndarray | None:
        """
        PCM of a frame (or packet), concealment for a missing one (``Lost``,
        ``Gap``), None for no media or a payload that does not decode.

        :param decoder: the playout decoder when None; a recording has its own.
        """
        if frame is None:
            return None
        decoder = self._decoder if decoder is None else decoder
        try:
            if isinstance(frame, Lost | Gap):
                return np.asarray(decoder.conceal(self.frame_samples), dtype=np.int16)
            return np.asarray(decoder.decode(frame.payload), dtype=np.int16)
        except ValueError:
            return None

    def _inbound(self, pcm: np.ndarray) -> None:
        self._last_in = pcm
        if self._member is not None:
            self._member.put(pcm)
        if "inband" in self.digits.preference:
            now = self.clock.seconds()
            for event in self._detector.feed(pcm):
                for out in self.digits.push(event, now):
                    self._digit(out)
        if self._recorder is not None and not self.record_arrivals:
            self._record_frame(pcm)

    def packet(self, packet: RTPPacket) -> None:
        """
        A media packet as it arrived (the endpoint's ``on_packet``): while
        recording with :attr:`record_arrivals`, recorded in sequence order,
        late ones included (:mod:`pbx.media.arrival_order`).
        """
        rec = self._recorder
        if rec is None or not self.record_arrivals or self.hung_up:
            return
        for item in rec["order"].push(packet):
            if self._recorder is not rec:
                return  # the recording stopped at this frame (length, silence)
            pcm = self._decode(item, rec["decoder"])
            if pcm is not None:
                self._record_frame(pcm)

    def _outbound(self, pcm_in: np.ndarray | None) -> None:
        frame: np.ndarray | None = None
        finished: Deferred[str | None] | None = None
        if self._out:
            frame = self._out.popleft()
            if not self._out and self._playing is not None:
                finished, self._playing = self._playing, None
        elif self._bridge is not None:
            frame = self._bridge._last_in
            if frame is not None and self._from_bridge is not None:
                frame = self._from_bridge(frame)
        elif self._member is not None:
            frame = self._member.take()
        elif self._echo and pcm_in is not None:
            frame = pcm_in
        if frame is None or self.endpoint is None:
            if self.endpoint is not None:
                self.endpoint.advance(self.codec.clock_rate // 50)
        else:
            if len(frame) != self.frame_samples:
                frame = _fit(frame, self.frame_samples)
            self.endpoint.send(self._encoder.encode(frame), self.codec.clock_rate // 50)
        # play() fires only after its last frame went out, so an application
        # hanging up right after its goodbye prompt does not cut that frame.
        if finished is not None:
            finished.callback(None)

    # -- digits --------------------------------------------------------------

    def telephone_event(self, packet: Any) -> None:
        """An RFC 4733 packet from the endpoint."""
        now = self.clock.seconds()
        try:
            events = self._events.feed(packet.timestamp, packet.marker, packet.payload)
        except ValueError:
            # A malformed payload is dropped, not raised into the endpoint.
            return
        for event in events:
            for out in self.digits.push(event, now):
                self._digit(out)

    def info_digit(self, event: DigitEvent) -> None:
        """A digit from SIP INFO (application/dtmf-relay)."""
        for out in self.digits.push(event, self.clock.seconds()):
            self._digit(out)

    def _digit(self, event: DigitEvent) -> None:
        # A digit that interrupts playback or stops a recording is returned
        # to the application and consumed (as a pending digit in _play is);
        # left in the buffer it would answer the next menu or collect_digits
        # a second time (e.g. the "#" ending a recording
        # would make the next collect_digits return "" at once).
        consumed = False
        if self._playing is not None and event.digit in self._interrupt:
            self._out.clear()
            playing, self._playing = self._playing, None
            consumed = True
            playing.callback(event.digit)
        if self._recorder is not None and event.digit in self._recorder["stop_digits"]:
            consumed = True
            self._stop_recording("digit", event.digit)
        if not consumed:
            self._digit_buffer.append(event.digit)
        for waiter in list(self._digit_waiters):
            waiter()

    # -- what applications call --------------------------------------------

    def answer(self) -> Deferred[None]:
        """The call is answered by the signalling side before the application runs."""
        self.answered = True
        return succeed(None)

    def play(self, items: Iterable[str], interrupt: str = "") -> Deferred[str | None]:
        """
        Play prompts (ids) or WAV files (paths ending in .wav) in order.

        :param interrupt: digits that stop playback; the digit is returned.
        :returns: Deferred firing with the interrupting digit or None.
        """
        return Deferred.fromCoroutine(self._play(list(items), interrupt))

    async def _play(self, items: list[str], interrupt: str) -> str | None:
        self._check()
        pending = [d for d in self._digit_buffer if d in interrupt]
        if pending:
            self._digit_buffer.remove(pending[0])
            return pending[0]
        frames: list[np.ndarray] = []
        for item in items:
            frames.extend(self._frames(await self._audio(item)))
        return await self._queue(frames, interrupt)

    async def _audio(self, item: str) -> np.ndarray:
        rate = 16000 if self.rate >= 16000 else 8000
        path = item if item.endswith(".wav") else self.prompts.path(item, rate)
        audio = await self.load(path)
        samples = np.asarray(audio.samples, dtype=np.int16)
        if samples.ndim == 2:
            samples = samples[:, 0]
        if audio.sample_rate != self.rate:
            # The whole file is resampled in one go: the streaming Resampler
            # holds back its filter delay (~100 ms), which would put silence
            # in front of the prompt and cut off its end.
            import soxr

            samples = np.asarray(soxr.resample(samples, audio.sample_rate, self.rate), dtype=np.int16)
        return samples

    def _frames(self, samples: np.ndarray) -> list[np.ndarray]:
        n = self.frame_samples
        return [_fit(samples[i:i + n], n) for i in range(0, len(samples), n)]

    def _queue(self, frames: list[np.ndarray], interrupt: str) -> Deferred[str | None]:
        self._check()
        if self._playing is not None:
            raise RuntimeError("already playing")
        if not frames:
            return succeed(None)
        self._out.extend(frames)
        self._interrupt = interrupt
        d: Deferred[str | None] = Deferred()
        self._playing = d
        return d

    def tone(self, kind: str, seconds: float) -> Deferred[str | None]:
        """Play a call-progress tone (ringback, busy, congestion, beep, dial)."""
        return self._queue(self._frames(tone_samples(kind, seconds, self.rate)), "")

    def echo(self, on: bool = True) -> None:
        """Send the caller's own audio back (the echo test)."""
        self._echo = on

    def bridge(self, other: Channel) -> None:
        """
        Connect this channel's media to another's, both ways (decoded, so any
        codecs); either one in a mix leaves it.
        """
        self.leave()
        other.leave()
        self._bridge, other._bridge = other, self
        self._from_bridge = _resampler(other.rate, self.rate)
        other._from_bridge = _resampler(self.rate, other.rate)

    def unbridge(self) -> None:
        """Undo :meth:`bridge` on both channels; each sends silence (or what it plays) again."""
        other, self._bridge, self._from_bridge = self._bridge, None, None
        if other is not None and other._bridge is self:
            other._bridge, other._from_bridge = None, None

    @property
    def mix(self) -> Mix | None:
        """The N-party mix joined (:meth:`join`), or None."""
        return None if self._member is None else self._member.mix

    def join(self, mix: Mix) -> None:
        """
        Join an N-party mix: the caller's audio goes into it and the caller
        hears everyone else in it, unless a prompt or tone plays (the prompt
        is heard; the caller is still mixed).  Unbridges a bridged channel;
        leaves another mix.

        :raises HungUp: if the call has ended.
        """
        self._check()
        if self.mix is mix:
            return
        self.unbridge()
        self.leave()
        self._member = mix.add(self, self.rate)

    def leave(self) -> None:
        """Leave the mix joined, if any; the caller hears silence (or what plays) again."""
        member, self._member = self._member, None
        if member is not None:
            member.remove()

    def stop_playing(self) -> None:
        """Cut off the prompt or tone playing now; its Deferred fires with None."""
        self._out.clear()
        if self._playing is not None:
            playing, self._playing = self._playing, None
            playing.callback(None)

    def collect_digits(self, max_digits: int = 1, timeout: float = 5.0,
                       terminator: str = "#") -> Deferred[str]:
        """
        Collect up to ``max_digits`` digits; stop early at ``terminator``
        (not included) or after ``timeout`` seconds without a digit.
        """
        self._check()
        d: Deferred[str] = Deferred()
        timer: list[IDelayedCall] = []

        # stop() is shared with the hang-up waiter, so neither leaves the
        # timeout timer or the digit watch behind; finish() also drops the
        # hang-up waiter, which would otherwise pile up for the whole call.
        def stop() -> None:
            if timer and timer[0].active():
                timer[0].cancel()
            if check in self._digit_waiters:
                self._digit_waiters.remove(check)
            if waiter in self._hangup_waiters:
                self._hangup_waiters.remove(waiter)

        def finish() -> None:
            if d.called:
                return
            stop()
            digits = "".join(self._digit_buffer)
            cut = digits.find(terminator) if terminator else -1
            # A terminator beyond max_digits (type-ahead "1234#" for max 2)
            # does not make the result longer than max_digits.
            if 0 <= cut <= max_digits:
                result, rest = digits[:cut], digits[cut + 1:]
            else:
                result, rest = digits[:max_digits], digits[max_digits:]
            self._digit_buffer[:] = list(rest)
            d.callback(result)

        def check() -> None:
            digits = "".join(self._digit_buffer)
            if (terminator and terminator in digits) or len(digits) >= max_digits:
                finish()
                return
            if timer and timer[0].active():
                timer[0].reset(timeout)

        self._digit_waiters.append(check)
        timer.append(self.clock.callLater(timeout, finish))
        waiter = _on_hangup(d, stop)
        self._hangup_waiters.append(waiter)
        check()
        return d

    def record(self, path: str, writer: Callable[[str, int], WavWriter], *, max_seconds: float = 120,
               silence_timeout: float = 5.0, stop_digits: str = "#", beep: bool = True) -> Deferred[Recording]:
        """
        Record the caller to a WAV file (written off the reactor thread,
        renamed into place only when complete).
        """
        return Deferred.fromCoroutine(self._record(path, writer, max_seconds, silence_timeout, stop_digits, beep))

    async def _record(self, path: str, writer: Callable[[str, int], WavWriter], max_seconds: float,
                      silence_timeout: float, stop_digits: str, beep: bool) -> Recording:
        self._check()
        if beep:
            await self.play(["general/beep"])
        self._digit_buffer.clear()
        done: Deferred[Recording] = Deferred()
        self._recorder = {
            "writer": writer(path, self.rate), "path": path, "frames": 0, "silent": 0,
            "max": int(max_seconds * 50), "silence": int(silence_timeout * 50),
            "stop_digits": stop_digits, "done": done, "heard": False,
        }
        if self.record_arrivals:
            self._recorder.update(order=ArrivalOrder(), decoder=self.codec.new_decoder())
        return await done

    def _record_frame(self, pcm: np.ndarray) -> None:
        rec = self._recorder
        assert rec is not None
        rec["writer"].write(pcm)
        rec["frames"] += 1
        loud = frame_level(pcm) > 300.0
        rec["silent"] = 0 if loud else rec["silent"] + 1
        rec["heard"] = rec["heard"] or loud
        if rec["frames"] >= rec["max"]:
            self._stop_recording("max")
        elif rec["silent"] >= rec["silence"] and rec["silence"] > 0:
            self._stop_recording("silence")

    def _stop_recording(self, reason: str, digit: str = "") -> None:
        rec, self._recorder = self._recorder, None
        if rec is None:
            return
        if self.record_arrivals and reason not in ("max", "silence"):
            # What is still held for reordering was said before the key or
            # the hang-up: keep it.
            for item in rec["order"].flush():
                pcm = self._decode(item, rec["decoder"])
                if pcm is not None and rec["frames"] < rec["max"]:
                    rec["writer"].write(pcm)
                    rec["frames"] += 1
        seconds = rec["frames"] / 50
        done: Deferred[Recording] = rec["done"]

        def closed(path: object) -> None:
            done.callback(Recording(str(path) if path else None, seconds, reason, digit))

        def failed(failure: Any) -> None:
            self.log.failure("recording {path} failed", failure, path=rec["path"])
            done.callback(Recording(None, seconds, reason, digit))

        rec["writer"].close().addCallbacks(closed, failed)

    def hangup(self, cause: str = "normal") -> Deferred[None]:
        """End the call from our side."""
        if not self.hung_up and self.on_hangup is not None:
            self.on_hangup(cause)
        self.closed(cause)
        return succeed(None)

    def wait_for_hangup(self) -> Deferred[None]:
        """Fires when the caller hangs up."""
        if self.hung_up:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._hangup_waiters.append(d)
        return d

    def closed(self, cause: str = "remote") -> None:
        """The call ended (either side): stop media and wake waiting coroutines."""
        if self.hung_up:
            return
        self.hung_up = True
        # A hung-up channel asks for no hang-up (see hangup): the call's
        # callback, which leads back here, is let go of (no reference cycle).
        self.on_hangup = None
        self._out.clear()
        # A bridged channel must not repeat our last frame (see tick).
        self._last_in = None
        self.leave()
        if self._recorder is not None:
            self._stop_recording("hangup")
        if self._playing is not None:
            playing, self._playing = self._playing, None
            playing.errback(HungUp(cause))
        waiters, self._hangup_waiters = self._hangup_waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)

    def _check(self) -> None:
        if self.hung_up:
            raise HungUp("the call has ended")


class ChannelCallbacks(TypedDict):
    """What :func:`channel_callbacks` gives, as :class:`~pbx.media.endpoint.RTPEndpoint` arguments."""

    on_frame: Callable[[Any], None]
    on_packet: Callable[[Any], None]
    on_telephone_event: Callable[[Any], None]


def channel_callbacks(owner: Any) -> ChannelCallbacks:
    """
    ``on_frame``, ``on_packet`` and ``on_telephone_event`` for an RTP
    endpoint that runs before its call's channel exists (RTP may come before
    the answer or the ACK): each goes to ``owner.channel`` once it is set,
    and nowhere before.
    """

    def forward(method: str) -> Callable[[Any], None]:
        def call(arg: Any) -> None:
            channel = owner.channel
            if channel is not None:
                getattr(channel, method)(arg)

        return call

    return ChannelCallbacks(on_frame=forward("tick"), on_packet=forward("packet"),
                            on_telephone_event=forward("telephone_event"))


def _on_hangup(d: Deferred[Any], stop: Callable[[], None]) -> Deferred[None]:
    """A waiter that stops the collection and ends ``d`` with HungUp when the call ends first."""
    waiter: Deferred[None] = Deferred()

    def ended(_: object) -> None:
        if not d.called:
            stop()  # no timeout timer is left running (see collect_digits)
            d.errback(HungUp("the call has ended"))

    waiter.addCallback(ended)
    return waiter


def _resampler(from_rate: int, to_rate: int) -> Any:
    """A streaming rate converter between two bridged channels, or None at equal rates."""
    if from_rate == to_rate:
        return None
    from pbx.media.resample import Resampler

    return Resampler(from_rate, to_rate)


def _fit(frame: np.ndarray, n: int) -> np.ndarray:
    """Pad with silence or cut to exactly ``n`` samples."""
    if len(frame) == n:
        return frame
    if len(frame) > n:
        return frame[:n]
    out = np.zeros(n, dtype=np.int16)
    out[: len(frame)] = frame
    return out


def load_audio(reactor: Any) -> Callable[[str], Deferred[Any]]:
    """A loader that reads WAV files in the reactor's thread pool."""
    from twisted.internet.threads import deferToThreadPool

    def load(path: str) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), load_wav, path)

    return load
