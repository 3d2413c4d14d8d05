"""
The media of a call pbx terminates: one RTP endpoint and the
:class:`~pbx.media.channel.Channel` an application drives.

Two ways to negotiate (RFC 3264), one object:

- pbx answers an offer (:meth:`EndpointMedia.answer`): the caller's first
  codec that we have wins (§6.1, in the caller's order), with the
  telephone-event payload type it offered;
- pbx offers (:meth:`EndpointMedia.offer`, then :meth:`EndpointMedia.accept`):
  a call pbx places, or the 2xx to an INVITE without SDP (RFC 3261
  §13.2.1).  It offers every codec at an 8 kHz RTP clock, G.711 first, and
  the answer's first codec that we offered is the one in use.

A re-INVITE or UPDATE keeps the codec and the port and follows the peer's
new address (:meth:`EndpointMedia.reanswer`).

SRTP (SDES, :mod:`pbx.media.sdes`) as the peer's policy and channel allow
(:meth:`EndpointMedia.secure`): offers are read through their plain view and
answered with pbx's own key; the endpoint protects and unprotects.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from attrs import define, field, frozen

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.media import MediaError, chosen_codecs
from pbx.calls.own_offer import accept_answer
from pbx.interfaces import ICodec
from pbx.media import sdes
from pbx.media.channel import Channel, channel_callbacks
from pbx.media.codecs_table import CodecSpec
from pbx.media.dtmf import call_digits, parse_dtmf_info
from pbx.media.endpoint import RTPEndpoint
from pbx.media.offer_answer import make_answer, make_offer, offered_codecs
from pbx.media.sdp import SDPError, SessionDescription, effective_connection, parse_sdp
from pbx.sip.message import make_response

#: The telephone-event payload type we offer (RFC 4733 §7.1.1: dynamic).
TELEPHONE_EVENT_PT = 101
#: The RTP clock every codec we offer must have: the endpoint is bound, with
#: its clock, before the peer picks a codec.  (G.722 runs its RTP clock at
#: 8000 too, RFC 3551 §4.5.2; Opus, at 48000, is not offered.)
RTP_CLOCK = 8000


class MediaUnavailable(Exception):
    """No media for the call: answer ``status`` (503) with ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@define(eq=False)
class MediaServices:
    """What every call pbx terminates needs: codecs, prompts, a WAV loader, ports and the media clock."""

    codecs: dict[str, ICodec]
    prompts: Any
    load: Callable[[str], Deferred[Any]]
    reactor: Any = None
    ports: Any = None
    media_clock: Any = None
    interface: str = "0.0.0.0"
    address: str = "127.0.0.1"


def own_codecs(available: dict[str, ICodec]) -> list[tuple[CodecSpec, ICodec]]:
    """What we offer: G.711 first, then the others at an 8 kHz RTP clock."""
    order = sorted(available.items(), key=lambda item: (item[0] not in ("pcmu", "pcma"), item[0] != "pcmu"))
    return [
        (CodecSpec(codec.name, codec.clock_rate, codec.channels, codec.fmtp, codec.payload_type), codec)
        for _, codec in order
        if codec.clock_rate == RTP_CLOCK and codec.channels == 1
    ]


def choose_codec(offer: SessionDescription, codecs: dict[str, ICodec]) -> tuple[CodecSpec, ICodec, int | None]:
    """
    The first codec of the offer's first audio stream that we have, and the
    telephone-event payload type it offered (or None).

    :raises MediaError: nothing in common (answer 488).
    """
    audio = next((m for m in offer.media if m.media == "audio" and m.port), None)
    if audio is None:
        raise MediaError("no audio stream offered")
    event_pt = None
    chosen: tuple[CodecSpec, ICodec] | None = None
    for spec in offered_codecs(audio):
        name = spec.encoding.lower()
        if name == "telephone-event" and spec.clock_rate == 8000:
            event_pt = spec.payload_type
        elif chosen is None and name in codecs and spec.clock_rate == codecs[name].clock_rate:
            chosen = (spec, codecs[name])
    if chosen is None:
        raise MediaError("no codec in common")
    return chosen[0], chosen[1], event_pt


@frozen
class _Early:
    """What an early-media answer we sent chose, when an application can use its codec."""

    spec: CodecSpec
    codec: ICodec
    event_pt: int | None
    port: int
    sdp: SessionDescription


def _early(answer: bytes | None, codecs: dict[str, ICodec]) -> _Early | None:
    if answer is None:
        return None
    try:
        sdp = parse_sdp(answer)
        chosen = chosen_codecs(sdp)
    except (SDPError, MediaError):
        return None
    audio = next(m for m in sdp.media if m.media == "audio" and m.port)
    main = next((c for c in chosen if not c.is_auxiliary), None)
    if main is None:
        return None
    codec = codecs.get(main.encoding.lower())
    if codec is None or codec.clock_rate != main.clock_rate:
        return None
    event_pt = next((c.payload_type for c in chosen
                     if c.encoding.lower() == "telephone-event" and c.clock_rate == 8000), None)
    return _Early(main, codec, event_pt, audio.port, sdp)


def _first_audio_ports(offer: SessionDescription, port: int) -> list[int]:
    """Our port for the first live audio stream of an offer, 0 for every other stream."""
    ports, used = [], False
    for m in offer.media:
        live = m.media == "audio" and bool(m.port) and not used
        ports.append(port if live else 0)
        used = used or live
    return ports


def _supported(spec: CodecSpec, event_pt: int | None) -> list[CodecSpec]:
    events = [CodecSpec("telephone-event", 8000, 1, "0-16", event_pt)] if event_pt is not None else []
    return [spec, *events]


@define(eq=False)
class EndpointMedia:
    """
    One terminated call's endpoint and channel.

    :ivar channel: set once the codec is settled (at our answer, or when the
        answer to our offer came).
    :ivar codecs: the codec in use, for the call detail record.
    """

    services: MediaServices
    caller: str
    caller_name: str
    callee: str
    on_hangup: Callable[[str], None]
    endpoint: RTPEndpoint | None = None
    channel: Channel | None = None
    codecs: str = ""
    _offer: SessionDescription | None = None
    _offered: list[tuple[CodecSpec, ICodec]] = field(factory=list)
    _session_id: int | str = field(factory=lambda: secrets.randbelow(2**31))
    _version: int = 0
    #: The peer's SRTP policy, channel and keys.
    srtp: sdes.LegKeys = field(factory=sdes.LegKeys)
    log = Logger()

    def secure(self, transport: str, policy: str = "offered") -> None:
        """The peer's signalling goes over ``transport`` ("tls" may carry keys) and its SRTP ``policy``."""
        self.srtp.secure, self.srtp.policy = transport == "tls", policy

    def _keyed(self) -> None:
        if self.endpoint is not None:
            self.endpoint.crypto = self.srtp.contexts()

    def _bind(self, payload_type: int, clock_rate: int, event_pt: int | None, prefer: int | None = None) -> int:
        services = self.services
        endpoint = RTPEndpoint(
            services.reactor, services.ports, payload_type=payload_type, clock_rate=clock_rate,
            interface=services.interface, telephone_event_pt=event_pt, media_clock=services.media_clock,
            clock=services.reactor, **channel_callbacks(self),
        )
        try:
            port = endpoint.listen(prefer=prefer)
        except Exception as e:
            self.log.warn("no media port for a call of {caller}: {e}", caller=self.caller, e=e)
            raise MediaUnavailable(503, "No Media Ports") from e
        self.endpoint = endpoint
        return port

    def _open_channel(self, spec: CodecSpec, codec: ICodec, telephone_event: bool) -> None:
        services = self.services
        channel = Channel(services.reactor, codec, services.prompts, services.load, on_hangup=self.on_hangup,
                          record_arrivals=True, caller=self.caller, caller_name=self.caller_name,
                          callee=self.callee)
        channel.digits = call_digits(telephone_event)
        channel.endpoint = self.endpoint
        self.channel = channel
        self.codecs = spec.encoding

    def _follow(self, sdp: SessionDescription) -> None:
        """Send RTP where the peer's SDP says."""
        audio = next((m for m in sdp.media if m.media == "audio" and m.port), None)
        if audio is None or self.endpoint is None:
            return
        connection = effective_connection(sdp, audio)
        if connection is not None:
            try:
                self.endpoint.set_remote(connection.address, audio.port)
            except ValueError:
                pass

    def _answer_sdp(self, offer: SessionDescription, spec: CodecSpec, event_pt: int | None, port: int) -> bytes:
        self._version += 1
        sdp = make_answer(offer, supported=_supported(spec, event_pt), local_address=self.services.address,
                          ports=_first_audio_ports(offer, port), session_id=self._session_id,
                          version=self._version)
        return sdes.secure_answer(self.srtp, sdp).to_bytes()

    # -- pbx answers ---------------------------------------------------------------

    def answer(self, body: bytes, early_answer: bytes | None = None) -> bytes:
        """
        Bind the endpoint and answer the offer ``body``; the channel is ready.

        :param early_answer: the SDP answer the caller already got in a 183
            (a call diverted after early media): RFC 3261 §13.2.1 has the 2xx
            carry that same answer, so its codec is used and, when its port
            can be bound again, it is returned unchanged.
        :raises MediaError: nothing usable in the offer (488).
        :raises MediaUnavailable: no port (503).
        """
        codecs = self.services.codecs
        try:
            offer = sdes.take_offer(self.srtp, parse_sdp(body))
            spec, codec, event_pt = choose_codec(offer, codecs)
        except SDPError as e:
            raise MediaError(str(e)) from e
        early = _early(early_answer, codecs)
        if early is not None:
            spec, codec, event_pt = early.spec, early.codec, early.event_pt
        port = self._bind(spec.payload_type or 0, codec.clock_rate, event_pt,
                          prefer=early.port if early is not None else None)
        self._open_channel(spec, codec, event_pt is not None)
        self._follow(offer)
        self._keyed()
        if early is not None and port == early.port:
            assert early_answer is not None
            # The very answer of the 183; later answers continue its o= line.
            self._session_id, self._version = early.sdp.origin.sess_id, early.sdp.origin.sess_version
            return early_answer
        if early is not None:
            self.log.info("early media port {port} of {caller} not free again; answering with another",
                          port=early.port, caller=self.caller)
        try:
            return self._answer_sdp(offer, spec, event_pt, port)
        except SDPError as e:
            raise MediaError(str(e)) from e

    # -- pbx offers ----------------------------------------------------------------

    def offer(self) -> bytes:
        """
        Bind the endpoint and make our offer.

        :raises MediaUnavailable: no codec to offer, or no port (503).
        """
        self._offered = own_codecs(self.services.codecs)
        if not self._offered:
            raise MediaUnavailable(503, "No Codec To Offer")
        first = self._offered[0][0]
        port = self._bind(first.payload_type or 0, RTP_CLOCK, TELEPHONE_EVENT_PT)
        self._version += 1
        events = CodecSpec("telephone-event", 8000, 1, "0-16", TELEPHONE_EVENT_PT)
        self._offer = make_offer(
            codecs=[spec for spec, _ in self._offered] + [events], local_address=self.services.address,
            port=port, session_id=self._session_id, version=self._version, ptime=20,
        )
        if self.srtp.wants_offer(False):
            self._offer = sdes.secure_offer(self.srtp, self._offer)
        return self._offer.to_bytes()

    def accept(self, body: bytes) -> None:
        """
        The answer ``body`` to our offer: send with the codec it chose, to
        where it says; the channel is ready.

        :raises MediaError: no answer, or none we can use.
        """
        assert self._offer is not None and self.endpoint is not None
        if not body:
            raise MediaError("no answer")
        try:
            body = sdes.take_answer(self.srtp, parse_sdp(body)).to_bytes()
        except SDPError as e:
            raise MediaError(str(e)) from e
        accepted = accept_answer(sdes.plain_view(self._offer), self._offered, body)
        self._keyed()
        self.endpoint.sender.payload_type = accepted.spec.payload_type or 0
        if accepted.remote is not None:
            try:
                self.endpoint.set_remote(*accepted.remote)
            except ValueError:
                pass
        # RFC 4733 reports come only on our payload type (the endpoint takes
        # events on it alone; RFC 3264 §6.1 says the answer SHOULD keep it).
        self._open_channel(accepted.spec, accepted.codec, accepted.telephone_event == TELEPHONE_EVENT_PT)

    # -- later offers ----------------------------------------------------------------

    def reanswer(self, body: bytes) -> bytes:
        """
        A re-INVITE or UPDATE: keep our codec and port, follow the peer's
        address, answer.  Without an offer (RFC 3261 §14.2) our own offer
        goes again, where we made one.

        :raises MediaError: nothing to answer with (488).
        """
        if self.channel is None or self.endpoint is None or self.endpoint.port is None:
            raise MediaError("no media yet")
        if not body:
            if self._offer is None:
                raise MediaError("no offer")
            return self._offer.to_bytes()
        try:
            offer = sdes.take_offer(self.srtp, parse_sdp(body))
            codec = self.channel.codec
            spec, _, event_pt = choose_codec(offer, {codec.name.lower(): codec})
            self._follow(offer)
            answer = self._answer_sdp(offer, spec, event_pt, self.endpoint.port)
            self._keyed()
            return answer
        except SDPError as e:
            raise MediaError(str(e)) from e

    # -- the call's end --------------------------------------------------------------

    def inactive_for(self, now: float, since: float) -> float:
        """Seconds since media last arrived, counted from ``since`` at the earliest."""
        if self.endpoint is None:
            return 0.0
        return now - max(since, self.endpoint.last_received or 0.0)

    def close(self, cause: str) -> None:
        """
        The call is over: the channel hears it, the endpoint's ports go back,
        and the call's hang-up callback is let go of (the call holds us: a
        reference cycle left for the garbage collector otherwise).
        """
        if self.channel is not None:
            self.channel.closed(cause)
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
        self.on_hangup = _over


def _over(cause: str) -> None:
    """The hang-up callback of closed media: the call is over already."""


def answer_dtmf_info(transaction: Any, channel: Channel | None) -> None:
    """An INFO carrying a DTMF digit (application/dtmf-relay): to ``channel``, 200; anything else 415."""
    request = transaction.request
    event = parse_dtmf_info(request.headers.get("Content-Type") or "", request.body)
    # Answered first: the digit may end the call at once, and its BYE must not overtake the 200.
    transaction.respond(make_response(request, 200 if event is not None else 415))
    if event is not None and channel is not None:
        channel.info_digit(event)
