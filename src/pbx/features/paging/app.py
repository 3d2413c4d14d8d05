"""
The ``paging`` and ``intercom`` dialplan applications.

``paging``: a route names the group (``{app: paging, args: {group:
warehouse}}``), or the number dialled is a group's number (``{match:
"700", app: paging}``).  The pager's call is answered; every member phone
is called at once with auto-answer headers (:mod:`.autoanswer`) and
joins the page's one-way mix as it answers (:mod:`.page`); a group with a
multicast address also gets the pager's audio as RTP there
(:mod:`.multicast`).  The pager hears a beep once the page reaches
someone, then silence; a page that reaches nobody ends with a congestion
tone.  The page ends when the pager hangs up.

``intercom``: the number dialled is the intercom prefix and an extension
(``{match: "_*80X!", app: intercom}``); that extension is called with
auto-answer and bridged both ways with the caller.  Either side hanging
up ends the call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger

from pbx.calls.originated import Originated
from pbx.features.paging.autoanswer import auto_answer_headers
from pbx.features.paging.multicast import CODECS, MulticastSender, SendSocket
from pbx.features.paging.options import GroupOptions, PagingOptions
from pbx.features.paging.page import BEEP, Page, page_mix
from pbx.interfaces import IPBX, IChannel, IDialplanApplication
from pbx.media.channel import HungUp

__all__ = ["Intercom", "Paging"]

#: How long the pager of a page that reached nobody hears the congestion tone (s).
NOBODY_TONE = 2.0
#: How long an intercom caller hears the busy tone when the callee cannot be reached (s).
BUSY_TONE = 3.0

SocketFactory = Callable[[str, int, bool], SendSocket]


@implementer(IDialplanApplication)
class Paging:
    """
    The page group application.

    :param pbx: the PBX (it places the members' legs).
    :param options: the groups.
    :param sockets: makes the multicast sockets
        (:func:`~pbx.features.paging.multicast.multicast_socket`).
    """

    name = "paging"
    log = Logger()

    def __init__(
        self, pbx: IPBX, options: PagingOptions, sockets: SocketFactory
    ) -> None:
        self.pbx = pbx
        self.options = options
        self.sockets = sockets
        #: The pages in progress, by the pager's channel.
        self.pages: dict[IChannel, Page] = {}

    def run(self, channel: IChannel, args: Any) -> Deferred[None]:
        """Page the group until the pager hangs up."""
        return Deferred.fromCoroutine(self._run(channel, args))

    def group_of(self, channel: IChannel, args: Any) -> GroupOptions | None:
        """The group a route names (``args: {group: NAME}``), else the group of the number dialled."""
        name = args.get("group") if isinstance(args, dict) else None
        if name is not None:
            return self.options.groups.get(str(name))
        return self.options.group_by_number(channel.callee)

    async def _run(self, channel: IChannel, args: Any) -> None:
        await channel.answer()
        group = self.group_of(channel, args)
        refusal = self._refusal(channel, group)
        if refusal or group is None:
            try:
                await channel.play(refusal)
            except HungUp:
                return
            await channel.hangup()
            return
        page = Page(
            group,
            channel,
            page_mix(channel),
            on_live=lambda: _tone(channel, "beep", BEEP),
        )
        self.pages[channel] = page
        try:
            channel.join(page.mix)
            self.log.info(
                "page {group} by {pager}: calling {n} member(s)",
                group=group.name,
                pager=channel.caller or "anonymous",
                n=len(group.members),
            )
            if group.multicast is not None:
                self._multicast(page, group)
            headers = auto_answer_headers(group.auto_answer, self.pbx.config.sip.domain)
            shown = channel.caller_name or f"Page {group.name}"

            def originate(number: str) -> Deferred[Originated]:
                return self.pbx.originate(
                    number,
                    caller=channel.caller or group.number,
                    caller_name=shown,
                    timeout=self.options.ring_timeout,
                    headers=headers,
                )

            page.ring(originate, busy=self.in_a_call()).addCallback(self._rung, page)
            await channel.wait_for_hangup()
        except HungUp:
            pass
        finally:
            page.end()
            self.pages.pop(channel, None)

    def _refusal(self, channel: IChannel, group: GroupOptions | None) -> list[str]:
        """What a caller who may not page hears (no such group, not one of its pagers); [] for a pager."""
        if group is None:
            self.log.warn("paging: no group for {number!r}", number=channel.callee)
            return ["general/invalid-number", "general/goodbye"]
        if group.pagers and channel.caller not in group.pagers:
            self.log.warn(
                "page {group}: {caller} may not page it",
                group=group.name,
                caller=channel.caller or "anonymous",
            )
            return ["general/not-available", "general/goodbye"]
        return []

    def in_a_call(self) -> set[str]:
        """The extensions on an answered call now, either side (a page's member legs included)."""
        busy: set[str] = set()
        for call in self.pbx.live_calls():
            if call.get("answered") is not None and call.get("state") != "ended":
                busy.update(str(call.get(side) or "") for side in ("caller", "callee"))
        busy.discard("")
        return busy

    def _multicast(self, page: Page, group: GroupOptions) -> None:
        """Start the group's multicast stream; a socket or codec that fails leaves the page without it."""
        assert group.multicast is not None
        try:
            sock = self.sockets(
                self.options.multicast_interface,
                self.options.multicast_ttl,
                self.options.multicast_loop,
            )
        except OSError as e:
            self.log.error(
                "page {group}: no multicast to {address}: {error}",
                group=group.name,
                address=group.multicast[0],
                error=str(e),
            )
            return
        try:
            sender = MulticastSender(
                self.pbx.clock, group.multicast, CODECS[group.codec](), sock
            )
        except Exception as e:
            sock.close()
            self.log.error(
                "page {group}: no multicast in {codec}: {error}",
                group=group.name,
                codec=group.codec,
                error=str(e),
            )
            return
        page.start_multicast(sender)

    def _rung(self, answered: int, page: Page) -> None:
        """Ringing is over: a page that reached nobody tells the pager so and ends."""
        if page.ended or page.reaches_anyone:
            return
        self.log.info("page {group}: no member answered", group=page.group.name)
        Deferred.fromCoroutine(_refuse(page.pager, "congestion", NOBODY_TONE))


@implementer(IDialplanApplication)
class Intercom:
    """
    The intercom application: one extension, auto-answered, two-way.

    :param pbx: the PBX (it places the callee's leg).
    :param options: the prefix, auto-answer styles and ring timeout.
    """

    name = "intercom"
    log = Logger()

    def __init__(self, pbx: IPBX, options: PagingOptions) -> None:
        self.pbx = pbx
        self.options = options

    def run(self, channel: IChannel, args: Any) -> Deferred[None]:
        """Call the extension after the prefix and connect the two until one hangs up."""
        return Deferred.fromCoroutine(self._run(channel, args))

    def target(self, channel: IChannel, args: Any) -> str:
        """The extension called: a route's ``args: {extension: N}``, else the number dialled after the prefix."""
        if isinstance(args, dict) and args.get("extension") is not None:
            return str(args["extension"])
        prefix = self.options.intercom_prefix
        dialled = channel.callee
        return dialled[len(prefix) :] if dialled.startswith(prefix) else ""

    async def _run(self, channel: IChannel, args: Any) -> None:
        await channel.answer()
        try:
            await self._call(channel, self.target(channel, args))
        except HungUp:
            return
        if not channel.hung_up:
            await channel.hangup()

    async def _call(self, channel: IChannel, number: str) -> None:
        if not number.isdigit() or number == channel.caller:
            self.log.info(
                "intercom: {caller} dialled {dialled!r}: no extension",
                caller=channel.caller,
                dialled=channel.callee,
            )
            await channel.play(["general/invalid-number", "general/goodbye"])
            return
        headers = auto_answer_headers(
            self.options.auto_answer, self.pbx.config.sip.domain
        )
        ringing = self.pbx.originate(
            number,
            caller=channel.caller,
            caller_name=channel.caller_name,
            timeout=self.options.ring_timeout,
            headers=headers,
        )
        _tone(channel, "ringback", self.options.ring_timeout)
        results: list[Originated] = []
        ringing.addCallbacks(results.append, lambda f: f.trap(CancelledError))
        first = await _first(ringing, channel.wait_for_hangup())
        if first == 1 or channel.hung_up:
            ringing.cancel()
            if results and results[0].outcome == "answered":
                results[0].hang_up()
            return
        channel.stop_playing()
        result = results[0] if results else Originated("failed")
        if result.outcome != "answered" or result.channel is None:
            self.log.info(
                "intercom {caller} -> {callee}: {outcome}",
                caller=channel.caller,
                callee=number,
                outcome=result.outcome,
            )
            await channel.tone("busy", BUSY_TONE)
            return
        other = result.channel
        self.log.info(
            "intercom {caller} -> {callee}: connected",
            caller=channel.caller,
            callee=number,
        )
        _tone(other, "beep", BEEP)
        channel.bridge(other)
        ended = result.ended if result.ended is not None else other.wait_for_hangup()
        try:
            await _first(ended, channel.wait_for_hangup())
        finally:
            channel.unbridge()
            if not other.hung_up:
                result.hang_up()


def _tone(channel: IChannel, kind: str, seconds: float) -> None:
    """Play a tone without waiting; a channel already playing or gone misses it."""
    try:
        channel.tone(kind, seconds).addErrback(lambda _: None)
    except Exception:  # RuntimeError: playing already; HungUp: gone meanwhile
        return


async def _refuse(channel: IChannel, tone: str, seconds: float) -> None:
    """A tone, then hang up (the caller may hang up first)."""
    try:
        channel.stop_playing()
        await channel.tone(tone, seconds)
        await channel.hangup()
    except HungUp:
        return


def _first(*waits: Deferred[Any]) -> Deferred[int]:
    """
    Fires with the index of the first of ``waits`` to fire; their results
    are left as they were for whoever else waits on them.
    """
    first: Deferred[int] = Deferred()

    def fired(result: object, index: int) -> object:
        if not first.called:
            first.callback(index)
        return result

    for index, wait in enumerate(waits):
        wait.addBoth(fired, index)
    return first
