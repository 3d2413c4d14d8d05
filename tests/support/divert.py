"""
Diverting calls nobody answers, in memory: a fake voicemail application that
notes every call it gets, a fake diverter that sends every failing call of an
extension to it, and :class:`DivertTestCase`, the PBX of
:class:`support.app_calls.AppCallTestCase` with both installed.
"""

from __future__ import annotations

from typing import Any

import attrs

from zope.interface import implementer
from zope.interface.verify import verifyObject

from pbx.calls.dialplan import ToApplication
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import Channel
from pbx.sip.message import Request

from support.app_calls import AppCallTestCase


@implementer(IDialplanApplication)
class Application:
    """Notes each call (caller, name, callee, args), then waits for the caller to hang up."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, str, str, Any]] = []

    async def run(self, channel: Channel, args: Any) -> None:
        """Note the call; stay until the caller hangs up."""
        self.calls.append((channel.caller, channel.caller_name, channel.callee, dict(args)))
        await channel.wait_for_hangup()


class Voicemail(Application):
    """An application named voicemail, whose calls are recorded VOICEMAIL as the real one's."""

    disposition = "VOICEMAIL"

    def __init__(self) -> None:
        super().__init__("voicemail")


class Diverter:
    """Sends every failing call of ``numbers`` to ``app``, with the number and the reason as args."""

    def __init__(self, app: str = "voicemail", numbers: tuple[str, ...] = ("1002", "1003", "1004")) -> None:
        self.app = app
        self.numbers = numbers
        self.asked: list[tuple[str, str]] = []

    def __call__(self, callee: str, reason: str) -> ToApplication | None:
        """Divert calls to one of our numbers."""
        self.asked.append((callee, reason))
        if callee not in self.numbers:
            return None
        return ToApplication(self.app, {"mailbox": callee, "reason": reason})


class DivertTestCase(AppCallTestCase):
    """The PBX of support.app_calls with a voicemail application and one diverter."""

    def setUp(self) -> None:
        """Register the voicemail application and a diverter for 1002-1004."""
        super().setUp()
        self.voicemail = Voicemail()
        verifyObject(IDialplanApplication, self.voicemail)
        self.controller.applications["voicemail"] = self.voicemail
        self.diverter = Diverter()
        self.controller.diverters.append(self.diverter)

    def extension(self, number: str, **changes: Any) -> None:
        """Change extension ``number`` in the store."""
        self.store.extensions[number] = attrs.evolve(self.store.extensions[number], **changes)

    def voicemail_got(self, callee: str, reason: str) -> None:
        """The voicemail application ran once, for 1001 ("User 1001") calling ``callee``, with the diverter's args."""
        self.assertEqual(
            self.voicemail.calls,
            [("1001", "User 1001", callee, {"mailbox": callee, "reason": reason})],
        )

    def cancelled_by_pbx(self, forked: Request) -> None:
        """The callee's phone gets CANCEL, answers it and ends its INVITE with 487."""
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(forked, 487)
        self.callee.expect("ACK")
