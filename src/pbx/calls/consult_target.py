"""
The third party of a consultation or a three-way call made by keys
(:mod:`pbx.calls.consult`): where the keyed number goes, and its leg.

Where it goes is decided as for a number the transferor dialled: the
dialplan first (a refusal it names is the answer), an extension's
unconditional forwarding and DND (:meth:`Routing.resolve_target
<pbx.calls.routing.Routing.resolve_target>`), and an outside number
through a trunk with the transferor's calling permissions, as a blind
transfer does (:attr:`pbx.calls.transfer.Transfers.outside`): a party on an
outside line may not key one out again unless ``transfer.outside_keyed``
says so (toll fraud).  Applications and ring groups are not called yet
(501).

The leg is pbx's own, as the UAC: its phones ring from the transferor, and
its media is anchored on a relay session of its own whose other side
nobody takes (held: the relay sends nothing there).  Only pbx hears the
target, through that session's tap (:class:`~pbx.calls.tap.CallTap`), and
only pbx speaks to it (:mod:`pbx.media.huddle`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from attrs import define, field, frozen

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls import dialplan as plan
from pbx.calls.forks import Fork, Forks, Rung, Verdict
from pbx.calls.media import CallMedia, MediaError
from pbx.calls.routing import Routing
from pbx.calls.signalling import LegServices
from pbx.calls.tap import CallTap
from pbx.calls.transfer import OutsideRoute, OutsideTarget
from pbx.interfaces import ICodec
from pbx.records import Binding
from pbx.sip.dialog import Dialog, LocalAddress, new_invite
from pbx.sip.message import Request, Response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.uri import parse_uri


@frozen
class Target:
    """
    Where a keyed number rings.

    :ivar number: the extension (after forwarding) or the outside number.
    :ivar bindings: its phones, or the trunk's one target.
    :ivar out: the trunk an outside number rings through.
    """

    number: str
    bindings: list[Binding]
    out: OutsideTarget | None = None


@define(eq=False)
class TargetFinder:
    """
    Finds where numbers keyed by a party ring (see the module docstring).

    :ivar outside_allowed: whether the keying party may reach an outside number.
    """

    dialplan: Callable[[str], plan.Action | None]
    routing: Routing
    outside: OutsideRoute | None

    async def find(self, number: str, who: str, outside_allowed: bool) -> Target | int:
        """Where ``number``, keyed by extension ``who``, rings; or the status refusing it."""
        action = self.dialplan(number)
        if isinstance(action, plan.HangUp):
            return action.status
        if isinstance(action, plan.ToTrunks):
            if self.outside is None:
                return 404
            if not outside_allowed:
                return 403
            out = await self.outside(who, number, action)
            return out[0] if isinstance(out, tuple) else Target(number, [out.binding], out)
        if isinstance(action, plan.ToApplication | plan.ToGroup):
            return 501
        if isinstance(action, plan.ToExtension):
            number = action.number
        number, record, refuse = await self.routing.resolve_target(number, {who})
        if record is None or refuse:
            return refuse or 404
        bindings = self.routing.contacts(number)
        return Target(number, bindings) if bindings else 480


@define(eq=False)
class TargetLeg:
    """
    The third party's leg, from ringing to hanging up (see the module docstring).

    :ivar outcome: fires with how ringing ended.
    :ivar fork: the phone that answered.
    """

    services: LegServices
    relay: Any
    media: CallMedia
    codecs: Mapping[str, ICodec]
    target: Target
    caller: str
    outcome: Deferred[Rung] = field(init=False)
    fork: Fork | None = field(init=False, default=None)
    #: Whether the target's dialog is still ours (it hung up, or moved into the call).
    _own_dialog: bool = field(init=False, default=False)
    _forks: Forks | None = field(init=False, default=None)
    _closed: bool = field(init=False, default=False)
    log = Logger()

    @classmethod
    def ring(
        cls, services: LegServices, relay: Any, address: str, codecs: Mapping[str, ICodec],
        target: Target, caller: str, sdp: bytes, timeout: float,
    ) -> TargetLeg:
        """
        Open the leg's relay session and ring ``target`` from extension
        ``caller`` with an offer made from ``sdp`` (the codec in use, and ours).

        :raises MediaError: ``sdp`` cannot be offered.
        """
        session = relay.open_session()
        leg = cls(services, relay, CallMedia(session, address, available=dict(codecs)), codecs, target, caller)
        try:
            offer = leg.media.offer_from("a", sdp)
        except MediaError:
            leg.close()
            raise
        session.hold("a")  # nobody sits on the other side (see the module docstring)
        leg._start(offer, timeout)
        return leg

    def _start(self, offer: bytes, timeout: float) -> None:
        out, domain, caller = self.target.out, self.services.domain, self.caller
        body, content_type = out.body(offer) if out is not None else (offer, "application/sdp")
        shown = out.from_ if out is not None else f"<sip:{caller}@{domain}>"
        to = out.to if out is not None else f"<sip:{self.target.number}@{domain}>"
        more = list(out.headers) if out is not None else []

        def invite(binding: Binding, address: LocalAddress) -> Request:
            made = new_invite(target=parse_uri(binding.contact), to=to, from_=shown, address=address,
                              body=body, contact_user=caller, extra=[("P-Asserted-Identity", shown), *more])
            if content_type != "application/sdp":
                made.headers.set("Content-Type", content_type)
            return made

        self._forks = Forks(
            out.services if out is not None else self.services,
            on_provisional=lambda fork, response: None,
            on_answer=self._answer,
            contact_user=caller,
            timers=NamedTimers(self.services.clock),
            on_challenge=out.on_challenge if out is not None else None,
        )
        self.outcome = self._forks.ring(self.target.bindings, invite, timeout)
        self.outcome.addCallback(self._rung)

    def _answer(self, fork: Fork, response: Response) -> Verdict:
        """A phone of the target answered: its SDP is the session's ``b`` side."""
        if self._closed:
            return Verdict.DECLINE
        try:
            self.media.answer_from("b", response.body)
        except MediaError as e:
            self.log.info("the consulted party's answer is unusable: {e}", e=e)
            return Verdict.DECLINE
        return Verdict.ACCEPT

    def _rung(self, rung: Rung) -> Rung:
        if rung.fork is not None and rung.fork.dialog is not None:
            self.fork = rung.fork
            self._own_dialog = True
        return rung

    @property
    def dialog(self) -> Dialog | None:
        """The answered target's dialog while it is this leg's."""
        return self.fork.dialog if self.fork is not None and self._own_dialog else None

    def tap(self) -> CallTap:
        """The target's media as the huddle hears and feeds it (leg ``b``)."""
        return CallTap("", self.caller, self.target.number, self.media, self.codecs)

    def released(self) -> Dialog | None:
        """The target's dialog leaves this leg (it hung up, or it moves into the call): no BYE from here."""
        dialog, self._own_dialog = self.dialog, False
        if dialog is not None:
            self.services.dialogs.discard(dialog)
        return dialog

    def hang_up(self) -> None:
        """Stop ringing (CANCEL), or BYE an answered target."""
        dialog = self.released()
        if dialog is not None:
            self.services.sip.in_dialog(dialog, "BYE")
        elif self._forks is not None:
            self._forks.cancel()

    def close(self, keep_trunk: bool = False) -> None:
        """The leg is over (or moved): its relay session closes; its trunk has room again unless kept."""
        if self._closed:
            return
        self._closed = True
        self.relay.close(self.media.session)
        out = self.target.out
        if out is not None and not keep_trunk:
            out.release()
