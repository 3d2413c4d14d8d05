"""
Listening to messages: the ``voicemail-main`` dialplan application.

A mailbox owner calls the voicemail number (``{app: voicemail-main}``; with
``ask_mailbox: true`` from any phone), enters the PIN and is told how many
messages wait.  The menus, as built (every prompt can be interrupted by a
key, which then counts as the choice)::

    main menu (vm/main-menu)
      1  new messages            2  old messages
      0  mailbox options         #  goodbye
    while a message plays (envelope: "Received <date> from <number>")
      #  skip to the message menu; any menu key acts at once
    message menu (vm/message-menu, vm/message-menu-more)
      5  hear it again           3  when and from whom
      7  delete (then the next)  9  save: mark heard (then the next)
      6  next                    4  previous
      8  forward to a mailbox    2  call the caller back
      *  main menu
    mailbox options (vm/greeting-menu)
      1  record the unavailable greeting
      2  record the busy greeting
      3  record your name        5  change the PIN
      *  main menu

Listening marks a new message heard: once its envelope was played (the
audio started), it is moved to the old folder when the caller moves on to
another message or menu, or hangs up.  That is what clears the message
waiting light.

A menu left unanswered is repeated; after :data:`TRIES` prompts without a
key the call ends with "Goodbye".  An invalid key is answered with
vm/invalid and the menu again.  A mailbox that does not exist is only ever
told apart from a wrong PIN by :meth:`Voicemail.check_pin`, which answers
the same for both.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from typing import Any

from zope.interface import implementer

from twisted.logger import Logger

from pbx.features.voicemail.deposit import (
    CONNECTED,
    WriterFactory,
    option,
    record_speech,
    wav_writer,
)
from pbx.interfaces import IPBX, IChannel, IDialplanApplication
from pbx.media.channel import HungUp

__all__ = ["KEYS", "MAX_PIN_DIGITS", "TRIES", "Retrieval", "ask", "choose"]

#: Every key: any of them stops a prompt.
KEYS = "0123456789*#"
#: Prompts of a menu (or a question) that may go unanswered before goodbye.
TRIES = 3
#: Seconds to wait for a menu key after its prompt.
MENU_TIMEOUT = 5.0
#: Seconds to wait for the next digit of a number or a PIN.
ENTRY_TIMEOUT = 6.0
MAX_MAILBOX_DIGITS = 10
MAX_PIN_DIGITS = 12
#: Greeting kinds by the key that records them in the options menu.
GREETINGS = {"1": "unavailable", "2": "busy", "3": "name"}
MESSAGE_MENU = ["vm/message-menu", "vm/message-menu-more"]
MESSAGE_KEYS = "23456789*"

_DIALLABLE = re.compile(r"[0-9]{1,20}")


async def ask(channel: IChannel, prompts: list[str], max_digits: int,
              timeout: float = ENTRY_TIMEOUT) -> str:
    """
    Play ``prompts`` and collect a number ended by ``#``.

    A digit pressed during the prompt starts the number.

    :returns: the digits; "" when nothing was entered (or ``#`` alone).
    """
    first = await channel.play(prompts, interrupt=KEYS)
    if first == "#":
        return ""
    digits = first or ""
    if len(digits) < max_digits:
        digits += await channel.collect_digits(max_digits - len(digits), timeout, "#")
    return digits


async def choose(channel: IChannel, prompts: list[str], choices: str,
                 pressed: str | None = None) -> str | None:
    """
    A menu: play ``prompts`` until a key of ``choices`` is pressed.

    :param pressed: a key already pressed (it interrupted an earlier
        prompt): taken as the first answer, without playing the menu.
    :returns: the key, or None after :data:`TRIES` prompts without one.
    """
    unanswered = 0
    while unanswered < TRIES:
        key = pressed
        pressed = None
        if key is None:
            key = await channel.play(prompts, interrupt=KEYS)
        if key is None:
            key = await channel.collect_digits(1, MENU_TIMEOUT, "") or None
        if key is None:
            unanswered += 1
        elif key in choices:
            return key
        else:
            await channel.play(["vm/invalid"])
    return None


def _plural(count: int) -> str:
    return "vm/message" if count == 1 else "vm/messages"


@implementer(IDialplanApplication)
class Retrieval:
    """
    The ``voicemail-main`` application: log in, then the menus.

    Arguments of a call: ``{"ask_mailbox": true}`` asks for the mailbox
    number; otherwise it is the caller's own extension (asked for all the
    same when the caller is unknown).

    :param voicemail: the mailboxes (:class:`~pbx.features.voicemail.mailbox.Voicemail`).
    :param pbx: the running PBX (``dial`` to call a caller back).
    :param options: the feature's options (see
        :func:`~pbx.features.voicemail.deposit.option`).
    :param writer: makes greeting recording files;
        :func:`~pbx.features.voicemail.deposit.wav_writer` by default.
    :param tz: the time zone dates are read out in; the server's local
        time when None.
    """

    name = "voicemail-main"
    log = Logger()

    def __init__(self, voicemail: Any, *, pbx: IPBX, options: Any,
                 writer: WriterFactory | None = None, tz: tzinfo | None = None) -> None:
        self.voicemail = voicemail
        self.pbx = pbx
        self.options = options
        self.writer = writer if writer is not None else wav_writer(pbx)
        self.tz = tz

    async def run(self, channel: IChannel, args: Any) -> None:
        """Log the caller in and run the main menu until goodbye or hang-up."""
        args = args or {}
        await channel.answer()
        mailbox = await self.login(channel, bool(args.get("ask_mailbox")))
        if mailbox is not None:
            await _Session(self, channel, mailbox).main()

    async def login(self, channel: IChannel, ask_mailbox: bool) -> str | None:
        """
        Ask for the mailbox (when needed) and the PIN.

        :returns: the mailbox, or None when the call was ended (too many
            wrong PINs, locked out, no answer).
        """
        ask_mailbox = ask_mailbox or not channel.caller
        mailbox = channel.caller
        source = channel.caller or "unknown"
        attempts = int(option(self.options, "pin_attempts"))
        wrong = unanswered = 0
        while True:
            if ask_mailbox:
                mailbox = await ask(channel, ["vm/enter-mailbox"], MAX_MAILBOX_DIGITS)
            pin = await ask(channel, ["vm/enter-password"], MAX_PIN_DIGITS) if mailbox else ""
            if not pin:
                unanswered += 1
                if unanswered >= TRIES:
                    await _goodbye(channel)
                    return None
                continue
            result = await self.voicemail.check_pin(mailbox, pin, source=source)
            if result == "ok":
                self.log.info("voicemail {mailbox}: logged in from {source}",
                              mailbox=mailbox, source=source)
                return mailbox
            if result == "locked":
                await channel.play(["vm/locked-out"])
                await channel.hangup()
                return None
            wrong += 1
            if wrong >= attempts:
                await channel.play(["vm/password-incorrect", "vm/goodbye"])
                await channel.hangup()
                return None
            await channel.play(["vm/password-incorrect"])


async def _goodbye(channel: IChannel) -> None:
    await channel.play(["vm/goodbye"])
    await channel.hangup()


class _Session:
    """One logged-in call: the menus of one mailbox."""

    def __init__(self, app: Retrieval, channel: IChannel, mailbox: str) -> None:
        self.app = app
        self.voicemail = app.voicemail
        self.channel = channel
        self.mailbox = mailbox
        #: New messages whose audio was started and that are not marked old yet.
        self.heard: dict[str, None] = {}

    @property
    def prompts(self) -> Any:
        return self.channel.prompts

    async def main(self) -> None:
        """Announce the counts, then the main menu until goodbye."""
        pressed = await self.announce()
        while True:
            choice = await choose(self.channel, ["vm/main-menu"], "120#", pressed)
            pressed = None
            if choice is None or choice == "#":
                await _goodbye(self.channel)
                return
            if choice == "1":
                carry_on = await self.folder("new")
            elif choice == "2":
                carry_on = await self.folder("old")
            else:
                carry_on = await self.mailbox_options()
            if not carry_on:
                await _goodbye(self.channel)
                return

    async def announce(self) -> str | None:
        """ "You have 2 new messages and 1 old message"; the key that cut it short."""
        new, old = await self.voicemail.counts(self.mailbox)
        if not new and not old:
            return await self.channel.play(["vm/no-messages"], interrupt=KEYS)
        items = ["vm/you-have"]
        if new:
            items += [*self.prompts.say_number(new), "vm/new", _plural(new)]
        if new and old:
            items.append("vm/and")
        if old:
            items += [*self.prompts.say_number(old), "vm/old", _plural(old)]
        return await self.channel.play(items, interrupt=KEYS)

    # -- messages -------------------------------------------------------------

    async def folder(self, folder: str) -> bool:
        """
        Go through the messages of ``folder`` (``new`` or ``old``).

        :returns: False when the caller stopped answering (goodbye).
        """
        messages = await self.voicemail.messages(self.mailbox, folder)
        if not messages:
            await self.channel.play(["vm/you-have", *self.prompts.say_number(0),
                                     f"vm/{folder}", "vm/messages"])
            return True
        index, start, pressed = 0, True, None
        try:
            while True:
                if start:
                    pressed = await self.play_message(messages[index])
                choice = await choose(self.channel, MESSAGE_MENU, MESSAGE_KEYS, pressed)
                if choice is None:
                    return False
                index, start, leave, pressed = await self._act(messages, index, choice)
                if leave:
                    return True
        finally:
            await self.settle()

    async def _act(self, messages: list[Any], index: int,
                   choice: str) -> tuple[int, bool, bool, str | None]:
        """
        Carry out a message-menu choice on ``messages[index]``.

        :returns: the new index, whether to play the message there, whether
            to leave the folder, and a key that cut a replay short (the
            next choice).
        """
        message = messages[index]
        if choice in "79":
            if choice == "7":
                await self.voicemail.delete(self.mailbox, message.id)
                self.heard.pop(message.id, None)
                del messages[index]
                await self.channel.play(["vm/deleted"])
            else:
                await self.voicemail.mark(self.mailbox, message.id, "old")
                self.heard.pop(message.id, None)
                index += 1
                await self.channel.play(["vm/saved"])
            if index < len(messages):
                return index, True, False, None
            await self.channel.play(["vm/no-more-messages"])
            return index, False, True, None
        if choice == "6":
            if index + 1 < len(messages):
                await self.settle()
                return index + 1, True, False, None
            await self.channel.play(["vm/no-more-messages"])
        elif choice == "4":
            if index > 0:
                await self.settle()
                return index - 1, True, False, None
            await self.channel.play(["vm/first-message"])
        elif choice == "8":
            await self.forward(message)
        elif choice == "2":
            await self.call_back(message)
        elif choice == "*":
            return index, False, True, None
        else:  # 5: the audio again; 3: the envelope alone
            pressed = await self.play_message(message, envelope=choice == "3", audio=choice == "5")
            return index, False, False, pressed
        return index, False, False, None

    async def play_message(self, message: Any, envelope: bool = True,
                           audio: bool = True) -> str | None:
        """
        Play the envelope and/or the audio of ``message``.

        :returns: the key that interrupted it (None for ``#``, which only
            skips to the menu).
        """
        if envelope:
            pressed = await self.channel.play(self.envelope(message), interrupt=KEYS)
            if pressed is not None:
                return None if pressed == "#" else pressed
        if not audio:
            return None
        if message.folder == "new":
            self.heard[message.id] = None
        try:
            pressed = await self.channel.play([message.path], interrupt=KEYS)
        except (OSError, ValueError):
            self.app.log.failure("voicemail {mailbox}: cannot play {id}",
                                 mailbox=self.mailbox, id=message.id)
            return None
        return None if pressed == "#" else pressed

    def envelope(self, message: Any) -> list[str]:
        """ "Received monday, january 5th, 3 p.m. from 1 0 0 2"."""
        when = datetime.fromtimestamp(message.received, self.app.tz)
        caller = message.caller
        who = (self.prompts.say_digits(caller) if _DIALLABLE.fullmatch(caller or "")
               else ["vm/unknown-caller"])
        return ["vm/received", *self.prompts.say_datetime(when), "vm/from", *who]

    async def settle(self) -> None:
        """Mark every new message listened to as old."""
        while self.heard:
            message_id = next(iter(self.heard))
            del self.heard[message_id]
            await self.voicemail.mark(self.mailbox, message_id, "old")

    async def forward(self, message: Any) -> None:
        """Copy ``message`` into a mailbox the caller names."""
        target = await ask(self.channel, ["vm/forward-to"], MAX_MAILBOX_DIGITS)
        if not target:
            return
        copy = await self.voicemail.forward(self.mailbox, message.id, target, by=self.mailbox)
        if copy is None:
            await self.channel.play(["vm/no-such-mailbox"])
            return
        self.app.log.info("voicemail {mailbox}: {id} forwarded to {target}",
                          mailbox=self.mailbox, id=message.id, target=target)
        await self.channel.play(["vm/forwarded"])

    async def call_back(self, message: Any) -> None:
        """Call whoever left ``message``; back to the menu when that call ends."""
        if not _DIALLABLE.fullmatch(message.caller or ""):
            await self.channel.play(["vm/cannot-call-back"])
            return
        outcome = await self.app.pbx.dial(self.channel, message.caller)
        if self.channel.hung_up:
            raise HungUp("the call has ended")
        if outcome == "busy":
            await self.channel.play(["general/busy"])
        elif outcome not in CONNECTED:
            await self.channel.play(["general/not-available"])

    # -- mailbox options ------------------------------------------------------

    async def mailbox_options(self) -> bool:
        """
        The options menu: greetings and PIN.

        :returns: False when the caller stopped answering (goodbye).
        """
        while True:
            choice = await choose(self.channel, ["vm/greeting-menu"], "1235*")
            if choice is None:
                return False
            if choice == "*":
                return True
            if choice == "5":
                await self.change_pin()
            else:
                await self.record_greeting(GREETINGS[choice])

    async def record_greeting(self, kind: str) -> None:
        """Record the ``kind`` greeting after the beep and make it the mailbox's."""
        await self.channel.play(["vm/record-after-beep"])
        recording, _ = await record_speech(
            self.channel, self.voicemail.recording_path(self.mailbox), self.app.writer,
            options=self.app.options)
        if recording.path is None:
            if self.channel.hung_up:
                raise HungUp("the call has ended")
            await self.channel.play(["vm/not-recorded"])
            return
        await self.voicemail.save_greeting(self.mailbox, kind, recording.path)
        if self.channel.hung_up:
            raise HungUp("the call has ended")
        await self.channel.play(["vm/recording-saved"])

    async def change_pin(self) -> None:
        """
        Ask for the new PIN twice and set it; :data:`TRIES` attempts (no
        answer, a mismatch, a PIN the policy refuses), then back to the menu.
        """
        for _ in range(TRIES):
            pin = await ask(self.channel, ["vm/new-pin"], MAX_PIN_DIGITS)
            if not pin:
                continue
            again = await ask(self.channel, ["vm/reenter-pin"], MAX_PIN_DIGITS)
            if pin != again:
                await self.channel.play(["vm/pin-mismatch"])
                continue
            problem = await self.voicemail.set_pin(self.mailbox, pin)
            if problem is None:
                self.app.log.info("voicemail {mailbox}: PIN changed", mailbox=self.mailbox)
                await self.channel.play(["vm/pin-changed"])
                return
            self.app.log.info("voicemail {mailbox}: new PIN refused: {problem}",
                              mailbox=self.mailbox, problem=problem)
            await self.channel.play(["vm/pin-invalid"])
