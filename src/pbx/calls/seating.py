"""
Who sits in each seat of a call, as its call records tell it, and the
linked id that every record of one conversation shares.

A :class:`~pbx.calls.call.Call`'s two seats change hands (see
:mod:`pbx.calls.seats`): a transfer target, a party from another call, the
retriever of a parked call sits where someone else sat.  Each party's
:class:`~pbx.records.CallRecord` covers its own time in the call: the
Call-ID of its dialog, when its INVITE started, and its ``answer``: when
it was connected to this call, not when the call was first answered.  The
original caller's and callee's come from the call itself; a party that
joins brings its own (:meth:`Seating.seat`), and a seat emptied by a
transfer or a park has no record until someone sits there again.

The linked id (Asterisk calls it *linkedid*) is the key of the call a
conversation began as.  It stays with the call whoever comes and goes; an
attended transfer that joins two calls into one gives both the older
call's (:meth:`Seating.link`), as a bridge takes the oldest linkedid of
its channels in Asterisk.
"""

from __future__ import annotations

from attrs import define, field, frozen

from pbx.calls.forks import Fork
from pbx.sip.dialog import Dialog


@frozen
class Occupant:
    """
    The party in one seat, as its record names it.

    :ivar call_id: the Call-ID of its dialog with pbx.
    :ivar start: when its INVITE started (for a party pbx rang, the ringing).
    :ivar answer: when it was connected to the call (None: not yet).
    """

    call_id: str
    start: float
    answer: float | None

    @classmethod
    def joining(cls, dialog: Dialog, fork: Fork | None, now: float) -> Occupant:
        """A party seated ``now``: pbx's ``fork`` (rung or adopted), or just its ``dialog``."""
        if fork is not None:
            return cls(fork.invite.call_id, fork.started, now)
        return cls(dialog.call_id, now, now)


@define(eq=False)
class Seating:
    """
    The seats of one call that changed hands, and its linked id.

    :ivar linked_id: shared by every record of the conversation.
    :ivar linked_since: when the conversation began (the older of two
        linked calls gives its id to both).
    """

    linked_id: str
    linked_since: float
    #: The parties that took a seat after the call was set up.
    _joined: dict[str, Occupant] = field(factory=dict)
    #: Seats left empty by a transfer or a park.
    _vacant: set[str] = field(factory=set)

    def vacate(self, leg: str) -> None:
        """The party in ``leg``'s seat left it (its record is made): the seat is empty."""
        self._joined.pop(leg, None)
        self._vacant.add(leg)

    def seat(self, leg: str, occupant: Occupant) -> None:
        """``occupant`` takes ``leg``'s seat."""
        self._vacant.discard(leg)
        self._joined[leg] = occupant

    def occupant(self, leg: str, original: Occupant) -> Occupant | None:
        """
        Who sits in ``leg``'s seat: a party that joined, else ``original``
        (the call's own caller or callee); None while the seat is empty.
        """
        if leg in self._vacant:
            return None
        return self._joined.get(leg, original)

    def link(self, other: Seating) -> None:
        """Two calls become one conversation: both keep the older one's linked id."""
        older = min((self, other), key=lambda s: (s.linked_since, s.linked_id))
        for seating in (self, other):
            seating.linked_id, seating.linked_since = older.linked_id, older.linked_since
