"""
Moving parties between the seats of relayed calls: what transfer
(:mod:`pbx.calls.transfer`, :mod:`pbx.calls.attended`) and Replaces
(:mod:`pbx.calls.replaces`) share.

A :class:`~pbx.calls.call.Call` has two seats, ``"a"`` (the caller's: an
:class:`~pbx.calls.inbound.InboundLeg`, or a :class:`~pbx.calls.party.Party`
once someone else sits there) and ``"b"`` (the callee's: a
:class:`~pbx.calls.forks.Fork`, dialled by pbx or adopted, see
:func:`adopted_fork`), each with one side of the call's relay session.  A
party that joins takes a seat on that seat's relay port, so the other
party's port and SDP stay as they are; the joining party gets the other
party's SDP (:func:`current_sdp`), and the other party is re-INVITEd only
when it was left one-way by a hold (:func:`resume_held`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import evolve

from twisted.logger import Logger

from pbx.calls.call import Call
from pbx.calls.forks import Fork
from pbx.calls.media import OTHER, CallMedia, MediaError
from pbx.calls.signalling import LegServices, SIPSender
from pbx.media.offer_answer import offered_codecs
from pbx.media.sdp import DIRECTIONS, SessionDescription, direction
from pbx.records import Binding, CallRecord
from pbx.sip.dialog import Dialog, ack_for_2xx
from pbx.sip.message import Request, Response

log = Logger()


def party_number(call: Call, leg: str) -> str:
    """The extension in ``leg``'s seat (the caller or the callee)."""
    return call.caller if leg == "a" else call.callee


def seat_of(call: Call, leg: str) -> tuple[Dialog | None, Fork | None]:
    """The dialog in ``leg``'s seat and, for the callee's seat, its fork."""
    if leg == "a":
        return call.a.dialog, None
    if call.b is None:
        return None, None
    return call.b.dialog, call.b


def seat_dialog(call: Call, leg: str) -> Dialog | None:
    """The dialog in ``leg``'s seat, if any."""
    return seat_of(call, leg)[0]


def current_sdp(media: CallMedia, leg: str) -> SessionDescription:
    """
    ``leg``'s SDP for a new peer: its last answer or offer, cut down to the
    codec in use and telephone-event, sendrecv (RFC 3264 §5.1).

    :raises MediaError: no SDP of that leg, no codec agreed, or the relay transcodes.
    """
    sdp = media.answers.get(leg) or media.offers.get(leg)
    if sdp is None or not media.codecs:
        raise MediaError("no agreed media to hand over")
    if media.transcoding:
        raise MediaError("a transcoded call is not transferred")
    keep = {media.codecs.lower(), "telephone-event"}
    streams = []
    used = False
    for m in sdp.media:
        if m.media != "audio" or not m.port or used:
            streams.append(evolve(m, port=0) if m.port else m)
            continue
        used = True
        codecs = [c for c in offered_codecs(m) if c.encoding.lower() in keep]
        formats = [str(c.payload_type) for c in codecs]
        if not any(c.encoding.lower() != "telephone-event" for c in codecs):
            raise MediaError("the codec in use is not in the SDP")
        kept = set(formats)
        attributes = [
            (name, value)
            for name, value in m.attributes
            if name not in DIRECTIONS
            and not (
                name in ("rtpmap", "fmtp")
                and (value or "").split(" ", 1)[0] not in kept
            )
        ]
        streams.append(evolve(m, formats=formats, attributes=attributes))
    if not used:
        raise MediaError("no audio stream to hand over")
    return evolve(
        sdp,
        media=streams,
        attributes=[a for a in sdp.attributes if a[0] not in DIRECTIONS],
    )


def first_format(sdp: SessionDescription) -> int:
    """The payload type of the first format of the first live audio stream."""
    audio = next(m for m in sdp.media if m.media == "audio" and m.port)
    return int(audio.formats[0])


def adopted_fork(
    number: str, invite: Request, started: float, dialog: Dialog, services: LegServices
) -> Fork:
    """
    A dialog pbx answered (its ``invite`` came from extension ``number``)
    as the answered fork a callee's seat holds: a party pbx did not dial,
    moving there by a transfer.  Nothing drives it but the dialog; its
    INVITE names its Call-ID and ``started`` its start in the call records.
    """
    binding = Binding(aor=number, contact=str(dialog.remote_target), expires_at=0.0)
    fork = Fork(binding, invite, dialog.peer, dialog.address, started, services.sip)
    fork.dialog = dialog
    fork.final()  # answered: it takes no more responses
    return fork


def departing_record(call: Call, leg: str, cause: str, now: float) -> CallRecord | None:
    """
    The record of the party leaving ``leg``'s seat (answered, ended ``now``
    by ``cause``), with the call's linked id; None for an empty seat.
    """
    rows = call.record()  # the seated parties', then the departed's
    row = next((r for r in rows[: len(rows) - len(call.departed)] if r.leg == leg), None)
    if row is None:
        return None
    return evolve(row, end=now, disposition="ANSWERED", hangup_side=leg, hangup_cause=cause)


def records_detail(call: Call) -> dict[str, Any]:
    """
    What an event of a call whose parties changed (``transferred``,
    ``parked``, ``unparked``) says for the records: ``records``, as if the
    call ended now, and ``departed``, those of the parties that left.
    """
    return {"records": call.record(), "departed": call.departed}


def reinvite(
    sip: SIPSender, dialog: Dialog, offer: bytes, on_final: Callable[[Response], None]
) -> None:
    """
    Send a re-INVITE carrying ``offer`` in ``dialog``; ACK every 2xx, a
    retransmitted one again (RFC 3261 §13.2.2.4); ``on_final`` gets the
    first final response, once.
    """
    request = dialog.request("INVITE", body=offer, content_type="application/sdp")
    cseq = request.cseq.number
    done = False

    def answered(response: Response) -> None:
        nonlocal done
        if response.status < 200:
            return
        if response.status < 300:
            sip.send(ack_for_2xx(dialog, cseq), dialog.peer)
        if done:
            return
        done = True
        on_final(response)

    sip.request(request, dialog.peer, answered)


def resume_held(call: Call, leg: str, sip: SIPSender) -> None:
    """
    The party in ``leg``'s seat last agreed to a one-way or inactive
    stream (the party that left held it first, as phones do before an
    attended transfer): re-INVITE it with the other seat's SDP, sendrecv
    (RFC 3264 §8.4), so media flows both ways.  Its answer is taken;
    nothing goes to the other party.
    """
    media, other = call.media, OTHER[leg]
    sdp = media.answers.get(leg) or media.offers.get(leg)
    audio = (
        None
        if sdp is None
        else next((m for m in sdp.media if m.media == "audio" and m.port), None)
    )
    dialog = seat_dialog(call, leg)
    if (
        sdp is None
        or audio is None
        or dialog is None
        or direction(sdp, audio) == "sendrecv"
    ):
        return
    try:
        offer = media.offer_from(other, current_sdp(media, other).to_bytes())
    except MediaError as e:
        log.info(
            "call {call_id}: no offer to resume with: {e}", call_id=call.call_id, e=e
        )
        return

    def answered(response: Response) -> None:
        if response.status >= 300:
            return
        try:
            media.answer_from(leg, response.body)
        except MediaError as e:
            log.info(
                "call {call_id}: resuming answer unusable: {e}",
                call_id=call.call_id,
                e=e,
            )

    log.info("call {call_id}: resuming the held party", call_id=call.call_id)
    reinvite(sip, dialog, offer, answered)
