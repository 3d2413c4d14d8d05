"""
Fakes shared by the attendant tests (this module holds no tests).

- :class:`ScriptedChannel`: a channel whose caller follows a script of keys,
  pauses (:data:`WAIT`) and a hang-up (:data:`HANGUP`); timeouts run on a
  ``task.Clock``.
- :class:`RecordingApp`: a dialplan application that records its runs
  (voicemail, echo).
- :class:`Names`: recorded names, as voicemail's greetings provide them.

The PBX is :class:`pbx.testing.FakePBX`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from attrs import define, field

from zope.interface import implementer

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from pbx.features.voicemail.interfaces import IGreetings
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import HungUp
from pbx.media.prompts import PromptLibrary

PROMPTS = PromptLibrary()


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: The caller presses nothing while the application waits (it times out).
WAIT = _Marker("WAIT")
#: The caller hangs up the next time the application plays or waits.
HANGUP = _Marker("HANGUP")


@define(eq=False)
class ScriptedChannel:
    """
    The channel methods the attendant calls, driven by a script.

    A key at the head of the script interrupts a prompt that accepts it, or
    is collected; :data:`WAIT` makes the next collection time out (as does
    an empty script); :data:`HANGUP` ends the call.
    """

    clock: Clock
    script: deque[Any]
    prompts: PromptLibrary = PROMPTS
    caller: str = "2999"
    caller_name: str = "Caller"
    callee: str = "*50"
    played: list[list[str]] = field(factory=list)
    unknown: list[str] = field(factory=list)
    collects: list[tuple[int, float, str]] = field(factory=list)
    hangups: list[str] = field(factory=list)
    answered: bool = False
    hung_up: bool = False

    def answer(self) -> Deferred[None]:
        """Mark answered."""
        self.answered = True
        return succeed(None)

    def _hang_up_if_scripted(self) -> bool:
        if self.script and self.script[0] is HANGUP:
            self.script.popleft()
            self.hung_up = True
            return True
        return False

    def play(self, items: Iterable[str], interrupt: str = "") -> Deferred[str | None]:
        """Record what is played; a scripted key in ``interrupt`` interrupts it."""
        if self.hung_up or self._hang_up_if_scripted():
            return fail(HungUp("hung up"))
        items = list(items)
        self.played.append(items)
        self.unknown += [i for i in items if not i.endswith(".wav") and i not in self.prompts]
        head = self.script[0] if self.script else None
        if isinstance(head, str) and head in interrupt:
            return succeed(self.script.popleft())
        return succeed(None)

    def collect_digits(self, max_digits: int = 1, timeout: float = 5.0, terminator: str = "#") -> Deferred[str]:
        """Take scripted keys; time out on the clock at a WAIT or the script's end."""
        if self.hung_up:
            return fail(HungUp("hung up"))
        self.collects.append((max_digits, timeout, terminator))
        got = ""
        while self.script and isinstance(self.script[0], str) and len(got) < max_digits:
            key = self.script.popleft()
            if terminator and key == terminator:
                return succeed(got)
            got += key
        if len(got) >= max_digits:
            return succeed(got)
        if self._hang_up_if_scripted():
            return fail(HungUp("hung up"))
        if self.script and self.script[0] is WAIT:
            self.script.popleft()
        d: Deferred[str] = Deferred()
        self.clock.callLater(timeout, d.callback, got)
        return d

    def hangup(self, cause: str = "normal") -> Deferred[None]:
        """End the call from the application's side."""
        self.hangups.append(cause)
        self.hung_up = True
        return succeed(None)

    def heard(self) -> list[str]:
        """Everything played, one list."""
        return [item for items in self.played for item in items]


@implementer(IDialplanApplication)
@define(eq=False)
class RecordingApp:
    """A dialplan application that records each run's arguments."""

    name: str
    runs: list[dict[str, Any]] = field(factory=list)

    def run(self, channel: Any, args: Any) -> Deferred[None]:
        """Record the run."""
        self.runs.append(dict(args))
        return succeed(None)


@implementer(IGreetings)
@define(eq=False)
class Names:
    """Voicemail's greetings with only recorded names: mailbox to file."""

    names: dict[str, str] = field(factory=dict)

    def greeting_path(self, mailbox: str, kind: str) -> str | None:
        """The ``name`` greeting from :attr:`names`; no other kind."""
        return self.names.get(mailbox) if kind == "name" else None
