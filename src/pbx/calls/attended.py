"""
Attended transfer: a REFER whose Refer-To carries Replaces (RFC 3891
§7.1), from a phone that talks to two parties through pbx and joins them.

The REFER comes in the call with the *transferee*; the Replaces names the
transferor's dialog in its other call, whose remaining party is the
*target*.  The target is re-INVITEd onto the transferor's relay port of
the transferee's call (offered the transferee's SDP, see
:func:`~pbx.calls.seats.current_sdp`), so the transferee's side is not
touched; then the other call ends (BYE to the transferor there, nothing to
the target), the target takes the transferor's seat
(:meth:`Call.seat <pbx.calls.call.Call.seat>`), a transferee left held is
resumed (:func:`~pbx.calls.seats.resume_held`), and the transferor gets
the final NOTIFY, then BYE.  A target that called the transferor takes a
callee's seat as an adopted fork (:func:`~pbx.calls.seats.adopted_fork`).
"""

from __future__ import annotations

from typing import Any

from attrs import define

from twisted.logger import Logger

from pbx.calls.call import Call
from pbx.calls.events import CallEvents
from pbx.calls.forks import Fork
from pbx.calls.media import OTHER, MediaError
from pbx.calls.refer import ReferProgress, Replaces
from pbx.calls.seats import (
    adopted_fork,
    current_sdp,
    departing_record,
    party_number,
    records_detail,
    reinvite,
    resume_held,
    seat_of,
)
from pbx.calls.signalling import LegServices
from pbx.sip.dialog import Dialog
from pbx.sip.message import Response


def find_dialog(
    services: LegServices, replaces: Replaces
) -> tuple[Call, Dialog] | None:
    """The relayed call and dialog a Replaces header names (RFC 3891 §3), or None."""
    for key in replaces.keys():
        entry = services.dialogs.find(*key)
        if entry is not None and isinstance(entry[0], Call):
            return entry[0], entry[1]
    return None


@define(eq=False)
class AttendedTransfers:
    """Joins the two calls of a transferor (see the module docstring)."""

    services: LegServices
    events: CallEvents
    log = Logger()

    def transfer(
        self, call: Call, leg: str, progress: ReferProgress, replaces: Replaces
    ) -> None:
        """The party in ``leg``'s seat of ``call`` REFERred it to the dialog ``replaces`` names."""
        found = find_dialog(self.services, replaces)
        if found is None or found[0] is call or found[0].state != "confirmed":
            progress.report(481)
            return
        other_call, dialog = found
        target_leg = OTHER[other_call.leg_of(dialog)]
        target_dialog, target_fork = seat_of(other_call, target_leg)
        if target_dialog is None:
            progress.report(481)
            return
        if leg == "b" and target_fork is None:
            # The target called in: its dialog takes the callee's seat as a fork.
            target_fork = adopted_fork(
                other_call.caller,
                other_call.invite.request,
                other_call.started,
                target_dialog,
                self.services,
            )
        transferee = OTHER[leg]
        try:
            offer = call.media.offer_from(
                transferee, current_sdp(call.media, transferee).to_bytes()
            )
        except MediaError as e:
            self.log.info(
                "call {call_id} cannot be joined: {e}", call_id=call.call_id, e=e
            )
            progress.report(488)
            return

        def answered(response: Response) -> None:
            if response.status >= 300:
                progress.report(response.status)
                return
            try:
                call.media.answer_from(leg, response.body)
            except MediaError as e:
                self.log.info(
                    "attended transfer: the target's answer is unusable: {e}", e=e
                )
                progress.report(488)
                return
            if call.state != "confirmed" or other_call.state != "confirmed":
                progress.report(487)
                return
            self._join(
                call, leg, other_call, target_leg, target_dialog, target_fork, progress
            )

        reinvite(self.services.sip, target_dialog, offer, answered)

    def _join(
        self,
        call: Call,
        leg: str,
        other_call: Call,
        target_leg: str,
        target_dialog: Dialog,
        target_fork: Fork | None,
        progress: ReferProgress,
    ) -> None:
        transferor = party_number(call, leg)
        target = party_number(other_call, target_leg)
        # Two calls become one conversation: the other call's records too.
        call.seating.link(other_call.seating)
        other_call.hand_over(target_leg, f"transferred: {target} joined {call.call_id}")
        now = self.services.clock.seconds()
        dialog = call.vacate(
            leg, departing_record(call, leg, f"transferred to {target}", now)
        )
        call.seat(leg, target_dialog, target_fork)
        if leg == "a":
            call.caller = target
        else:
            call.callee = target
        sip = self.services.sip
        resume_held(call, OTHER[leg], sip)

        def bye(_: Any = None) -> None:
            if dialog is not None:
                sip.in_dialog(dialog, "BYE")

        if not progress.report(200, on_response=bye):
            bye()
        self.events.announce(
            "transferred",
            call,
            now,
            leg,
            how="attended",
            call_id=call.call_id,
            transferor=transferor,
            target=target,
            target_call_id=other_call.call_id,
            **records_detail(call),
        )
