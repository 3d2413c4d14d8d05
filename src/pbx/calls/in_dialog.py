"""
Requests within a call's dialogs, and CANCEL: which call a BYE, re-INVITE,
UPDATE, INFO, REFER, PRACK, ACK or CANCEL is for, and which of the call's
collaborators takes it.

In-dialog requests find their call through the dialog table (RFC 3261
§12.2); a CANCEL finds the pending INVITE it cancels (§9.2).  A request
that matches nothing gets 481.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define

from pbx.calls.app_call import ApplicationCall
from pbx.calls.call import Call
from pbx.calls.keys import CallKeys
from pbx.calls.outbound import OutboundCall
from pbx.calls.transfer import Transfers
from pbx.calls.transfer_app import ApplicationSeats
from pbx.sip.dialogs import DialogTable
from pbx.sip.message import Request, make_response
from pbx.sip.transaction import Peer, ServerTransaction

LiveCall = Call | ApplicationCall | OutboundCall


@define(eq=False)
class InDialog:
    """
    Hands requests within calls to the calls and their collaborators.

    :ivar find_invite: the pending INVITE server transaction a CANCEL refers to.
    :ivar call: the live call with a Call-ID, or None.
    :ivar dialogs: the dialogs of live calls.
    :ivar app_seats: applications that blind transfers handed calls to.
    :ivar transfers: transfers (REFER) and transferors leaving.
    :ivar keys: what parties press in relayed calls (INFO).
    """

    find_invite: Callable[[Request], ServerTransaction | None]
    call: Callable[[str], LiveCall | None]
    dialogs: DialogTable[LiveCall]
    app_seats: ApplicationSeats
    transfers: Transfers
    keys: CallKeys

    def cancel(self, transaction: ServerTransaction) -> None:
        """§9.2: a CANCEL matches a pending INVITE server transaction or gets 481."""
        invite = self.find_invite(transaction.request)
        call = self.call(transaction.request.call_id)
        if invite is None or not isinstance(call, Call | ApplicationCall) or call.invite is not invite:
            transaction.respond(make_response(transaction.request, 481))
            return
        # §9.2: the 200 to CANCEL SHOULD carry the To tag of the INVITE's responses.
        transaction.respond(make_response(transaction.request, 200, to_tag=call.a_tag))
        call.cancelled()

    def request(self, transaction: ServerTransaction) -> None:
        """A request with a To tag: the call of its dialog takes it."""
        request = transaction.request
        entry = self.dialogs.match(request)
        if entry is None:
            transaction.respond(make_response(request, 481))
            return
        call, dialog = entry
        if not dialog.check_remote_seq(request):
            transaction.respond(make_response(request, 500, "CSeq Out of Order"))
            return
        leg = call.leg_of(dialog)
        method = request.method
        if isinstance(call, Call) and self.app_seats.in_dialog(call, leg, transaction):
            return  # the transferee of a call an application took (pbx.calls.transfer_app)
        if method == "BYE":
            transaction.respond(make_response(request, 200))
            if not (isinstance(call, Call) and self.transfers.leaving(call, leg)):
                call.hang_up(leg, "BYE")
        elif method in ("INVITE", "UPDATE"):
            dialog.update_target(request)
            call.reoffer(leg, transaction)
        elif method == "INFO":
            if isinstance(call, Call):
                self.keys.info(call, leg, request)  # it only watches for feature codes
            call.info(leg, transaction)
        elif method == "REFER" and isinstance(call, Call):
            self.transfers.refer(call, leg, dialog, transaction)
        else:
            transaction.respond(make_response(request, 481 if method == "PRACK" else 501))

    def ack(self, request: Request, peer: Peer) -> None:
        """An ACK for a 2xx (outside transactions)."""
        entry = self.dialogs.match(request)
        if entry is not None:
            entry[0].acked(request)
