"""
Calls whose INVITE carries no SDP (delayed offer, RFC 3261 §13.2.1 and
§13.3.1, RFC 3264 §5): the offer goes in our 2xx and the caller's answer
comes in its ACK.

- :class:`DelayedOfferApplicationCall`: pbx answers itself.  It binds its
  RTP endpoint, offers every codec it has (the order and payload types of
  the offers pbx makes when it places calls, plus telephone-event), and
  builds the channel and starts the application once the ACK has answered.
- :class:`DelayedOfferCall`: through the B2BUA.  The callees get INVITEs
  without SDP too; the offer in the answering callee's 2xx is passed to the
  caller in our 2xx (rewritten through the relay), and that callee's ACK
  waits for the caller's: it carries the answer made from the caller's
  (RFC 3261 §13.2.2.4).

An ACK without a usable answer leaves no session (RFC 3261 §13.2.2.4,
RFC 3264 §5): the call is ended with BYE.  A 2xx we do not take (another
phone answered first, the call is over, the offer is unusable) is ACKed
with an answer refusing every stream, then BYE'd.
"""

from __future__ import annotations

import secrets
from typing import Any

from attrs import define, field

from pbx.calls.app_call import ApplicationCall
from pbx.calls.call import Call, Fork
from pbx.calls.media import CallMedia, MediaError
from pbx.calls.outbound import RTP_CLOCK, TELEPHONE_EVENT_PT, offered_codecs
from pbx.calls.own_offer import Accepted, accept_answer
from pbx.interfaces import ICodec
from pbx.media.channel import Channel, channel_callbacks
from pbx.media.codecs_table import CodecSpec
from pbx.media.dtmf import call_digits
from pbx.media.endpoint import RTPEndpoint
from pbx.media.offer_answer import make_offer
from pbx.media.sdp import (
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
)
from pbx.sip.dialog import Dialog, ack_for_2xx
from pbx.sip.message import Request, Response

#: Why a call ends when the caller's ACK does not answer our offer.
NO_ANSWER_IN_ACK = "no answer in ACK"


def _ignore(response: Response) -> None:
    """Responses nobody waits for (to BYE)."""


def refusal(offer: SessionDescription, address: str) -> bytes:
    """
    A valid answer that refuses every stream of ``offer`` (RFC 3264 §6:
    port 0, the offered formats): what the ACK of a 2xx whose offer we do
    not take carries before the BYE (RFC 3261 §13.2.2.4).
    """
    connection = Connection.for_address(address)
    origin = Origin(
        "-", str(secrets.randbelow(2**31)), 1, "IN", connection.addrtype, address
    )
    streams = [MediaDescription(m.media, 0, m.proto, m.formats) for m in offer.media]
    return SessionDescription(
        origin=origin, connection=connection, media=streams
    ).to_bytes()


@define(eq=False)
class DelayedOfferApplicationCall(ApplicationCall):
    """An application call whose INVITE had no SDP: our 200 offers, the ACK answers."""

    _offered: list[tuple[CodecSpec, ICodec]] = field(factory=list)
    _offer: SessionDescription | None = None
    _prompts: Any = None
    _load: Any = None

    def start(self, codecs: dict[str, ICodec], prompts: Any, load: Any,
              early_answer: bytes | None = None) -> None:
        """
        Open the endpoint and answer 200 with our offer; the application starts at the ACK.

        :param early_answer: never given: a caller without an offer gets no
            early media (RFC 6337 §3.1), so there is no earlier answer to keep.
        """
        controller = self.controller
        self._prompts, self._load = prompts, load
        self._offered = offered_codecs(codecs)
        if not self._offered:
            self._refuse(503, "No Codec To Offer")
            return
        endpoint = RTPEndpoint(
            controller.reactor,
            controller.media_ports,
            payload_type=self._offered[0][0].payload_type or 0,
            clock_rate=RTP_CLOCK,
            interface=controller.config.rtp.interface,
            telephone_event_pt=TELEPHONE_EVENT_PT,
            **channel_callbacks(self),
            media_clock=controller.media_clock,
            clock=controller.clock,
        )
        try:
            port = endpoint.listen()
        except Exception as e:
            self.log.warn("no media port for an application call: {e}", e=e)
            self._refuse(503, "No Media Ports")
            return
        self.endpoint = endpoint
        self._version += 1
        events = CodecSpec("telephone-event", 8000, 1, "0-16", TELEPHONE_EVENT_PT)
        self._offer = make_offer(
            codecs=[spec for spec, _ in self._offered] + [events],
            local_address=controller.media_address,
            port=port,
            session_id=self._session_id,
            version=self._version,
            ptime=20,
        )
        self._answer_caller(self._offer.to_bytes())

    def acked(self, request: Request) -> None:
        """The caller's ACK, with its answer: build the channel and run the application, or BYE."""
        if (
            self.state != "answered"
            or self._pending_hangup is not None
            or self._offer is None
        ):
            super().acked(request)
            return
        try:
            accepted = accept_answer(self._offer, self._offered, request.body)
        except MediaError as e:
            self.log.info(
                "the ACK of {caller} has no usable answer: {e}", caller=self.caller, e=e
            )
            super().acked(request)
            self.hang_up("a", NO_ANSWER_IN_ACK)
            return
        self._connect(accepted)
        super().acked(request)
        self._start_application()

    def _connect(self, accepted: Accepted) -> None:
        """Send with the codec the answer chose, to where it says; the channel decodes with it."""
        assert self.endpoint is not None
        channel = Channel(
            self.clock,
            accepted.codec,
            self._prompts,
            self._load,
            on_hangup=self._app_hung_up,
            caller=self.caller,
            caller_name=self.caller_name,
            callee=self.callee,
            record_arrivals=True,
        )
        # RFC 4733 reports come only on our payload type (the endpoint takes
        # events on it alone; RFC 3264 §6.1 says the answer SHOULD keep it).
        channel.digits = call_digits(accepted.telephone_event == TELEPHONE_EVENT_PT)
        channel.endpoint = self.endpoint
        self.endpoint.sender.payload_type = accepted.spec.payload_type or 0
        if accepted.remote is not None:
            try:
                self.endpoint.set_remote(*accepted.remote)
            except ValueError:
                pass
        self.channel = channel
        self.codecs = accepted.spec.encoding


@define(eq=False)
class DelayedOfferCall(Call):
    """A B2BUA call whose INVITE had no SDP: the callee offers in its 2xx, the caller answers in its ACK."""

    #: The ACK sent for each fork's 2xx: a retransmitted 2xx gets it again (§13.2.2.4).
    _acks: dict[Fork, Request] = field(factory=dict)

    def _handle_fork_response(self, fork: Fork, response: Response) -> None:
        if not 200 <= response.status < 300:
            super()._handle_fork_response(fork, response)
            return
        if fork.dialog is None:
            fork.dialog = Dialog.as_uac(fork.invite, response, fork.peer, fork.address)
        else:
            fork.dialog.remote = response.to
            fork.dialog.update_target(response)
        ack = self._acks.get(fork)
        if ack is not None:
            self.controller.send(ack, fork.peer)
            return
        if fork is self.b:
            # Retransmitted while the caller's answer is awaited: its ACK
            # must carry that answer, so none goes yet (§13.2.2.4).
            return
        if self.b is not None or self.state not in ("routing", "ringing"):
            # Another phone answered first, or the call failed, was
            # cancelled or diverted: this one is hung up.
            self._turn_down(fork, response.body)
            return
        try:
            # §13.2.1: the 2xx to an INVITE without an offer carries one.
            offer = self.media.offer_from("b", response.body) if response.body else b""
        except MediaError as e:
            self.log.info(
                "the offer of {peer} is unusable: {e}", peer=str(fork.peer), e=e
            )
            offer = b""
        if not offer:
            self._turn_down(fork, response.body)
            fork.status = 488
            self._check_all_failed()
            return
        self.b = fork
        self._cancel("ring")
        for other in self.forks:
            if other is not fork:
                self._cancel_fork(other)
        self._answer_caller(fork, offer)

    def _turn_down(self, fork: Fork, offer: bytes) -> None:
        """A 2xx we do not take: ACK it with an answer refusing its offer, then BYE (§13.2.2.4)."""
        try:
            body = refusal(CallMedia.parse(offer), self.media.address) if offer else b""
        except MediaError:
            body = b""
        self._ack_callee(fork, body)
        assert fork.dialog is not None
        self.controller.send_in_dialog(fork.dialog, "BYE", _ignore)

    def _ack_callee(self, fork: Fork, body: bytes) -> None:
        """ACK a callee's 2xx with ``body`` (its answer), once."""
        if fork in self._acks or fork.dialog is None:
            return
        ack = ack_for_2xx(fork.dialog, fork.invite.cseq.number, body)
        self._acks[fork] = ack
        self.controller.send(ack, fork.peer)

    def _refuse_callee(self) -> None:
        """The answering callee, not ACKed yet, gets an ACK refusing its offer (a BYE follows)."""
        offer = self.media.offers.get("b")
        if self.b is not None:
            self._ack_callee(
                self.b, refusal(offer, self.media.address) if offer is not None else b""
            )

    def acked(self, request: Request) -> None:
        """The caller's ACK: its answer, through the relay, goes to the callee in the callee's ACK."""
        b = self.b
        if self.state != "answered" or b is None or b in self._acks:
            super().acked(request)
            return
        try:
            if not request.body:
                raise MediaError("no answer")
            answer = self.media.answer_from("a", request.body)
        except MediaError as e:
            self.log.info(
                "the ACK of {caller} has no usable answer: {e}", caller=self.caller, e=e
            )
            self._refuse_callee()
            super().acked(request)
            self.hang_up("a", NO_ANSWER_IN_ACK)
            return
        self._ack_callee(b, answer)
        super().acked(request)

    def hang_up(self, side: str, cause: str) -> None:
        """As :meth:`Call.hang_up`; a callee still waiting for its ACK gets one before its BYE."""
        if self.state == "answered" and (side != "b" or cause != "BYE"):
            self._refuse_callee()
        super().hang_up(side, cause)
