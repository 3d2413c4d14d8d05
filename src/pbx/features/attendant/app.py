"""
The ``attendant`` dialplan application: plays a menu and acts on the key
pressed.

A route names where a call starts: ``{app: attendant, args: {menu: main}}``
or ``{args: {schedule: office}}`` (the schedule picks the menu by the clock);
no arguments mean the menu ``main``.  In a menu:

- the greeting plays; any key interrupts it; then the caller has
  ``timeout`` seconds to press one;
- with ``direct_dial``, a key that begins an existing (enabled) extension
  number allowed by the menu's pattern starts collecting digits, each
  within ``digit_timeout`` (``#`` ends early).  The number is dialled as
  soon as it is complete; when the caller stops after one key that is also
  an option, the option is taken;
- a key without an option is invalid (``aa/invalid``), no key a timeout
  (``aa/timeout``); after ``retries`` of those the menu's ``on_fail``
  action runs, and otherwise the greeting plays again.

Transfers say ``aa/transfer`` and go through :meth:`IPBX.dial`, which
applies the callee's forwards and voicemail diversion itself.  When the
outcome is still busy, no answer or unavailable, the caller is handed to
the voicemail application if there is one; otherwise they hear
``general/busy`` or ``general/not-available`` and the menu again.  A queue
action says ``general/not-available`` (pbx has no queues yet).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from attrs import define, field

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.errors import ConfigError
from pbx.features.attendant.directory import DialByName, Entry, directory_entries
from pbx.features.attendant.menus import (
    Action,
    Directory,
    GoToMenu,
    Hangup,
    Menu,
    Operator,
    Queue,
    RunApplication,
    Transfer,
    Voicemail,
)
from pbx.features.attendant.options import MenuSet, route_target
from pbx.features.voicemail.interfaces import IGreetings
from pbx.interfaces import IPBX, IChannel, IDialplanApplication
from pbx.media.channel import HungUp

#: Every key a caller can press.
KEYS = "0123456789*#"
#: Invalid or missing choices in one call, over all its menus, before the
#: attendant says goodbye whatever ``on_fail`` says (menus whose ``on_fail``
#: lead to each other would otherwise loop for ever).
MAX_FAILURES = 20
#: Outcomes of a transfer after which the caller may leave a message.
_UNANSWERED = ("busy", "no_answer", "unavailable")


class _Done:
    """The attendant is done with the call."""


class _Back:
    """Back to the menu the action came from."""


DONE, BACK = _Done(), _Back()
Next = Menu | _Done | _Back


@implementer(IDialplanApplication)
class Attendant:
    """
    The auto attendant application.

    :param pbx: the running :class:`~pbx.interfaces.IPBX` (``dial``,
        ``applications``, ``store``, ``clock``, and ``lookup`` of voicemail's
        :class:`~pbx.features.voicemail.interfaces.IGreetings`).
    :param menus: returns the menu set in effect (read at every call's start).
    """

    name = "attendant"
    log = Logger()

    def __init__(self, pbx: IPBX, menus: Callable[[], Awaitable[MenuSet]]) -> None:
        self.pbx = pbx
        self._menus = menus

    def run(self, channel: IChannel, args: Any) -> Deferred[None]:
        """Play the route's menu (or its schedule's) until the call is handed on or ends."""
        return Deferred.fromCoroutine(self._run(channel, args))

    async def _run(self, channel: IChannel, args: Any) -> None:
        await channel.answer()
        call = _Call(self.pbx, channel, await self._menus())
        try:
            await call.run(args)
        except HungUp:
            return
        if not channel.hung_up:
            await channel.hangup()


@define(eq=False)
class _Call:
    """One caller's way through the menus."""

    pbx: IPBX
    channel: IChannel
    menu_set: MenuSet
    failures: int = 0
    _directory: list[Entry] | None = None
    _numbers: frozenset[str] = field(factory=frozenset)
    log = Logger()

    async def run(self, args: Any) -> None:
        """Start in the route's menu and follow the caller's choices."""
        try:
            what, name = route_target(args if isinstance(args, dict) else {}, "args")
        except ConfigError as e:
            self.log.error("attendant: route {key}: {problem}", key=e.key, problem=e.problem)
            await self.play(["general/not-available"])
            return
        if what == "schedule":
            schedule = self.menu_set.schedules.get(name)
            if schedule is None:
                self.log.error("attendant: no schedule {name!r}", name=name)
                await self.play(["general/not-available"])
                return
            name = schedule.menu_at(self.pbx.clock.seconds(), self.menu_set.timezone)
        menu = self.menu_set.menus.get(name)
        if menu is None:
            self.log.error("attendant: no menu {name!r}", name=name)
            await self.play(["general/not-available"])
            return
        extensions = await self.pbx.store.list_extensions()
        self._numbers = frozenset(r.number for r in extensions if r.enabled)
        self._directory = directory_entries(extensions)
        step: Next = menu
        while isinstance(step, Menu):
            step = await self.visit(step)

    # -- playing -----------------------------------------------------------

    async def play(self, items: list[str], interrupt: str = "") -> str | None:
        """
        Play prompts or WAV files; a missing file is logged and skipped so a
        typo in a greeting does not end the call.  Keys pressed during a
        prompt without ``interrupt`` wait for the next menu (type-ahead).
        """
        try:
            return await self.channel.play(items, interrupt=interrupt)
        except HungUp:
            raise
        except Exception as e:
            self.log.error("attendant: cannot play {items}: {error}", items=items, error=str(e))
            return None

    # -- menus -------------------------------------------------------------

    async def visit(self, menu: Menu) -> Next:
        """Run one menu until an action leads elsewhere."""
        failures = 0
        while True:
            choice = await self.choose(menu)
            if choice in ("", "invalid"):
                failures += 1
                self.failures += 1
                await self.play(["aa/timeout" if choice == "" else "aa/invalid"])
                if self.failures >= MAX_FAILURES:
                    await self.play(["general/goodbye"])
                    return DONE
                if failures < menu.retries:
                    continue
                failures = 0
                step = await self.perform(menu, menu.on_fail)
            elif choice.startswith("dial:"):
                step = await self.transfer(choice[5:])
            else:
                step = await self.perform(menu, menu.options[choice])
            if not isinstance(step, _Back):
                return step

    async def choose(self, menu: Menu) -> str:
        """
        What the caller chose: an option key, ``dial:<number>``, ``"invalid"``,
        or ``""`` when no key came.
        """
        key = await self.play(list(menu.greeting), KEYS)
        if key is None:
            key = await self.channel.collect_digits(max_digits=1, timeout=menu.timeout, terminator="")
        if not key:
            return ""
        typed = key
        while True:
            candidates = [n for n in self._numbers if n.startswith(typed) and menu.allows(n)]
            if not candidates or candidates == [typed]:
                break
            more = await self.channel.collect_digits(max_digits=1, timeout=menu.digit_timeout, terminator="#")
            if not more:
                break
            typed += more
        if typed in self._numbers and menu.allows(typed):
            return f"dial:{typed}"
        if typed == key and key in menu.options:
            return key
        return "invalid"

    async def perform(self, menu: Menu, action: Action) -> Next:
        """Carry out one action."""
        if isinstance(action, Transfer):
            return await self.transfer(action.number)
        if isinstance(action, GoToMenu):
            target = self.menu_set.menus.get(action.menu)
            if target is None:
                self.log.error("attendant: menu {menu!r} names missing menu {target!r}",
                               menu=menu.name, target=action.menu)
                return await self.unavailable()
            return target
        if isinstance(action, Voicemail):
            return await self.voicemail(action.mailbox, "unavailable")
        if isinstance(action, Directory):
            number = await self.dial_by_name(menu)
            return BACK if number is None else await self.transfer(number)
        if isinstance(action, Operator):
            operator = self.menu_set.operator_of(menu)
            return await self.transfer(operator) if operator else await self.unavailable()
        if isinstance(action, Queue):
            self.log.info("attendant: queue {name!r} chosen; pbx has no queues yet", name=action.name)
            return await self.unavailable()
        if isinstance(action, RunApplication):
            return await self.application(action)
        assert isinstance(action, Hangup)
        await self.play(["general/goodbye"])
        return DONE

    async def unavailable(self) -> Next:
        """Say the choice is not available; back to the menu."""
        await self.play(["general/not-available"])
        return BACK

    # -- hand-offs -----------------------------------------------------------

    async def transfer(self, number: str) -> Next:
        """Dial ``number``; on no answer, voicemail or back to the menu."""
        await self.play(["aa/transfer"])
        try:
            outcome = await self.pbx.dial(self.channel, number)
        except HungUp:
            raise
        except Exception:
            self.log.failure("attendant: transfer to {number} failed", number=number)
            return await self.unavailable()
        self.log.info("attendant: transfer to {number}: {outcome}", number=number, outcome=outcome)
        if outcome in ("answered", "diverted"):
            return DONE
        if outcome in _UNANSWERED and "voicemail" in self.pbx.applications:
            return await self.voicemail(number, outcome)
        if self.channel.hung_up:
            raise HungUp("the caller hung up during the transfer")
        if outcome == "busy":
            await self.play(["general/busy"])
        elif outcome == "not_found":
            await self.play(["general/invalid-number"])
        else:
            await self.play(["general/not-available"])
        return BACK

    async def voicemail(self, mailbox: str, reason: str) -> Next:
        """Hand the caller to the voicemail application to leave a message."""
        app = self.pbx.applications.get("voicemail")
        if app is None:
            return await self.unavailable()
        await self._hand_over(app, {"mailbox": mailbox, "reason": reason})
        return DONE

    async def application(self, action: RunApplication) -> Next:
        """Hand the caller to another dialplan application."""
        app = self.pbx.applications.get(action.name)
        if app is None:
            self.log.error("attendant: no application {name!r}", name=action.name)
            return await self.unavailable()
        await self._hand_over(app, dict(action.args))
        return DONE

    async def _hand_over(self, app: IDialplanApplication, args: dict[str, Any]) -> None:
        try:
            await app.run(self.channel, args)
        except HungUp:
            raise
        except Exception:
            self.log.failure("attendant: application {name!r} failed", name=app.name)

    # -- dial by name ----------------------------------------------------------

    async def dial_by_name(self, menu: Menu) -> str | None:
        """The number the caller picked from the directory, or None."""
        session = DialByName(
            channel=self.channel,
            entries=self._directory or [],
            name_items=self.name_items,
            play=self.play,
            timeout=menu.timeout,
            digit_timeout=menu.digit_timeout,
        )
        return await session.run()

    async def name_items(self, entry: Entry) -> list[str]:
        """
        The person's recorded name or "extension" and the digits.  The name
        is the ``name`` greeting of :class:`IGreetings` (voicemail) when a
        feature provides it and one was recorded.
        """
        greetings = self.pbx.lookup(IGreetings)
        if greetings is not None:
            try:
                path = greetings.greeting_path(entry.number, "name")
            except Exception:
                self.log.failure("attendant: the name of {number} is unreadable", number=entry.number)
                path = None
            if path:
                return [str(path)]
        return ["general/extension", *self.channel.prompts.say_digits(entry.number)]
