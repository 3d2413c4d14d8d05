"""
One page in progress: the pager, the member phones called with
auto-answer, and the one-way :class:`~pbx.media.mix.Mix` between them.

The pager is an ordinary member of the mix; every member phone (and the
multicast sender, if any) is a *muted* member.  The mix gives each member
the sum of everyone else, and muted members contribute nothing, so:

- a member phone hears the pager and only the pager (never another member);
- the pager hears the sum of muted members: silence.

Every member is called at once; one that is busy, does not answer, or is
not registered is skipped.  A member that answers joins the mix at once
(with a beep first, if the group wants one).  When the page ends (the
pager hangs up), every member still ringing is cancelled and every member
that answered gets BYE.

Nothing here waits: the ``paging`` application (:mod:`.app`) drives the
pager's channel.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from attrs import define, field

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.originated import Originated
from pbx.features.paging.multicast import MulticastSender
from pbx.features.paging.options import GroupOptions
from pbx.interfaces import IChannel
from pbx.media.mix import Mix

__all__ = ["Page", "page_mix"]

#: How long the beep before a page lasts (s).
BEEP = 0.25


def page_mix(pager: IChannel) -> Mix:
    """A mix at the pager's band: 16 kHz for a wideband pager, else 8 kHz."""
    return Mix(16000 if pager.rate > 8000 else 8000)


@define(eq=False)
class Page:
    """
    One page of a group.

    :param group: the group paged.
    :param pager: the channel of the call that pages (already in :attr:`mix`).
    :param mix: the page's mix.
    :param on_live: called once, when the page first reaches someone (a
        member answers, or the multicast stream starts).
    """

    group: GroupOptions
    pager: IChannel
    mix: Mix
    on_live: Callable[[], object] = lambda: None
    sender: MulticastSender | None = None
    #: The members that answered and are still on, by extension.
    members: dict[str, Originated] = field(factory=dict)
    #: Every member that answered at some point (the page's log line).
    reached: list[str] = field(factory=list)
    _ringing: dict[str, Deferred[Originated]] = field(factory=dict)
    _live: bool = False
    ended: bool = False
    log = Logger()

    def start_multicast(self, sender: MulticastSender) -> None:
        """Send the pager's audio to the group's multicast address too."""
        self.sender = sender
        sender.start(self.mix)
        self._went_live()

    def ring(
        self,
        originate: Callable[[str], Deferred[Originated]],
        busy: Collection[str] = (),
    ) -> Deferred[int]:
        """
        Call every member but the pager's own extension at once.

        :param originate: places the auto-answered leg to one extension.
        :param busy: extensions in a call now: skipped unless the group
            calls busy members too.
        :returns: a Deferred firing, once no member is ringing any more,
            with how many answered.
        """
        attempts = []
        for number in self.group.members:
            if number == self.pager.caller:
                continue
            if number in busy and not self.group.call_busy:
                self.log.info(
                    "page {group}: {member} skipped (in a call)",
                    group=self.group.name,
                    member=number,
                )
                continue
            try:
                d = originate(number)
            except Exception:
                self.log.failure(
                    "page {group}: calling {member} failed",
                    group=self.group.name,
                    member=number,
                )
                continue
            self._ringing[number] = d
            attempts.append(
                d.addCallbacks(
                    self._answered,
                    self._not_placed,
                    callbackArgs=(number,),
                    errbackArgs=(number,),
                )
            )
        done = DeferredList(attempts, consumeErrors=True)
        return done.addCallback(lambda _: len(self.reached))

    def _answered(self, result: Originated, number: str) -> None:
        self._ringing.pop(number, None)
        if result.outcome != "answered" or result.channel is None:
            self.log.info(
                "page {group}: {member} skipped ({outcome})",
                group=self.group.name,
                member=number,
                outcome=result.outcome,
            )
            return
        channel = result.channel
        if self.ended or channel.hung_up:
            result.hang_up()
            return
        channel.join(self.mix)
        # Members only listen (see the module's docstring).
        self.mix.set_muted(channel, True)
        self.members[number] = result
        self.reached.append(number)
        if result.ended is not None:
            result.ended.addCallback(self._left, number, result)
        if self.group.beep:
            _beep(channel)
        self._went_live()

    def _left(self, _: object, number: str, result: Originated) -> None:
        """A member hung up (or was hung up): it is out of the mix already."""
        if self.members.get(number) is result:
            del self.members[number]

    def _not_placed(self, failure: Failure, number: str) -> None:
        self._ringing.pop(number, None)
        if not failure.check(CancelledError):
            self.log.failure(
                "page {group}: calling {member} failed",
                failure,
                group=self.group.name,
                member=number,
            )

    def _went_live(self) -> None:
        if not self._live and not self.ended:
            self._live = True
            self.on_live()

    @property
    def reaches_anyone(self) -> bool:
        """Whether anyone hears the page now: a member on the line, or the multicast stream."""
        return bool(self.members) or self.sender is not None

    def end(self) -> None:
        """The page is over: stop ringing, hang up every member, stop the multicast stream."""
        if self.ended:
            return
        self.ended = True
        for d in list(self._ringing.values()):
            d.cancel()
        self._ringing.clear()
        for result in list(self.members.values()):
            result.hang_up()
        self.members.clear()
        if self.sender is not None:
            self.sender.stop()
        self.pager.leave()
        self.log.info(
            "page {group} by {pager} ended ({n} member(s) reached)",
            group=self.group.name,
            pager=self.pager.caller or "anonymous",
            n=len(self.reached),
        )


def _beep(channel: IChannel) -> None:
    """A beep to ``channel`` (heard instead of the mix while it plays); a channel already playing misses it."""
    try:
        channel.tone("beep", BEEP).addErrback(lambda _: None)
    except Exception:  # RuntimeError: playing already; HungUp: gone meanwhile
        return
