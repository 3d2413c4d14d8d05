"""
A refused call that hears why first: early media, then the refusal
(RFC 3960).

The calling-permissions guard refuses an outside call with a status (403
``Call Not Permitted``) and names an announcement.  pbx answers the
caller's offer in a ``183 Session Progress`` with SDP (the early-session
model phones follow, RFC 3960 §3), plays the prompt from an endpoint of
its own, and then sends the final refusal; no 200 is sent, so the call is
never answered or billed.  A caller that cancels meanwhile gets ``487``.  A call without an
offer (delayed offer) gets the refusal at once.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from pbx.calls.app_call import ApplicationCall
from pbx.calls.endpoint_media import MediaUnavailable
from pbx.calls.inbound import WAITING
from pbx.calls.media import MediaError
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import HungUp

__all__ = ["APPLICATION", "EarlyRefusal", "RefusalAnnouncement"]

#: The name the refused caller's call is recorded under.
APPLICATION = "refused"


@implementer(IDialplanApplication)
class RefusalAnnouncement:
    """Plays one prompt to the refused caller."""

    name = APPLICATION

    def __init__(self, prompt: str) -> None:
        self.prompt = prompt

    async def run(self, channel: Any, args: Any) -> None:
        """Play the prompt once."""
        await channel.play([self.prompt])


class EarlyRefusal(ApplicationCall):
    """
    The refused caller's call: 183 with pbx's SDP, the announcement, then
    the final ``status`` (never a 200).
    """

    def __init__(self, *args: Any, status: int, reason: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusal = (status, reason)

    def start(self, early_answer: bytes | None = None) -> None:
        """Answer the offer in a 183 and play; without an offer, refuse at once."""
        if self.delayed:
            self._refuse(*self.refusal)
            return
        try:
            body = self.media.answer(self.invite.request.body, early_answer)
        except (MediaError, MediaUnavailable):
            self._refuse(*self.refusal)
            return
        self.a.provisional(183, body)
        self._start_application()

    async def _run(self) -> None:
        assert self.channel is not None
        try:
            await self.application.run(self.channel, self.args)
        except HungUp:
            return
        except Exception:
            self.log.failure("the announcement to {caller} failed", caller=self.caller)
        if not self._over and not self.hangup_cause:
            self._refuse(*self.refusal)

    def cancelled(self) -> None:
        """CANCEL during the announcement: 487."""
        if self.a.state in WAITING:
            self._refuse(487, "Request Terminated")
