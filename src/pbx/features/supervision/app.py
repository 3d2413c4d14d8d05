"""
The ``supervise`` dialplan application: a supervisor dials a code and an
extension (``*33`` 1001: listen, ``*34``: whisper, ``*35``: barge) and
joins that extension's live call until either hangs up.

While supervising, keys change the mode: ``3`` listen, ``4`` whisper,
``5`` barge (the last key of each default code).  A supervisor the
configuration does not allow over the extension, or an extension with no
answered call pbx relays, hears a refusal and is hung up.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.features.supervision.desk import NoCall, NotAllowed, Supervision
from pbx.features.supervision.monitor import Monitor, NoAudio
from pbx.features.supervision.options import MODES
from pbx.interfaces import IPBX, IChannel, IDialplanApplication
from pbx.media.channel import HungUp

__all__ = ["KEYS", "Supervise"]

#: The key that switches a supervising caller to each mode.
KEYS = {"3": "listen", "4": "whisper", "5": "barge"}
#: Seconds between checks of the keys (a key pressed is read at once).
KEY_WAIT = 3600.0
REFUSED = ["general/not-available", "general/goodbye"]


@implementer(IDialplanApplication)
class Supervise:
    """
    Joins the caller to an extension's call as a supervisor.

    :param pbx: the PBX (call events: the supervised call's end).
    :param supervision: the rules and the running monitors.
    """

    name = "supervise"
    log = Logger()

    def __init__(self, pbx: IPBX, supervision: Supervision) -> None:
        self.pbx = pbx
        self.supervision = supervision

    def run(self, channel: IChannel, args: Any) -> Deferred[None]:
        """Supervise the extension dialled after the code until the caller or the call hangs up."""
        return Deferred.fromCoroutine(self._run(channel, args))

    def target(self, channel: IChannel, args: Any) -> tuple[str, str] | None:
        """
        ``(mode, extension)``: a route's ``args: {mode: whisper, extension: N}``,
        else the code and number dialled; None when neither says.
        """
        if (
            isinstance(args, dict)
            and args.get("mode") in MODES
            and args.get("extension") is not None
        ):
            return str(args["mode"]), str(args["extension"])
        return self.supervision.options.parse_dialled(channel.callee)

    async def _run(self, channel: IChannel, args: Any) -> None:
        await channel.answer()
        try:
            await self._supervise(channel, args)
        except HungUp:
            return
        if not channel.hung_up:
            await channel.hangup()

    async def _supervise(self, channel: IChannel, args: Any) -> None:
        wanted = self.target(channel, args)
        supervisor = channel.caller
        if wanted is None or not wanted[1].isdigit():
            self.log.info(
                "supervise: {caller} dialled {dialled!r}: no mode and extension",
                caller=supervisor,
                dialled=channel.callee,
            )
            await channel.play(["general/invalid-number", "general/goodbye"])
            return
        mode, target = wanted
        try:
            call_id, monitor = self.supervision.start(supervisor, mode, target=target)
        except (NotAllowed, NoCall, NoAudio) as e:
            why = {NotAllowed: "not allowed", NoCall: "no call to join"}.get(
                type(e), "no decodable audio"
            )
            self.log.info(
                "supervise: {caller} -> {target} ({mode}) refused: {why}",
                caller=supervisor or "anonymous",
                target=target,
                mode=mode,
                why=why,
            )
            await channel.play(REFUSED)
            return
        await self.attend(channel, supervisor, call_id, monitor)

    async def attend(
        self, channel: IChannel, supervisor: str, call_id: str, monitor: Monitor
    ) -> None:
        """
        Join ``channel`` to the running ``monitor`` of call ``call_id`` until
        the supervisor or the call hangs up (the supervisor's keys change the
        mode meanwhile); then stop the monitor.

        :raises HungUp: the supervisor hung up.
        """
        unsubscribe = self.pbx.subscribe_calls(
            lambda event: self._call_event(event, call_id, channel), ("ended",)
        )
        try:
            channel.join(monitor.mix)
            monitor.when_stopped(lambda: self._end(channel))
            await self._keys(channel, monitor)
        finally:
            unsubscribe()
            channel.leave()
            self.supervision.stop(supervisor, monitor)

    def _call_event(self, event: Any, call_id: str, channel: IChannel) -> None:
        """The supervised call ended: so does the supervisor's."""
        if event.call_id == call_id:
            self._end(channel)

    @staticmethod
    def _end(channel: IChannel) -> None:
        if not channel.hung_up:
            channel.hangup()

    async def _keys(self, channel: IChannel, monitor: Monitor) -> None:
        """Switch modes on the supervisor's keys until the call ends."""
        while not channel.hung_up:
            key = await channel.collect_digits(
                max_digits=1, timeout=KEY_WAIT, terminator=""
            )
            mode = KEYS.get(key)
            if mode is not None and mode != monitor.mode:
                monitor.set_mode(mode)
                self.log.info(
                    "supervise: {caller} now {mode}", caller=channel.caller, mode=mode
                )
