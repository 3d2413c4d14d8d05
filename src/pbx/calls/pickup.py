"""
Call pickup: answering, from one's own phone, a call that rings another.

Directed pickup: ``**`` + an extension picks up a call ringing that
extension.  Group pickup: ``*8`` picks up a call ringing any other member
of the picker's pickup groups (``pickup_groups: {sales: ["1001",
"1002"]}``, :mod:`pbx.calls.pickup_options`), the longest-ringing first.

The picker's INVITE takes the ringing callee's seat of the
:class:`~pbx.calls.call.Call`: pbx answers both offers itself with the
first codec of the picker's offer that the caller offered too (no
transcoding), the caller on its own relay port, the picker on the callee's
(:meth:`CallMedia.answer_from <pbx.calls.media.CallMedia.answer_from>`,
:meth:`CallMedia.answer_here <pbx.calls.media.CallMedia.answer_here>`);
the phones still ringing get CANCEL (:meth:`Call.picked_up
<pbx.calls.call.Call.picked_up>`).  Nothing ringing: 404.  A caller whose
INVITE had no offer, or a picker without one, or no common codec: 488.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import define, evolve, field

from twisted.logger import Logger

from pbx.calls.call import Call
from pbx.calls.media import CallMedia, MediaError
from pbx.calls.seats import adopted_fork
from pbx.calls.signalling import LegServices
from pbx.media.offer_answer import offered_codecs
from pbx.media.sdp import SessionDescription
from pbx.sip.dialog import Dialog, LocalAddress
from pbx.sip.ids import new_tag
from pbx.sip.message import make_response
from pbx.sip.transaction import ServerTransaction

__all__ = ["DIRECTED_CODE", "GROUP_CODE", "Pickups"]

#: Keys before an extension: pick up the call ringing it.
DIRECTED_CODE = "**"
#: Pick up a call ringing one's pickup group.
GROUP_CODE = "*8"


def _common(
    picker: SessionDescription, caller: SessionDescription
) -> SessionDescription:
    """
    The picker's offer cut down to its first codec the caller offered too
    (and telephone-event when both have it): what it would have answered.

    :raises MediaError: no audio, or no codec in common.
    """
    theirs = next((m for m in caller.media if m.media == "audio" and m.port), None)
    mine = next((m for m in picker.media if m.media == "audio" and m.port), None)
    if theirs is None or mine is None:
        raise MediaError("no audio stream")
    keys = {c.key for c in offered_codecs(theirs)}
    codecs = offered_codecs(mine)
    main = next((c for c in codecs if not c.is_auxiliary and c.key in keys), None)
    if main is None:
        raise MediaError("no codec in common with the caller")
    keep = [main] + [
        c for c in codecs if c.encoding.lower() == "telephone-event" and c.key in keys
    ][:1]
    formats = [str(c.payload_type) for c in keep]
    attributes = [
        (name, value)
        for name, value in mine.attributes
        if not (
            name in ("rtpmap", "fmtp") and (value or "").split(" ", 1)[0] not in formats
        )
    ]
    streams = [
        evolve(m, formats=formats, attributes=attributes)
        if m is mine
        else evolve(m, port=0)
        for m in picker.media
    ]
    return evolve(picker, media=streams)


@define(eq=False)
class Pickups:
    """
    Takes the INVITEs that pick up ringing calls.

    :ivar services: SIP sender, clock, dialog table.
    :ivar calls: the live calls now.
    :ivar groups: pickup groups by name.
    """

    services: LegServices
    calls: Callable[[], Iterable[Any]]
    groups: Mapping[str, tuple[str, ...]] = field(factory=dict)
    log = Logger()

    def wanted(self, number: str) -> bool:
        """Whether dialling ``number`` is a pickup."""
        if number == GROUP_CODE:
            return True
        rest = number[len(DIRECTED_CODE) :]
        return number.startswith(DIRECTED_CODE) and rest.isdigit()

    def _targets(self, number: str, picker: str) -> set[str]:
        if number != GROUP_CODE:
            return {number[len(DIRECTED_CODE) :]}
        return {
            member
            for members in self.groups.values()
            if picker in members
            for member in members
            if member != picker
        }

    def _ringing(self, targets: set[str], picker: str) -> Call | None:
        """The longest-ringing call ringing one of ``targets`` (not one the picker makes)."""
        found = [
            call
            for call in self.calls()
            if isinstance(call, Call)
            and call.state == "ringing"
            and call.caller != picker
            and call.forks is not None
            and call.forks.ringing
            and any(
                fork.binding.aor in targets or call.callee in targets
                for fork in call.forks.forks
            )
        ]
        return min(found, key=lambda c: c.started, default=None)

    def pick(
        self, transaction: ServerTransaction, picker: str, address: LocalAddress
    ) -> None:
        """The authenticated extension ``picker`` dialled a pickup code: answer it with the ringing call, or refuse."""
        request = transaction.request
        number = request.uri.user or ""
        call = self._ringing(self._targets(number, picker), picker)
        if call is None:
            transaction.respond(
                make_response(request, 404, "Nothing to Pick Up", to_tag=new_tag())
            )
            return
        media = call.media
        caller_offer = media.offers.get("a")
        if not request.body or caller_offer is None or call.delayed:
            transaction.respond(make_response(request, 488, to_tag=new_tag()))
            return
        try:
            offer = CallMedia.parse(request.body)
            for_caller = media.answer_from("b", _common(offer, caller_offer).to_bytes())
            for_picker = media.answer_here("b", offer, media.agreed["b"])
        except MediaError as e:
            self.log.info("pickup by {picker} refused: {e}", picker=picker, e=e)
            transaction.respond(make_response(request, 488, to_tag=new_tag()))
            return
        self.log.info(
            "call {call_id}: {picker} picks up the call to {callee}",
            call_id=call.call_id,
            picker=picker,
            callee=call.callee,
        )
        tag = new_tag()
        dialog = Dialog.as_uas(request, transaction.peer, address, tag)
        ok = make_response(request, 200, to_tag=tag)
        ok.headers.add("Contact", dialog.contact())
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = for_picker
        now = self.services.clock.seconds()
        call.picked_up(
            adopted_fork(picker, request, now, dialog, self.services), for_caller
        )
        call.answer_in_dialog(transaction, ok)
