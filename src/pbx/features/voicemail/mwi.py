"""
Message waiting indication: the SIP ``message-summary`` event package
(RFC 3842) over the voicemail mailboxes.

A phone subscribes to its own extension; every change to a mailbox's counts
makes the PBX NOTIFY its subscribers (and, when configured, its registered
phones without a subscription) with the body this package builds.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from twisted.internet.defer import Deferred

from pbx.features.voicemail.mailbox import Voicemail
from pbx.interfaces import IEventPackage

__all__ = ["EVENT", "MessageSummaryPackage", "access_number", "summary_body"]

EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"


def summary_body(waiting: bool, new: int, old: int, account: str) -> bytes:
    """
    An ``application/simple-message-summary`` body (RFC 3842 §5.2).

    :param waiting: whether new messages wait.
    :param new: new voice messages.
    :param old: old (heard) voice messages.
    :param account: the URI phones call to hear them (``Message-Account``).
    """
    try:
        from pbx.sip.message_summary import message_summary_body
    except ImportError:
        lines = [
            f"Messages-Waiting: {'yes' if waiting else 'no'}",
            f"Message-Account: {account}",
            f"Voice-Message: {new}/{old} (0/0)",
        ]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")
    return bytes(message_summary_body(waiting, new, old, account))


def access_number(dialplan: Any, application: str = "voicemail-main") -> str | None:
    """
    The number that reaches one's own mailbox: the first exact dialplan
    route to ``application`` without ``ask_mailbox``; None if there is none.
    """
    for route in getattr(dialplan, "routes", ()):
        action = route.action
        if getattr(action, "name", None) != application:
            continue
        if (action.args or {}).get("ask_mailbox"):
            continue
        pattern = route.pattern
        if not pattern.startswith(("_", "re:")):
            return str(pattern)
    return None


@implementer(IEventPackage)
class MessageSummaryPackage:
    """
    The ``message-summary`` event package.

    :param voicemail: the mailboxes whose counts are reported.
    :param domain: the SIP domain, for ``Message-Account``.
    :param unsolicited: whether registered phones without a subscription
        are notified too.
    :param access: the number that reaches voicemail (``*97``); the mailbox
        number itself when None.
    """

    event = EVENT
    content_type = CONTENT_TYPE

    def __init__(
        self,
        voicemail: Voicemail,
        domain: str,
        unsolicited: bool = True,
        access: str | None = None,
    ) -> None:
        self.voicemail = voicemail
        self.domain = domain
        self.unsolicited = unsolicited
        self.access = access

    def authorize(self, subscriber: str, resource: str) -> bool:
        """A phone may watch only its own mailbox."""
        return bool(subscriber) and subscriber == resource

    def account(self, resource: str) -> str:
        """The ``Message-Account`` URI for ``resource``."""
        return f"sip:{self.access or resource}@{self.domain}"

    def state(self, resource: str) -> Deferred[bytes]:
        """The body for ``resource``'s mailbox now."""
        return Deferred.fromCoroutine(self._state(resource))

    async def _state(self, resource: str) -> bytes:
        new, old = await self.voicemail.counts(resource)
        return summary_body(new > 0, new, old, self.account(resource))
