"""
A call answered by pbx itself and handed to a dialplan application
(echo test, voicemail, auto attendant...).

pbx is the UAS: it picks a codec from the caller's offer (RFC 3264 §6.1,
in the caller's order), answers with its own RTP endpoint, retransmits the
200 until the ACK (RFC 3261 §13.3.1.4), runs the application coroutine on a
:class:`~pbx.media.channel.Channel`, and sends BYE when the application
hangs up.  An INVITE without SDP is answered by the subclass in
:mod:`pbx.calls.delayed_offer`: the offer is ours, the answer in the ACK.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from attrs import Factory, define, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.media import MediaError, chosen_codecs
from pbx.calls.named_timers import NamedTimers
from pbx.interfaces import ICodec, IDialplanApplication
from pbx.media.channel import Channel, HungUp
from pbx.media.codecs_table import CodecSpec
from pbx.media.dtmf import call_digits, parse_dtmf_info
from pbx.media.endpoint import RTPEndpoint
from pbx.media.offer_answer import make_answer, offered_codecs
from pbx.media.sdp import SDPError, SessionDescription, effective_connection, parse_sdp
from pbx.records import CallRecord
from pbx.sip import timers
from pbx.sip.dialog import Dialog, LocalAddress
from pbx.sip.message import Request, Response, make_response
from pbx.sip.transaction import ServerTransaction

if TYPE_CHECKING:
    from pbx.calls.controller import CallController


def choose_codec(offer: SessionDescription, codecs: dict[str, ICodec]) -> tuple[CodecSpec, ICodec, int | None]:
    """
    The first codec of the caller's first audio stream that we have, and
    the telephone-event payload type it offered (or None).

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


def _early(
    answer: bytes | None, codecs: dict[str, ICodec]
) -> tuple[CodecSpec, ICodec, int | None, int, SessionDescription] | None:
    """
    What an early-media answer we sent chose: (codec spec, codec,
    telephone-event payload type or None, our port, the parsed answer); None
    without one, or when its codec is not one an application can use.
    """
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
    return main, codec, event_pt, audio.port, sdp


def answer_dtmf_info(transaction: ServerTransaction, channel: Channel | None) -> None:
    """An INFO carrying a DTMF digit (application/dtmf-relay): to ``channel``, 200; anything else 415."""
    request = transaction.request
    event = parse_dtmf_info(request.headers.get("Content-Type") or "", request.body)
    if event is not None and channel is not None:
        channel.info_digit(event)
    transaction.respond(make_response(request, 200 if event is not None else 415))


@define(eq=False)
class ApplicationCall:
    """The state of one call handled by an application."""

    controller: CallController
    invite: ServerTransaction
    caller: str
    callee: str
    application: IDialplanApplication
    args: Any
    address: LocalAddress
    started: float
    caller_name: str = ""
    a_tag: str = field(factory=lambda: secrets.token_hex(6))
    state: str = "routing"
    channel: Channel | None = None
    endpoint: RTPEndpoint | None = None
    a_dialog: Dialog | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    hangup_side: str = ""
    hangup_cause: str = ""
    disposition: str = ""
    codecs: str = ""
    on_end: Any = None
    _ok: Response | None = None
    _pending_hangup: str | None = None
    _timers: NamedTimers = field(init=False, default=Factory(lambda self: NamedTimers(self.controller.clock), takes_self=True))
    _session_id: int | str = field(factory=lambda: secrets.randbelow(2**31))
    _version: int = 0
    log = Logger()

    @property
    def call_id(self) -> str:
        """The caller's Call-ID."""
        return self.invite.request.call_id

    @property
    def clock(self) -> Any:
        """The injected clock."""
        return self.controller.clock

    def start(self, codecs: dict[str, ICodec], prompts: Any, load: Any,
              early_answer: bytes | None = None) -> None:
        """
        Negotiate, open the endpoint, answer, and run the application.

        :param early_answer: the SDP answer the caller already got in a 183
            (a call diverted after early media): RFC 3261 §13.2.1 has the
            2xx carry that same answer, so its codec is used and, when its
            port can be bound again, it is sent unchanged.
        """
        request = self.invite.request
        try:
            offer = parse_sdp(request.body)
            spec, codec, event_pt = choose_codec(offer, codecs)
        except (SDPError, MediaError) as e:
            self._refuse(488, str(e)[:80])
            return
        early = _early(early_answer, codecs)
        if early is not None:
            spec, codec, event_pt, early_port, early_sdp = early
        controller = self.controller
        channel = Channel(controller.clock, codec, prompts, load, on_hangup=self._app_hung_up, record_arrivals=True,
                          caller=self.caller, caller_name=self.caller_name, callee=self.callee)
        channel.digits = call_digits(event_pt is not None)
        endpoint = RTPEndpoint(
            controller.reactor, controller.media_ports, payload_type=spec.payload_type or 0,
            clock_rate=codec.clock_rate, interface=controller.config.rtp.interface,
            telephone_event_pt=event_pt, on_telephone_event=channel.telephone_event,
            on_frame=channel.tick, on_packet=channel.packet, media_clock=controller.media_clock,
            clock=controller.clock,
        )
        try:
            port = endpoint.listen(prefer=early_port if early is not None else None)
        except Exception as e:
            self.log.warn("no media port for an application call: {e}", e=e)
            self._refuse(503, "No Media Ports")
            return
        channel.endpoint = endpoint
        self.channel, self.endpoint = channel, endpoint
        self._learn(offer)
        supported = [spec] + ([CodecSpec("telephone-event", 8000, 1, "0-16", event_pt)] if event_pt is not None else [])
        if early is not None and port == early_port:
            assert early_answer is not None
            # The very answer of the 183; later answers continue its o= line.
            self._session_id, self._version = early_sdp.origin.sess_id, early_sdp.origin.sess_version
            self.codecs = spec.encoding
            self._answer_caller(early_answer)
            self._start_application()
            return
        if early is not None:
            self.log.info("call {call_id}: early media port {port} not free again; answering with another",
                          call_id=self.call_id, port=early_port)
        try:
            answer = self._answer(offer, supported, port)
        except SDPError as e:
            # Fix: make_answer refuses what choose_codec let through (an
            # RTP/SAVP-only offer): answer 488; _end closes the endpoint.
            # The NotAcceptable escaped as a 500 and left the call, its
            # ports and its playout timer behind.
            self._refuse(488, str(e)[:80])
            return
        self.codecs = spec.encoding
        self._answer_caller(answer)
        self._start_application()

    def _answer_caller(self, body: bytes) -> None:
        """Send our 200 with ``body`` (SDP) and resend it until the ACK (RFC 3261 §13.3.1.4)."""
        request = self.invite.request
        self._ok = make_response(request, 200, to_tag=self.a_tag)
        self._ok.headers.add("Contact", self.address.contact())
        self._ok.headers.add("Content-Type", "application/sdp")
        self._ok.body = body
        self.invite.respond(self._ok)
        self.state = "answered"
        self.answered_at = self.clock.seconds()
        self.a_dialog = Dialog.as_uas(request, self.invite.peer, self.address, self.a_tag)
        self.controller.dialog_started(self, "a", self.a_dialog)
        if not self.invite.peer.reliable:
            self._timers.repeat("ok", self._retransmit_ok, timers.T1, timers.T2)
        self._timer("ack", timers.TIMER_H, self._no_ack)

    def _start_application(self) -> None:
        """Run the application on the channel."""
        d = Deferred.fromCoroutine(self._run())
        d.addErrback(lambda f: self.log.failure("application {name} failed", f, name=self.application.name))

    def _answer(self, offer: SessionDescription, supported: list[CodecSpec], port: int) -> bytes:
        self._version += 1
        ports = []
        used = False
        for m in offer.media:
            ports.append(port if m.media == "audio" and m.port and not used else 0)
            used = used or (m.media == "audio" and bool(m.port))
        sdp = make_answer(offer, supported=supported, local_address=self.controller.media_address,
                          ports=ports, session_id=self._session_id, version=self._version)
        return sdp.to_bytes()

    def _learn(self, offer: SessionDescription) -> None:
        audio = next((m for m in offer.media if m.media == "audio" and m.port), None)
        if audio is None or self.endpoint is None:
            return
        connection = effective_connection(offer, audio)
        if connection is not None:
            try:
                self.endpoint.set_remote(connection.address, audio.port)
            except ValueError:
                pass

    async def _run(self) -> None:
        assert self.channel is not None
        try:
            await self.application.run(self.channel, self.args)
        except HungUp:
            return
        except Exception:
            # Fix: a failed application ends its call; it left the caller
            # connected to silence, and while the phone sent RTP the media
            # watchdog never ended it.
            self.log.failure("application {name} failed", name=self.application.name)
            self.hang_up("pbx", "application failed")
            return
        if self.state != "ended":
            self.hang_up("pbx", "application finished")

    def _app_hung_up(self, cause: str) -> None:
        self.hang_up("pbx", cause)

    def _timer(self, name: str, delay: float, f: Any) -> None:
        self._timers.start(name, delay, f)

    def _retransmit_ok(self) -> None:
        """RFC 3261 §13.3.1.4: resend the 2xx until the ACK comes."""
        if self.state != "answered" or self._ok is None:
            self._timers.stop("ok")
            return
        self.controller.send(self._ok, self.invite.peer)

    def _no_ack(self) -> None:
        if self.state == "answered":
            self.hang_up("a", "no ACK")

    def _refuse(self, status: int, reason: str) -> None:
        self.invite.respond(make_response(self.invite.request, status, reason, to_tag=self.a_tag))
        self.disposition, self.hangup_side, self.hangup_cause = "FAILED", "pbx", f"{status} {reason}"
        self._end()

    # -- what the controller calls ------------------------------------------

    def leg_of(self, dialog: Dialog) -> str:
        """There is only the caller's leg."""
        return "a"

    def acked(self, request: Request) -> None:
        """The caller's ACK for our 200."""
        if self.state == "answered":
            self._timers.stop("ok")
            self._timers.stop("ack")
            self.state = "confirmed"
            if self._pending_hangup is not None:
                self.hang_up("pbx", self._pending_hangup)

    def hang_up(self, side: str, cause: str) -> None:
        """End the call; BYE the caller unless they hung up."""
        if self.state == "ended":
            return
        if side != "a" and self.state == "answered":
            # Fix: RFC 3261 §15: no BYE before the ACK of our 2xx.  Stop the
            # media now; acked() sends the BYE, or Timer H (_no_ack) does.
            self._pending_hangup = cause
            if self.channel is not None:
                self.channel.closed(cause)
            return
        self.hangup_side, self.hangup_cause = side, cause
        self.disposition = "ANSWERED" if self.answered_at is not None else "FAILED"
        # Fix: only the caller's own BYE needs none back; a caller that never
        # ACKed our 2xx gets BYE too (RFC 3261 §13.3.1.4, as Call does).
        if (side != "a" or cause != "BYE") and self.a_dialog is not None:
            self.controller.send_in_dialog(self.a_dialog, "BYE", lambda r: None)
        self._end()

    def cancelled(self) -> None:
        """CANCEL before we answered (we answer at once, so rarely)."""
        if self.state == "routing":
            self._refuse(487, "Request Terminated")

    def reoffer(self, leg: str, transaction: ServerTransaction) -> None:
        """A re-INVITE or UPDATE: follow the caller's new address, keep our codec."""
        request = transaction.request
        if not request.body or self.channel is None:
            transaction.respond(make_response(request, 488))
            return
        try:
            offer = parse_sdp(request.body)
            spec, _, event_pt = choose_codec(offer, {self.channel.codec.name.lower(): self.channel.codec})
        except (SDPError, MediaError):
            transaction.respond(make_response(request, 488))
            return
        self._learn(offer)
        assert self.endpoint is not None and self.endpoint.port is not None
        supported = [spec] + ([CodecSpec("telephone-event", 8000, 1, "0-16", event_pt)] if event_pt is not None else [])
        ok = make_response(request, 200)
        ok.headers.add("Contact", self.address.contact())
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = self._answer(offer, supported, self.endpoint.port)
        transaction.respond(ok)

    def info(self, transaction: ServerTransaction) -> None:
        """SIP INFO: a DTMF digit (application/dtmf-relay) for the application."""
        answer_dtmf_info(transaction, self.channel)

    def inactive_for(self, now: float) -> float:
        """Seconds since media last arrived (for the dead-call watchdog)."""
        if self.endpoint is None:
            return 0.0
        last = self.endpoint.last_received
        since = self.answered_at or self.started
        return now - max(since, last or 0.0)

    def release_media(self) -> None:
        """Close the endpoint (ports back to the allocator)."""
        if self.endpoint is not None:
            self.endpoint.close()

    def _end(self) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.ended_at = self.clock.seconds()
        self._timers.stop_all()
        if self.channel is not None:
            self.channel.closed(self.hangup_cause)
        if self.on_end is not None:
            self.on_end(self)

    def record(self) -> list[CallRecord]:
        """One call detail record."""
        return [CallRecord(
            call_id=self.call_id, caller=self.caller, callee=self.callee, start=self.started,
            end=self.ended_at or self.clock.seconds(), answer=self.answered_at,
            disposition=self.disposition or "FAILED", hangup_side=self.hangup_side,
            hangup_cause=self.hangup_cause, codecs=self.codecs, leg="a",
        )]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the API."""
        return {
            "call_id": self.call_id, "caller": self.caller, "callee": self.callee,
            "state": self.state, "started": self.started, "answered": self.answered_at,
            "duration": round(self.clock.seconds() - self.started, 3), "codecs": self.codecs,
            "application": self.application.name,
        }
