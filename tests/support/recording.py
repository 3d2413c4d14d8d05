"""
Stand-ins for the recording feature's tests: a live call's tap as
:meth:`pbx.interfaces.IPBX.tap_call` gives it, and a phone that sends a tone
or key presses through it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from attrs import define, field

from pbx.media import g711
from pbx.media.codecs import PCMU
from pbx.media.dtmf import encode_event
from pbx.media.rtp import RTPSender


@define(eq=False)
class FakeTap:
    """A live call's media as :meth:`IPBX.tap_call` gives it: records who listens."""

    call_id: str
    caller: str
    callee: str
    codec: str = "PCMU"
    codecs: dict[str, Any] = field(factory=lambda: {"pcmu": PCMU()})
    listeners: dict[str, Any] = field(factory=dict)
    announced: list[str] = field(factory=list)
    key_listeners: list[Any] = field(factory=list)

    def announce(self, prompt: str = "general/call-recorded") -> Any:
        """Record the prompt both parties would hear."""
        from twisted.internet.defer import succeed

        self.announced.append(prompt)
        return succeed(True)

    def tap(self, leg: str, listener: Any) -> None:
        """Listen to ``leg``."""
        self.listeners[leg] = listener

    def keys(self, listener: Any) -> Any:
        """Watch the call's keys until the returned function is called."""
        self.key_listeners.append(listener)
        return lambda: self.key_listeners.remove(listener)

    def press(self, leg: str, keys: str) -> None:
        """The party in ``leg`` presses ``keys`` (as the call's key stream reports them)."""
        for key in keys:
            for listener in list(self.key_listeners):
                listener(leg, key)

    def untap(self, leg: str) -> None:
        """Stop listening."""
        self.listeners.pop(leg, None)

    def payload_types(self, leg: str) -> dict[int, tuple[str, int]]:
        """PCMU and telephone-event."""
        return {0: ("pcmu", 8000), 101: ("telephone-event", 8000)}


class Talker:
    """One phone's RTP through a tap listener: a tone, or key presses."""

    def __init__(self, frequency: float) -> None:
        self.sender = RTPSender(0)
        self.frequency = frequency
        self.n = 0

    def frame(self) -> bytes:
        """The next 20 ms of tone."""
        t = (np.arange(160) + self.n * 160) / 8000
        self.n += 1
        pcm = (6000 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        return self.sender.next_packet(g711.ulaw_encode(pcm), 160).to_bytes()

    def key(self, digit: str) -> list[bytes]:
        """A press of ``digit``: a start packet and three end packets (RFC 4733 §2.5.1.4)."""
        packets = [
            self.sender.next_event_packet(
                encode_event(digit, False, 10, 160), pt=101, start=True
            )
        ]
        packets += [
            self.sender.next_event_packet(encode_event(digit, True, 10, 800), pt=101)
            for _ in range(3)
        ]
        self.sender.advance(800)
        return [p.to_bytes() for p in packets]
