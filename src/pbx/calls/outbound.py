"""
A call pbx places itself: the callee's leg when an application dials an
extension (:meth:`pbx.calls.controller.CallController.dial`).

pbx is the UAC and terminates the media.  It binds an RTP endpoint, offers
its own SDP (RFC 3264 §5) to every registered phone of the callee at once
(parallel forking as :class:`~pbx.calls.call.Call` does: the first 2xx
wins, the others are cancelled), ACKs the 2xx itself (RFC 3261 §13.2.2.4)
and, once answered, hands the callee's audio to a
:class:`~pbx.media.channel.Channel` that the application bridges to its
caller.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import Factory, define, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.app_call import answer_dtmf_info, choose_codec
from pbx.calls.call import Fork, best_failure, cancel_fork, send_cancel
from pbx.calls.media import MediaError
from pbx.calls.named_timers import NamedTimers
from pbx.calls.own_offer import accept_answer
from pbx.interfaces import ICodec
from pbx.media.channel import Channel, channel_callbacks
from pbx.media.codecs_table import CodecSpec
from pbx.media.dtmf import call_digits
from pbx.media.endpoint import RTPEndpoint
from pbx.media.offer_answer import make_answer, make_offer
from pbx.media.sdp import SDPError, SessionDescription, effective_connection, parse_sdp
from pbx.records import Binding, CallRecord
from pbx.sip import timers
from pbx.sip.dialog import Dialog, ack_for_2xx, new_invite
from pbx.sip.message import Request, Response, SIPParseError, make_response
from pbx.sip.transaction import ServerTransaction
from pbx.sip.uri import parse_uri

if TYPE_CHECKING:
    from pbx.calls.controller import CallController

#: What :attr:`OutboundCall.outcome` fires with when the ring timeout passed.
RING_TIMEOUT = 0
#: The telephone-event payload type we offer (RFC 4733 §7.1.1: dynamic).
TELEPHONE_EVENT_PT = 101
#: The RTP clock every offered codec must have: the endpoint is bound, with
#: its clock, before the callee picks a codec.  (G.722 runs its RTP clock at
#: 8000 too, RFC 3551 §4.5.2; Opus, at 48000, is not offered.)
RTP_CLOCK = 8000


def _ignore(response: Response) -> None:
    """Responses nobody waits for (to BYE)."""


def offered_codecs(available: dict[str, ICodec]) -> list[tuple[CodecSpec, ICodec]]:
    """What we offer, from the media services' codecs: G.711 first, then the others at an 8 kHz RTP clock."""
    order = sorted(available.items(), key=lambda item: (item[0] not in ("pcmu", "pcma"), item[0] != "pcmu"))
    return [
        (CodecSpec(codec.name, codec.clock_rate, codec.channels, codec.fmtp, codec.payload_type), codec)
        for _, codec in order
        if codec.clock_rate == RTP_CLOCK and codec.channels == 1
    ]


@define(eq=False)
class OutboundCall:
    """
    The state of one call pbx places to one extension's phones.

    :ivar outcome: fires once ringing is over: 200 when a phone answered,
        :data:`RING_TIMEOUT` when nobody did in time, else the most telling
        final status of the phones (487 when we gave up first).
    :ivar ended: fires when the call is over (answered or not).
    """

    controller: CallController
    caller: str
    callee: str
    started: float
    caller_name: str = ""
    on_ringing: Callable[[], None] | None = None
    state: str = "routing"  # routing, ringing, confirmed, ended
    forks: list[Fork] = field(factory=list)
    b: Fork | None = None
    endpoint: RTPEndpoint | None = None
    channel: Channel | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    hangup_side: str = ""
    hangup_cause: str = ""
    disposition: str = ""
    codecs: str = ""
    on_end: Callable[[OutboundCall], None] | None = None
    outcome: Deferred[int] = field(factory=Deferred)
    ended: Deferred[None] = field(factory=Deferred)
    _call_id: str = ""
    _offered: list[tuple[CodecSpec, ICodec]] = field(factory=list)
    _offer: SessionDescription | None = None
    _timers: NamedTimers = field(init=False, default=Factory(lambda self: NamedTimers(self.controller.clock), takes_self=True))
    _session_id: int = field(factory=lambda: secrets.randbelow(2**31))
    _version: int = 1
    _reoffer_ok: tuple[str, int] | None = None
    log = Logger()

    # -- what the controller reads --------------------------------------------

    @property
    def call_id(self) -> str:
        """The Call-ID of the first INVITE: the key of this call in the controller."""
        return self._call_id

    @property
    def invite(self) -> ServerTransaction | None:
        """No INVITE of a caller is pending here: a CANCEL never matches this call."""
        return None

    @property
    def clock(self) -> Any:
        """The injected clock."""
        return self.controller.clock

    def _timer(self, name: str, delay: float, f: Callable[[], None]) -> None:
        self._timers.start(name, delay, f)

    def _stop(self, name: str) -> None:
        self._timers.stop(name)

    # -- ringing -----------------------------------------------------------------

    def start(self, bindings: list[Binding], timeout: float) -> None:
        """
        Bind the RTP endpoint and send one INVITE with our offer to each of
        ``bindings``; after ``timeout`` seconds unanswered, cancel them.
        A failure to bind ends the attempt at once with 503.
        """
        controller = self.controller
        self._offered = offered_codecs(controller.media.codecs) if controller.media is not None else []
        if not self._offered:
            self._finish(503, "FAILED", "pbx", "no codec to offer")
            return
        first = self._offered[0][0]
        endpoint = RTPEndpoint(
            controller.reactor, controller.media_ports, payload_type=first.payload_type or 0,
            clock_rate=RTP_CLOCK, interface=controller.config.rtp.interface,
            telephone_event_pt=TELEPHONE_EVENT_PT, clock=controller.clock, media_clock=controller.media_clock,
            **channel_callbacks(self),
        )
        try:
            port = endpoint.listen()
        except Exception as e:
            self.log.warn("no media port for a call to {callee}: {e}", callee=self.callee, e=e)
            self._finish(503, "FAILED", "pbx", "no media ports")
            return
        self.endpoint = endpoint
        events = CodecSpec("telephone-event", 8000, 1, "0-16", TELEPHONE_EVENT_PT)
        self._offer = make_offer(
            codecs=[spec for spec, _ in self._offered] + [events], local_address=controller.media_address,
            port=port, session_id=self._session_id, version=self._version, ptime=20,
        )
        body = self._offer.to_bytes()
        display = _display(self.caller_name)
        domain = controller.domain
        identity = f"{display}<sip:{self.caller}@{domain}>"
        for binding in bindings:
            peer = controller.peer_for(binding)
            address = controller.local_address(peer.transport)
            invite = new_invite(
                target=parse_uri(binding.contact), to=f"<sip:{self.callee}@{domain}>", from_=identity,
                address=address, body=body, contact_user=self.caller,
                extra=[("P-Asserted-Identity", identity)],
            )
            # RFC 4028 §9: pbx never refreshes a session; without "Supported:
            # timer" a callee that wants a session timer refreshes it itself.
            invite.headers.remove("Supported")
            fork = Fork(binding, invite, peer, address, started=self.clock.seconds())
            self.forks.append(fork)
        self._call_id = self.forks[0].invite.call_id
        controller.calls[self._call_id] = self
        for fork in self.forks:
            fork.transaction = controller.send_request(
                fork.invite, fork.peer, functools.partial(self._fork_response, fork))
        self._timer("ring", timeout, self._ring_timeout)

    def _fork_response(self, fork: Fork, response: Response) -> None:
        try:
            self._handle(fork, response)
        except SIPParseError as e:
            self.log.info("bad response from {peer}: {e}", peer=str(fork.peer), e=e)
            if response.status >= 200 and fork is not self.b:
                fork.status = max(fork.status, 500)
                self._check_all_failed()

    def _handle(self, fork: Fork, response: Response) -> None:
        status = response.status
        if status < 200:
            if fork.cancel_pending:
                # RFC 3261 §9.1: the CANCEL waited for a provisional response.
                fork.cancel_pending = False
                send_cancel(self.controller, fork)
            elif status > 100 and self.state in ("routing", "ringing"):
                fork.status = max(fork.status, status)
                self.state = "ringing"
                if self.on_ringing is not None:
                    self.on_ringing()
            return
        if status < 300:
            if fork.dialog is None:
                fork.dialog = Dialog.as_uac(fork.invite, response, fork.peer, fork.address)
                fork.dialog.contact_user = self.caller
            # §13.2.2.4: we ACK every 2xx, a retransmitted one again.
            self.controller.send(ack_for_2xx(fork.dialog, fork.invite.cseq.number), fork.peer)
            if fork is self.b:
                return
            if self.b is not None or self.state not in ("routing", "ringing"):
                # Another phone answered first, or we gave up: hang this one up.
                self.controller.send_in_dialog(fork.dialog, "BYE", _ignore)
                return
            self._answered(fork, response)
            return
        fork.status = status
        if fork is not self.b:
            self._check_all_failed()

    def _answered(self, fork: Fork, response: Response) -> None:
        assert fork.dialog is not None and self.endpoint is not None and self._offer is not None
        try:
            spec, codec, event_pt, where = self._accept(response.body)
        except (SDPError, MediaError) as e:
            self.log.info("the answer of {callee} is unusable: {e}", callee=self.callee, e=e)
            self.controller.send_in_dialog(fork.dialog, "BYE", _ignore)
            fork.status = 488
            self._check_all_failed()
            return
        self.b = fork
        self._stop("ring")
        for other in self.forks:
            if other is not fork:
                cancel_fork(self.controller, other)
        controller = self.controller
        assert controller.media is not None
        self.endpoint.sender.payload_type = spec.payload_type or 0
        if where is not None:
            try:
                self.endpoint.set_remote(*where)
            except ValueError:
                pass
        channel = Channel(controller.clock, codec, controller.media.prompts, controller.media.load,
                          on_hangup=self._channel_hung_up, caller=self.caller, caller_name=self.caller_name,
                          callee=self.callee, record_arrivals=True)
        channel.digits = call_digits(event_pt is not None)
        channel.endpoint = self.endpoint
        self.channel = channel
        self.codecs = spec.encoding
        self.state = "confirmed"
        self.answered_at = self.clock.seconds()
        controller.dialog_started(self, "b", fork.dialog)
        self.outcome.callback(200)

    def _accept(self, body: bytes) -> tuple[CodecSpec, ICodec, int | None, tuple[str, int] | None]:
        """The codec, telephone-event type and RTP address an answer to our offer settled on."""
        assert self._offer is not None
        if not body:
            raise MediaError("a 2xx without an answer")
        accepted = accept_answer(self._offer, self._offered, body)
        return accepted.spec, accepted.codec, accepted.telephone_event, accepted.remote

    def _check_all_failed(self) -> None:
        if self.state not in ("routing", "ringing") or any(f.status < 300 for f in self.forks):
            return
        status = best_failure(self.forks)
        disposition = "BUSY" if status in (486, 600, 603) else "FAILED"
        self._finish(status, disposition, "b", str(status))

    def _ring_timeout(self) -> None:
        if self.state in ("routing", "ringing"):
            self._give_up(RING_TIMEOUT, "NO ANSWER", "pbx", "ring timeout")

    def _give_up(self, status: int, disposition: str, side: str, cause: str) -> None:
        for fork in self.forks:
            cancel_fork(self.controller, fork)
        self._finish(status, disposition, side, cause)

    def _finish(self, status: int, disposition: str, side: str, cause: str) -> None:
        """Ringing is over without an answer."""
        self.disposition, self.hangup_side, self.hangup_cause = disposition, side, cause
        self._end()
        if not self.outcome.called:
            self.outcome.callback(status)

    def _channel_hung_up(self, cause: str) -> None:
        self.hang_up("pbx", cause)

    # -- what the controller calls ------------------------------------------------

    def leg_of(self, dialog: Dialog) -> str:
        """Our only dialog is the callee's leg."""
        return "b"

    def fail(self, status: int, reason: str | None = None) -> None:
        """Stop ringing (pbx is shutting down)."""
        if self.state in ("routing", "ringing"):
            self._give_up(487, "FAILED", "pbx", f"{status} {reason or ''}".strip())

    def hang_up(self, side: str, cause: str) -> None:
        """
        End the call: cancel the phones while ringing, BYE the callee once
        answered (unless its own BYE ended it).

        :param side: ``"a"`` (the dialling side), ``"b"`` (the callee) or ``"pbx"``.
        """
        if self.state == "ended":
            return
        if self.state in ("routing", "ringing"):
            self._give_up(487, "CANCELLED", side, cause)
            return
        self.disposition, self.hangup_side, self.hangup_cause = "ANSWERED", side, cause
        if (side != "b" or cause != "BYE") and self.b is not None and self.b.dialog is not None:
            self.controller.send_in_dialog(self.b.dialog, "BYE", _ignore)
        self._end()

    def reoffer(self, leg: str, transaction: ServerTransaction) -> None:
        """
        A re-INVITE or UPDATE from the callee (hold, a new address): keep our
        codec and port, follow its address, and answer.  Without an offer
        (RFC 3261 §14.2) the 2xx carries our offer again.
        """
        request = transaction.request
        if self.channel is None or self.endpoint is None or self.endpoint.port is None or self._offer is None:
            transaction.respond(make_response(request, 500))
            return
        if not request.body:
            body = self._offer.to_bytes()
        else:
            try:
                offer = parse_sdp(request.body)
                spec, _, event_pt = choose_codec(offer, {self.channel.codec.name.lower(): self.channel.codec})
                self._learn(offer)
                supported = [spec]
                if event_pt is not None:
                    supported.append(CodecSpec("telephone-event", 8000, 1, "0-16", event_pt))
                ports = _first_audio_ports(offer, self.endpoint.port)
                self._version += 1
                body = make_answer(offer, supported=supported, local_address=self.controller.media_address,
                                   ports=ports, session_id=self._session_id, version=self._version).to_bytes()
            except (SDPError, MediaError):
                transaction.respond(make_response(request, 488))
                return
        ok = make_response(request, 200)
        assert self.b is not None and self.b.dialog is not None
        ok.headers.add("Contact", self.b.dialog.address.contact(self.caller))
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = body
        transaction.respond(ok)
        if request.method == "INVITE" and not transaction.peer.reliable:
            # RFC 3261 §13.3.1.4: resend the 2xx until the ACK.
            self._reoffer_ok = (request.call_id, request.cseq.number)
            peer = transaction.peer
            self._timers.repeat("reoffer-ok", lambda: self.controller.send(ok, peer), timers.T1, timers.T2)
            self._timer("reoffer-ack", timers.TIMER_H, self._reoffer_acked)

    def _reoffer_acked(self) -> None:
        self._reoffer_ok = None
        self._stop("reoffer-ok")
        self._stop("reoffer-ack")

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

    def acked(self, request: Request) -> None:
        """The callee's ACK for the 2xx of its re-INVITE."""
        if self._reoffer_ok == (request.call_id, request.cseq.number):
            self._reoffer_acked()

    def info(self, transaction: ServerTransaction) -> None:
        """SIP INFO from the callee: a DTMF digit (application/dtmf-relay) for its channel."""
        answer_dtmf_info(transaction, self.channel)

    def inactive_for(self, now: float) -> float:
        """Seconds since the callee's media last arrived."""
        if self.endpoint is None:
            return 0.0
        since = self.answered_at or self.started
        return now - max(since, self.endpoint.last_received or 0.0)

    def release_media(self) -> None:
        """Close the endpoint (its ports go back to the allocator)."""
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
        if self.on_end is not None and self._call_id:
            self.on_end(self)
        elif self.endpoint is not None:
            self.release_media()
        self.ended.callback(None)

    def record(self) -> list[CallRecord]:
        """One call detail record, for the callee's leg (``b``), answered or not."""
        return [CallRecord(
            call_id=self.b.invite.call_id if self.b is not None else self._call_id, caller=self.caller, callee=self.callee, start=self.started,
            end=self.ended_at or self.clock.seconds(), answer=self.answered_at,
            disposition=self.disposition or "FAILED", hangup_side=self.hangup_side,
            hangup_cause=self.hangup_cause, codecs=self.codecs, leg="b",
        )]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the API."""
        return {
            "call_id": self.call_id, "caller": self.caller, "callee": self.callee,
            "state": self.state, "started": self.started, "answered": self.answered_at,
            "duration": round(self.clock.seconds() - self.started, 3), "codecs": self.codecs,
            "direction": "outbound",
        }


def _first_audio_ports(offer: SessionDescription, port: int) -> list[int]:
    """Our port for the first live audio stream of an offer, 0 for every other stream."""
    ports, used = [], False
    for m in offer.media:
        live = m.media == "audio" and bool(m.port) and not used
        ports.append(port if live else 0)
        used = used or live
    return ports


def _display(name: str) -> str:
    """A quoted display name followed by a space, or '' (RFC 3261 §25.1 quoted-string)."""
    if not name:
        return ""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" '
