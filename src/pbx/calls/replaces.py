"""
An INVITE with a Replaces header (RFC 3891 §3): a phone that does
attended transfer (or call pickup) by calling in and naming the dialog it
takes over.

The dialog named is one of pbx's, in a relayed :class:`~pbx.calls.call.Call`;
its party is the *replaced* one, the call's other party the *remaining*
one.  The newcomer's offer is passed to the remaining party in a re-INVITE
(:meth:`CallMedia.offer_from <pbx.calls.media.CallMedia.offer_from>` on
the replaced party's side), so a codec change is negotiated end to end;
its answer becomes our answer to the newcomer, on the replaced party's
relay port.  Then the replaced party gets BYE, leaves its seat
(:meth:`Call.vacate <pbx.calls.call.Call.vacate>`) and the newcomer takes
it (:meth:`Call.seat <pbx.calls.call.Call.seat>`), exactly as a transfer
target does.  No dialog found: 481 (RFC 3891 §3); an INVITE without an
offer: 488 (pbx needs the newcomer's SDP to re-INVITE with).
"""

from __future__ import annotations

from attrs import define

from twisted.logger import Logger

from pbx.calls.attended import find_dialog
from pbx.calls.call import Call
from pbx.calls.events import CallEvents
from pbx.calls.media import OTHER, MediaError
from pbx.calls.refer import ReferError, parse_replaces
from pbx.calls.seats import (
    adopted_fork,
    departing_record,
    party_number,
    records_detail,
    reinvite,
    seat_dialog,
)
from pbx.calls.signalling import LegServices
from pbx.sip.dialog import Dialog, LocalAddress
from pbx.sip.ids import new_tag
from pbx.sip.message import Response, make_response
from pbx.sip.transaction import ServerTransaction


@define(eq=False)
class Replacements:
    """Takes INVITEs with Replaces."""

    services: LegServices
    events: CallEvents
    log = Logger()

    def invite(
        self, transaction: ServerTransaction, caller: str, address: LocalAddress
    ) -> None:
        """
        The authenticated extension ``caller`` sent an INVITE with Replaces;
        answer it with the call it takes over, or refuse it.
        """
        request = transaction.request
        try:
            replaces = parse_replaces(request.headers.get("Replaces") or "")
        except ReferError as e:
            transaction.respond(
                make_response(request, 400, str(e)[:80], to_tag=new_tag())
            )
            return
        found = find_dialog(self.services, replaces)
        if found is None or found[0].state != "confirmed":
            # RFC 3891 §3: no such (confirmed) dialog.
            transaction.respond(make_response(request, 481, to_tag=new_tag()))
            return
        if replaces.early_only:
            # RFC 3891 §3: early-only, and the dialog is confirmed.
            transaction.respond(make_response(request, 486, to_tag=new_tag()))
            return
        call, dialog = found
        replaced = call.leg_of(dialog)
        remaining = OTHER[replaced]
        other_dialog = seat_dialog(call, remaining)
        if not request.body or other_dialog is None:
            transaction.respond(make_response(request, 488, to_tag=new_tag()))
            return
        try:
            offer = call.media.offer_from(replaced, request.body)
        except MediaError:
            transaction.respond(make_response(request, 488, to_tag=new_tag()))
            return
        self.log.info(
            "call {call_id}: {caller} replaces {who}",
            call_id=call.call_id,
            caller=caller,
            who=party_number(call, replaced),
        )

        def answered(response: Response) -> None:
            if response.status >= 300:
                transaction.respond(
                    make_response(request, response.status, to_tag=new_tag())
                )
                return
            try:
                answer = call.media.answer_from(remaining, response.body)
            except MediaError:
                transaction.respond(make_response(request, 488, to_tag=new_tag()))
                return
            if call.state != "confirmed":
                transaction.respond(make_response(request, 481, to_tag=new_tag()))
                return
            self._join(transaction, call, replaced, caller, address, answer)

        reinvite(self.services.sip, other_dialog, offer, answered)

    def _join(
        self,
        transaction: ServerTransaction,
        call: Call,
        replaced: str,
        caller: str,
        address: LocalAddress,
        answer: bytes,
    ) -> None:
        """Answer the newcomer, BYE the replaced party, seat the newcomer in its place."""
        request = transaction.request
        services = self.services
        now = services.clock.seconds()
        who = party_number(call, replaced)
        record = departing_record(call, replaced, f"replaced by {caller}", now)
        old = call.vacate(replaced, record)
        if old is not None:
            services.sip.in_dialog(old, "BYE")  # RFC 3891 §3: the replaced dialog ends
        tag = new_tag()
        dialog = Dialog.as_uas(request, transaction.peer, address, tag)
        ok = make_response(request, 200, to_tag=tag)
        ok.headers.add("Contact", dialog.contact())
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = answer
        fork = None
        if replaced == "b":
            fork = adopted_fork(caller, request, now, dialog, services)
            call.callee = caller
        else:
            call.caller = caller
        call.seat(replaced, dialog, fork)
        call.answer_in_dialog(transaction, ok)
        self.events.announce(
            "transferred",
            call,
            now,
            replaced,
            how="replaces",
            transferor=who,
            target=caller,
            call_id=call.call_id,
            target_call_id=request.call_id,
            **records_detail(call),
        )
