"""
Follow-me legs to outside numbers: a follow-me number the dialplan sends to
a trunk route is called by pbx itself through the route's trunks.

The leg is pbx's own call (an :class:`~pbx.calls.outbound.OutboundCall`
whose media pbx terminates), as a confirmed follow-me leg to an extension
is (:mod:`pbx.calls.confirm`): the carrier's answer is screened with "press
1 to accept" when the follow-me says ``confirm: true``, so a mobile's
voicemail never takes the call.  The route's first trunk that is up and has
room is used; the outbound hooks are asked as for a call the extension
whose follow-me it is dialled itself (the calling-permissions guard may
refuse it, the emergency desk and STIR/SHAKEN decorate it).  The INVITE
presents the route's caller ID and answers the carrier's digest challenges
(RFC 3261 §22.2).  The trunk counts the leg until it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from attrs import define

from twisted.logger import Logger

from pbx.calls.dialplan import ToTrunks
from pbx.calls.forks import Fork
from pbx.calls.outbound import OutboundCall
from pbx.records import Binding
from pbx.sip.message import Request, Response
from pbx.trunks.hooks import OutboundContext
from pbx.trunks.registry import Trunks
from pbx.trunks.routes import Attempt, plan
from pbx.trunks.trunk import Trunk

__all__ = ["OutsideLegs", "PlaceLeg"]

#: Makes pbx's own call: (services, to/from identity, challenge answerer, headers) -> an unstarted leg.
PlaceLeg = Callable[..., OutboundCall]


@define(eq=False)
class OutsideLegs:
    """
    Calls outside numbers for follow-me.

    :ivar trunks: the trunks and their hooks.
    :ivar make: an unstarted :class:`OutboundCall` from the keyword
        arguments ``services``, ``callee``, ``identity``, ``on_challenge`` and
        ``headers``; the controller adds the caller, media and tracking.
    """

    trunks: Trunks
    make: PlaceLeg
    log = Logger()

    async def place(self, extension: str, caller_id: str, number: str, action: ToTrunks,
                    timeout: float) -> OutboundCall | None:
        """
        Ring ``number`` (dialled by ``extension``'s follow-me) out through
        ``action``'s trunks; None when no trunk can take it or a hook refused it.

        :param caller_id: the extension's own ``caller_id`` setting.
        """
        attempts = plan(action, number, self.trunks.trunks, self.trunks.rates, extension_caller_id=caller_id)
        for attempt in attempts:
            trunk = attempt.trunk
            if not trunk.up or trunk.full:
                self.log.info("follow-me of {extension} to {number}: trunk {trunk} skipped", extension=extension,
                              number=number, trunk=trunk.name)
                continue
            context = OutboundContext(extension, True, trunk.config, attempt.dialled, attempt.sent,
                                      attempt.caller_id)
            change = await self.trunks.hooks.decorate(context)
            if change.refuse:
                self.log.info("follow-me of {extension} to {number} refused: {status} {reason}",
                              extension=extension, number=number, status=change.refuse, reason=change.reason)
                return None
            return self._ring(trunk, attempt, change.headers, timeout)
        self.log.info("follow-me of {extension} to {number}: no trunk available", extension=extension,
                      number=number)
        return None

    def _ring(self, trunk: Trunk, attempt: Attempt, headers: Sequence[tuple[str, str]],
              timeout: float) -> OutboundCall:
        config = trunk.config
        domain = config.from_domain or config.host
        identity = f"<sip:{attempt.caller_id or 'anonymous'}@{domain}>"
        to = f"<sip:{attempt.sent}@{config.host}>"

        def challenge(fork: Fork, response: Response) -> Request | None:
            return trunk.answer_challenge(fork, response)

        leg = self.make(services=trunk.services, callee=attempt.sent, identity=(identity, to),
                        on_challenge=challenge, headers=list(headers))
        trunk.take()
        def released(result: object) -> object:
            trunk.release()
            return result

        leg.ended.addBoth(released)
        binding: Binding = trunk.binding(attempt.sent)
        leg.start([binding], timeout)
        return leg
