"""
In-call consultation by keys, for phones without a transfer key: attended
transfer (``transfer.attended_code``, ``*2``) and a three-way call
(``transfer.three_way_code``, ``*3``), each followed by a number, as a
business PBX user expects of Asterisk's ``*2`` or 3CX's three-way.

Who is who.  The party that keys (the *transferor*) is in a seat of a
relayed two-party :class:`~pbx.calls.call.Call`; the other party in it is
the *transferee*; the number keyed is the *target*, which pbx calls from
the transferor (:mod:`pbx.calls.consult_target`: the same resolution as a
dialled number, outside numbers with the transferor's permissions) on a
relay session of its own.  Nobody is re-INVITEd to consult: the parties'
media stays where it is, and pbx mixes or feeds what each one hears
(:class:`~pbx.media.huddle.Huddle`).

Attended (``*2``).  The transferee is put on hold by pbx and hears the
transferor's music on hold (:class:`~pbx.calls.hold.LocalHold`, as when a
phone holds; silence without music); the transferor hears ringback, then
talks privately with the target.  Then:

- the transferor hangs up: the target takes the transferor's seat (it is
  re-INVITEd onto that seat's relay port with the transferee's SDP, as an
  attended transfer with Replaces does, :mod:`pbx.calls.attended`), and the
  call is the transferee's with the target;
- the transferor keys ``transfer.cancel_code`` (``*``), or the target hangs
  up: the transferor is back with the transferee;
- the target is busy, unknown, refused or does not answer: the transferor
  hears a busy (or, for anything else, congestion) tone for
  :data:`REFUSAL_TONE` seconds, then is back (the code again ends the tone).

A transferor who hangs up while the target still rings leaves the
transferee waiting (music): the target answering takes the seat, a target
that does not answer ends the call.  A transferee who hangs up leaves its
seat to the target in the same way: the transferor and the target stay.

Three-way (``*3``).  The same, except that once the target answers all
three are mixed: each hears the other two.  Any party hanging up leaves
the other two in a plain two-party call (a party of the call that leaves
gives its seat to the target, as above; the target leaving just ends the
mix); the transferor's cancel code drops the target.

While a consultation is under way the transferor's keys are watched for
the cancel code only, and the transferee's for nothing.  The transfer is
published as a ``transferred`` call event (``how``: ``attended`` or
``three-way``) when the target takes a seat.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from attrs import define, field, frozen

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.call import Call
from pbx.calls.consult_target import Target, TargetFinder, TargetLeg
from pbx.calls.events import CallEvent, CallEvents
from pbx.calls.feature_codes import CodeWatch
from pbx.calls.forks import BUSY, Outcome, Rung
from pbx.calls.hold import LocalHold
from pbx.calls.machine import IGNORED, build
from pbx.calls.media import OTHER, MediaError
from pbx.calls.reinvite import ReinviteAnswers
from pbx.calls.routing import Routing
from pbx.calls.seats import (
    current_sdp,
    departing_record,
    party_number,
    reinvite,
    resume_held,
)
from pbx.calls.signalling import LegServices
from pbx.calls.tap import CallTap
from pbx.calls.transfer import OutsideRoute
from pbx.config import TransferConfig
from pbx.interfaces import ICodec
from pbx.media.huddle import Huddle
from pbx.media.leg_audio import NoAudio
from pbx.media.media_clock import MediaClock
from pbx.media.playout import HoldMusic
from pbx.sip.dialog import Dialog
from pbx.sip.message import Request, Response, make_response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ServerTransaction

#: Seconds the transferor hears why the target cannot be reached.
REFUSAL_TONE = 3.0
ATTENDED, THREE_WAY = "attended", "three-way"
#: The huddle's places.
TRANSFEROR, TRANSFEREE, TARGET = "transferor", "transferee", "target"


class _Inputs(Protocol):
    """What happens to one consultation."""

    def ring(self, leg: TargetLeg) -> None:
        """The target was found and rings."""

    def refused(self, status: int) -> None:
        """The target cannot be called (or did not answer, or failed)."""

    def answered(self) -> None:
        """The target answered, both parties of the call still there."""

    def answered_alone(self) -> None:
        """The target answered; a party of the call has left its seat to it."""

    def failed_alone(self) -> None:
        """The target did not answer, and a party of the call has left."""

    def cancel(self) -> None:
        """The transferor keyed the cancel code."""

    def target_left(self) -> None:
        """The target hung up."""

    def party_left(self, leg: str) -> None:
        """A party of the call hung up (its BYE is answered)."""

    def joined(self) -> None:
        """The target took the empty seat."""

    def join_failed(self) -> None:
        """The target could not be moved into the call."""

    def done(self) -> None:
        """The refusal tone is over."""

    def ended(self) -> None:
        """The call ended."""


#: One consultation, whole: (from, input, to, actions).  The usual paths first.
TABLE = [
    (["finding"], "ring", "ringing", ["_ringing"]),
    (["finding", "ringing"], "refused", "refusing", ["_drop_target", "_refuse"]),
    (["ringing"], "answered", "talking", ["_talk"]),
    (["talking"], "party_left", "joining", ["_vacate", "_join"]),
    (["joining"], "joined", "over", ["_finish", "_seat"]),
    (["talking"], "cancel", "over", ["_finish", "_drop_target", "_back"]),
    (["talking"], "target_left", "over", ["_finish", "_back"]),
    (["refusing"], "done", "over", ["_finish", "_back"]),
    (["refusing"], "cancel", "over", ["_finish", "_back"]),
    (["finding", "ringing"], "cancel", "over", ["_finish", "_drop_target", "_back"]),
    (["ringing"], "party_left", "ringing", ["_vacate"]),
    (["ringing"], "answered_alone", "joining", ["_join"]),
    (["ringing"], "failed_alone", "over", ["_finish", "_drop_target", "_end_call"]),
    (["joining"], "join_failed", "over", ["_finish", "_drop_target", "_end_call"]),
    (["joining"], "target_left", "over", ["_finish", "_end_call"]),
    (["finding", "ringing", "talking", "joining", "refusing"], "ended", "over",
     ["_finish", "_drop_target", "_close"]),
]


@frozen
class InCallMedia:
    """
    What a consultation needs of pbx's media, read when it starts.

    :ivar codecs: the codecs pbx decodes and encodes, by lower-case name (none: no consultation).
    :ivar clock: the shared 20 ms media clock.
    :ivar music: music on hold, if any.
    """

    codecs: Callable[[], Mapping[str, ICodec]]
    clock: Callable[[], MediaClock]
    music: Callable[[], HoldMusic | None]


@define(eq=False)
class Consult:
    """
    One consultation or three-way call of one call (see the module docstring).

    :ivar state: ``finding``, ``ringing``, ``talking``, ``joining``,
        ``refusing`` or ``over`` (:data:`TABLE`).
    :ivar left: the seat a party of the call left to the target, if any.
    """

    call: Call
    transferor: str  # the seat
    who: str  # the transferor's number
    mode: str
    number: str
    services: LegServices
    events: CallEvents
    huddle: Huddle
    moh: LocalHold | None
    codecs: Mapping[str, ICodec]
    on_over: Callable[[Consult], None]
    state: str = "finding"
    left: str = ""
    target: TargetLeg | None = None
    #: Releases the trunk of an outside target that took a seat (when the call ends).
    kept_trunk: Callable[[], None] | None = None
    _inputs: Any = None
    _watch: CodeWatch | None = None
    _timers: NamedTimers = field(init=False)
    _answers: ReinviteAnswers = field(init=False)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self._timers = NamedTimers(self.services.clock)
        self._answers = ReinviteAnswers(self.services.sip, self._timers)
        self._inputs = _MACHINE(self)

    @property
    def transferee(self) -> str:
        """The other seat of the call."""
        return OTHER[self.transferor]

    def inputs(self) -> _Inputs:
        """The machine's inputs (nothing once over)."""
        return self._inputs  # type: ignore[no-any-return]

    def watch(self, cancel_code: str) -> None:
        """The transferor's keys are watched for ``cancel_code``."""
        # The watch only names the code; cancelling is ours (:meth:`key`), so
        # the watch holds no callback back to us (no reference cycle).
        self._watch = CodeWatch({cancel_code: None})

    def key(self, leg: str, key: str) -> None:
        """A key of a party of the call: only the transferor's cancel code counts."""
        if leg == self.transferor and self._watch is not None and self._watch.key(key) is not None:
            self._inputs.cancel()

    def place(self, leg: str) -> str:
        """The huddle's name of the party in ``leg``'s seat."""
        return TRANSFEROR if leg == self.transferor else TRANSFEREE

    # -- actions ---------------------------------------------------------------

    def _ringing(self, leg: TargetLeg) -> None:
        self.target = leg
        leg.outcome.addCallback(self._rung).addErrback(
            lambda f: self.log.failure("consultation of {call_id}", f, call_id=self.call.call_id))

    def _rung(self, rung: Rung) -> None:
        answered = rung.outcome is Outcome.ANSWERED and self.target is not None and self.target.dialog is not None
        if answered and self.state != "ringing":
            self._drop_target()  # answered as the consultation ended: hung up at once
            return
        if answered:
            assert self.target is not None and self.target.dialog is not None
            self.services.dialogs.add(self, self.target.dialog)
        if self.left:
            (self._inputs.answered_alone if answered else self._inputs.failed_alone)()
        elif answered:
            self._inputs.answered()
        else:
            self._inputs.refused(rung.status)

    def _refuse(self, status: int) -> None:
        self.log.info("call {call_id}: {number} cannot be consulted: {status}", call_id=self.call.call_id,
                      number=self.number, status=status)
        self.huddle.tone(TRANSFEROR, self.tap(), self.transferor, "busy" if status in BUSY else "congestion")
        self._timers.start("refusal", REFUSAL_TONE, lambda: self._inputs.done())

    def _talk(self) -> None:
        assert self.target is not None
        self.huddle.talk(TRANSFEROR, self.tap(), self.transferor)
        self.huddle.talk(TARGET, self.target.tap(), "b")
        if self.mode == THREE_WAY:
            self._release_hold()
            self.huddle.talk(TRANSFEREE, self.tap(), self.transferee)

    def _vacate(self, leg: str) -> None:
        """``leg``'s party hung up: its seat waits for the target."""
        self.left = leg
        self.huddle.leave(self.place(leg))
        why = f"transferred to {self.number}" if leg == self.transferor else f"left for {self.number}"
        now = self.services.clock.seconds()
        self.call.vacate(leg, departing_record(self.call, leg, why, now))

    def _join(self, *_: object) -> None:
        """Re-INVITE the target onto the empty seat's relay port, with the staying party's SDP."""
        assert self.target is not None and self.target.dialog is not None
        call, stay = self.call, OTHER[self.left]
        try:
            offer = call.media.offer_from(stay, current_sdp(call.media, stay).to_bytes())
        except MediaError as e:
            self.log.info("call {call_id}: the target cannot join: {e}", call_id=call.call_id, e=e)
            self._inputs.join_failed()
            return

        def answered(response: Response) -> None:
            if response.status >= 300 or call.state == "ended":
                self._inputs.join_failed()
                return
            try:
                call.media.answer_from(self.left, response.body)
            except MediaError as e:
                self.log.info("call {call_id}: the target's answer is unusable: {e}", call_id=call.call_id, e=e)
                self._inputs.join_failed()
                return
            self._inputs.joined()

        reinvite(self.services.sip, self.target.dialog, offer, answered)

    def _seat(self) -> None:
        assert self.target is not None and self.target.fork is not None
        call, leg, target = self.call, self.left, self.target
        fork = target.fork
        dialog = target.released()
        if target.target.out is not None:
            self.kept_trunk = target.target.out.release
        self._close(keep_trunk=True)
        assert dialog is not None and fork is not None
        call.seat(leg, dialog, fork if leg == "b" else None)
        if leg == "a":
            call.caller = self.number
        else:
            call.callee = self.number
        resume_held(call, OTHER[leg], self.services.sip)
        self.log.info("call {call_id}: {number} took the seat of {who}", call_id=call.call_id,
                      number=self.number, who=self.place(leg))
        self.events.announce("transferred", call, self.services.clock.seconds(), leg, how=self.mode,
                             call_id=call.call_id, transferor=self.who, target=self.number, target_call_id=fork.invite.call_id)

    def _back(self) -> None:
        self.log.info("call {call_id}: back from consulting {number}", call_id=self.call.call_id,
                      number=self.number)
        self._close()

    def _drop_target(self, *_: object) -> None:
        if self.target is not None:
            self.target.hang_up()

    def _end_call(self) -> None:
        self._close()
        self.call.hang_up("pbx", f"{self.number} did not join")

    def _finish(self) -> None:
        self._inputs = IGNORED  # over: every later input is ignored (TABLE)
        self._timers.stop("refusal")

    def _close(self, keep_trunk: bool = False) -> None:
        """Everyone hears the call as before (or it has ended); the target's leg closes."""
        self.huddle.stop()
        self._release_hold()
        self._timers.stop_all()
        if self.target is not None:
            self.target.released()
            self.target.close(keep_trunk)
        self.on_over(self)

    def _release_hold(self) -> None:
        if self.moh is not None:
            self.moh.release(self.transferor)

    def tap(self) -> CallTap:
        """The call's media as the huddle hears and feeds it."""
        return CallTap(self.call.call_id, self.call.caller, self.call.callee, self.call.media, self.codecs)

    # -- the target's dialog (the dialog table's owner) -------------------------------

    def leg_of(self, dialog: Dialog) -> str:
        """The target's dialog is the only one this owns."""
        return TARGET

    def hang_up(self, leg: str, cause: str) -> None:
        """The target sent BYE (answered already)."""
        if self.target is not None:
            self.target.released()
        self._inputs.target_left()

    def reoffer(self, leg: str, transaction: ServerTransaction) -> None:
        """The target's re-INVITE or UPDATE: answered here with the codec in use, or 488."""
        request = transaction.request
        media = self.target.media if self.target is not None else None
        try:
            if media is None or not request.body:
                raise MediaError("no offer")
            body = media.answer_here("b", media.parse(request.body), media.agreed.get("b") or [])
        except MediaError:
            transaction.respond(make_response(request, 488))
            return
        ok = make_response(request, 200)
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = body
        if self.target is not None and self.target.dialog is not None:
            ok.headers.add("Contact", self.target.dialog.contact())
        self._answers.respond(transaction, ok)

    def info(self, leg: str, transaction: ServerTransaction) -> None:
        """The target's keys go nowhere."""
        transaction.respond(make_response(transaction.request, 200))

    def acked(self, ack: Request) -> None:
        """The ACK of a 2xx to the target's re-INVITE."""
        self._answers.acked(ack)


_MACHINE = build(_Inputs, Consult, ["finding", "ringing", "talking", "joining", "refusing", "over"], TABLE)


@define(eq=False)
class Consults:
    """
    The consultations and three-way calls of every call, started by keys
    (see the module docstring); :class:`pbx.calls.transfer.Transfers` hands
    it the keys and the hang-ups of relayed calls.

    :ivar media: pbx's codecs, media clock and music (no codecs: the codes do nothing).
    """

    services: LegServices
    routing: Routing
    events: CallEvents
    relay: Any
    media_address: str
    media: InCallMedia
    #: The codes (``attended_code``, ``three_way_code``, ``cancel_code``) and ``outside_keyed``.
    settings: TransferConfig
    dialplan: Callable[[str], Any] = lambda number: None
    ring_timeout: float = 30.0
    outside: OutsideRoute | None = None
    outside_party: Callable[[Call, str], bool] = lambda call, leg: False
    _consults: dict[str, Consult] = field(init=False, factory=dict)
    _trunk_seats: dict[str, Callable[[], None]] = field(init=False, factory=dict)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.events.subscribe(self._ended, kinds=("ended",))

    @property
    def active(self) -> int:
        """How many consultations are under way."""
        return len(self._consults)

    def codes(self, call: Call, leg: str) -> dict[str, Callable[[str], None]]:
        """The codes ``leg``'s party may key in ``call``, each with what its number starts."""
        return {
            self.settings.attended_code: lambda number: self.start(call, leg, number, ATTENDED),
            self.settings.three_way_code: lambda number: self.start(call, leg, number, THREE_WAY),
        }

    def key(self, call: Call, leg: str, key: str) -> bool:
        """A key of ``leg``'s party: True when a consultation of the call takes it (no other code counts)."""
        consult = self._consults.get(call.call_id)
        if consult is None:
            return False
        consult.key(leg, key)
        return True

    def leaving(self, call: Call, leg: str) -> bool:
        """
        ``leg``'s party of ``call`` sent BYE: True when its seat waits for the
        target (the call goes on); False for an ordinary hang-up.
        """
        consult = self._consults.get(call.call_id)
        if consult is None or consult.left or consult.state not in ("ringing", "talking"):
            return False
        consult.inputs().party_left(leg)
        return True

    def start(self, call: Call, leg: str, number: str, mode: str) -> None:
        """``leg``'s party keyed ``mode``'s code and ``number``: put the other party aside and call it."""
        codecs = self.media.codecs()
        if call.state != "confirmed" or call.call_id in self._consults or not codecs:
            return
        if call.media.transcoding:
            self.log.info("call {call_id}: a transcoded call is not consulted from", call_id=call.call_id)
            return
        music = self.media.music()
        moh = None if music is None else LocalHold(call.media, music, lambda seat: party_number(call, seat))
        consult = Consult(call, leg, party_number(call, leg), mode, number, self.services, self.events, Huddle(self.media.clock()), moh,
                          codecs, self._over)
        consult.watch(self.settings.cancel_code)
        tap = consult.tap()
        try:
            consult.huddle.tone(TRANSFEROR, tap, leg, "ringback")
            if moh is None:
                consult.huddle.tone(TRANSFEREE, tap, OTHER[leg], None)
        except NoAudio:
            consult.huddle.stop()
            self.log.info("call {call_id}: no codec of ours to consult with", call_id=call.call_id)
            return
        if moh is not None:
            moh.holding[leg] = True  # the transferee hears the transferor's music, as when a phone holds
            moh.refresh()
        self._consults[call.call_id] = consult
        self.log.info("call {call_id}: {who} keyed {mode} {number}", call_id=call.call_id,
                      who=party_number(call, leg), mode=mode, number=number)
        Deferred.fromCoroutine(self._find(consult)).addErrback(self._find_failed, consult)

    def _find_failed(self, failure: Failure, consult: Consult) -> None:
        self.log.failure("consulting {number} failed", failure, number=consult.number)
        consult.inputs().refused(500)

    async def _find(self, consult: Consult) -> None:
        call, leg = consult.call, consult.transferor
        allowed = self.settings.outside_keyed or not self.outside_party(call, leg)
        finder = TargetFinder(self.dialplan, self.routing, self.outside)
        found = await finder.find(consult.number, party_number(call, leg), allowed)
        if consult.state != "finding":
            if isinstance(found, Target) and found.out is not None:
                found.out.release()
            return
        if isinstance(found, int):
            consult.inputs().refused(found)
            return
        try:
            sdp = current_sdp(call.media, leg).to_bytes()
            target = TargetLeg.ring(self.services, self.relay, self.media_address, consult.codecs, found,
                                    party_number(call, leg), sdp, self.ring_timeout)
        except (MediaError, OSError) as e:
            if found.out is not None:
                found.out.release()
            self.log.info("call {call_id}: cannot consult: {e}", call_id=call.call_id, e=e)
            consult.inputs().refused(488)
            return
        consult.inputs().ring(target)

    def _over(self, consult: Consult) -> None:
        if self._consults.get(consult.call.call_id) is consult:
            del self._consults[consult.call.call_id]
        if consult.kept_trunk is not None:
            self._trunk_seats[consult.call.call_id] = consult.kept_trunk

    def _ended(self, event: CallEvent) -> None:
        """A call ended: its consultation stops; a trunk seated by one has room again."""
        release = self._trunk_seats.pop(event.call_id, None)
        if release is not None:
            release()
        consult = self._consults.get(event.call_id)
        if consult is not None:
            consult.inputs().ended()
