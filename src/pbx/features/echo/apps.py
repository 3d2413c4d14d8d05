"""
The echo test (``*43``: hear yourself) and the digit read-back (``*44``:
press digits, hear them read back): the smallest applications that prove
the whole media path, from RTP and DTMF in to prompts and RTP out.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from pbx.interfaces import IChannel, IDialplanApplication


@implementer(IDialplanApplication)
class EchoTest:
    """Plays an introduction, then sends the caller's audio straight back."""

    name = "echo"

    async def run(self, channel: IChannel, args: Any) -> None:
        """Echo until the caller hangs up."""
        await channel.answer()
        await channel.play(["echo/intro"])
        channel.echo(True)
        await channel.wait_for_hangup()


@implementer(IDialplanApplication)
class DigitReadback:
    """Asks for digits and reads back every group the caller enters."""

    name = "readback"

    async def run(self, channel: IChannel, args: Any) -> None:
        """Collect digits (ended by # or a pause) and say them, until hang-up."""
        await channel.answer()
        timeout = float((args or {}).get("timeout", 3))
        # play() consumes the digit that interrupts it (Channel._digit): a
        # digit pressed during the introduction starts the first group ("#"
        # ends that group empty).
        pressed = await channel.play(["echo/digits"], interrupt="0123456789*#") or ""
        while True:
            digits = pressed if pressed != "#" else ""
            if pressed != "#":
                digits += await channel.collect_digits(
                    max_digits=20 - len(pressed), timeout=timeout, terminator="#"
                )
            pressed = ""
            # Keys A-D and flash (RFC 4733 events 12-16) have no prompt, and
            # say_digits refuses them: they are not read back.
            digits = "".join(d for d in digits if d in "0123456789*#")
            if digits:
                await channel.play(
                    ["general/you-entered", *channel.prompts.say_digits(digits)]
                )
