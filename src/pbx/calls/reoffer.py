"""
Offers a party of a relayed call makes within its dialog, a re-INVITE or
an UPDATE (hold, resume, a codec change), and the INFO it sends.  A hold
pbx answers itself when it plays music (:mod:`pbx.calls.hold`); any other
offer goes to the other party, whose answer comes back as ours, and INFO
likewise.  One offer at a time (RFC 3261 §14.2).
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define

from pbx.calls.hold import LocalHold
from pbx.calls.media import OTHER, CallMedia, MediaError
from pbx.calls.reinvite import ReinviteAnswers
from pbx.calls.signalling import SIPSender
from pbx.sip.dialog import Dialog, ack_for_2xx
from pbx.sip.message import Response, make_response
from pbx.sip.transaction import ServerTransaction


@define(eq=False)
class Reoffers:
    """
    Passes the offers and INFO of one relayed call's parties between its seats.

    :ivar sip: sends requests and responses.
    :ivar media: the call's media, which makes each side's offers and answers.
    :ivar answers: sends our 2xx to a re-INVITE until its ACK.
    :ivar hold: answers holds itself (music on hold); None passes them on.
    :ivar dialog: the dialog of the party in a seat (``"a"``, ``"b"``); None for an empty seat.
    :ivar refreshed: told that a seat's party sent an offer (RFC 4028: the caller's refreshes its session).
    :ivar session_headers: the RFC 4028 headers of a 200 to a seat's offer.
    :ivar publish: publishes a seat's ``held`` or ``resumed`` (kind, seat).
    """

    sip: SIPSender
    media: CallMedia
    answers: ReinviteAnswers
    hold: LocalHold | None
    dialog: Callable[[str], Dialog | None]
    refreshed: Callable[[str], None]
    session_headers: Callable[[str], list[tuple[str, str]]]
    publish: Callable[[str, str], None]
    _pending: bool = False

    def reoffer(self, leg: str, transaction: ServerTransaction) -> None:
        """
        A re-INVITE or UPDATE (hold, unhold, codec change) from ``leg``:
        offer the change to the other leg, and answer with what it says.
        """
        request = transaction.request
        if self._pending:
            # RFC 3261 §14.2: one offer at a time.
            transaction.respond(make_response(request, 491))
            return
        other = OTHER[leg]
        other_dialog = self.dialog(other)
        if other_dialog is None:
            transaction.respond(make_response(request, 500))
            return
        self.refreshed(leg)
        held = self.media.held.get(leg, False)
        if self.hold is not None and (ours := self.hold.answer(leg, request.body)) is not None:
            if self.media.held.get(leg, False) != held:
                self.publish("held" if not held else "resumed", leg)
            self._answer_here(leg, transaction, ours)
            return
        try:
            body = self.media.offer_from(leg, request.body) if request.body else b""
        except MediaError:
            transaction.respond(make_response(request, 488))
            return
        if self.media.held.get(leg, False) != held:
            self.publish("held" if not held else "resumed", leg)
        self._pending = True
        method = request.method
        outgoing = other_dialog.request(method, body=body, content_type="application/sdp" if body else None)
        peer = other_dialog.peer
        invite_cseq = outgoing.cseq.number
        sip = self.sip
        done = False

        def answered(response: Response) -> None:
            nonlocal done
            if response.status < 200:
                return
            if done:
                # A retransmitted 2xx (our ACK was lost) is ACKed again, not
                # answered a second time (§13.2.2.4).
                if method == "INVITE" and response.status < 300:
                    sip.send(ack_for_2xx(other_dialog, invite_cseq), peer)
                return
            done = True
            self._pending = False
            if response.status >= 300:
                transaction.respond(make_response(request, response.status, response.reason))
                return
            if method == "INVITE":
                sip.send(ack_for_2xx(other_dialog, invite_cseq), peer)
            try:
                ours = self.media.answer_from(other, response.body) if response.body else b""
            except MediaError:
                transaction.respond(make_response(request, 488))
                return
            if self.hold is not None:
                self.hold.refresh()
            ok = make_response(request, 200)
            ok.headers.add("Contact", (self.dialog("a") or other_dialog).contact("pbx"))
            for name, value in self.session_headers(leg):
                ok.headers.add(name, value)
            if ours:
                ok.headers.add("Content-Type", "application/sdp")
                ok.body = ours
            self.answers.respond(transaction, ok)

        sip.request(outgoing, peer, answered)

    def _answer_here(self, leg: str, transaction: ServerTransaction, body: bytes) -> None:
        """200 to ``leg``'s re-INVITE or UPDATE with our own answer ``body`` (a hold or resume)."""
        request = transaction.request
        dialog = self.dialog(leg)
        ok = make_response(request, 200)
        if dialog is not None:
            ok.headers.add("Contact", dialog.contact("pbx"))
        for name, value in self.session_headers(leg):
            ok.headers.add(name, value)
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = body
        self.answers.respond(transaction, ok)

    def info(self, leg: str, transaction: ServerTransaction) -> None:
        """Pass INFO (e.g. application/dtmf-relay) to the other leg; answer with what it answers."""
        request = transaction.request
        other = self.dialog(OTHER[leg])
        if other is None:
            transaction.respond(make_response(request, 481))
            return
        info = other.request("INFO", body=request.body, content_type=request.headers.get("Content-Type"))
        self.sip.request(
            info, other.peer,
            lambda r: transaction.respond(make_response(request, r.status)) if r.status >= 200 else None)
