"""
Helpers for the supervision unit tests (``unit/features/supervision/``).

- :class:`FakeCallTap`: a live relayed call as :meth:`pbx.interfaces.IPBX.tap_call`
  gives it, with two parties that each send a steady tone of their own
  (:meth:`FakeCallTap.talk`) and keep what a feed sends them, decoded.
- :class:`Desk`: a :class:`~pbx.testing.FakePBX` on a :class:`task.Clock`
  with the supervision service started, one call between 1001 and 1002,
  and supervisors calling in on real channels
  (:class:`support.conference.Phone`), everything ticked 20 ms at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import yaml

from twisted.internet import task

from pbx.features.supervision.service import SupervisionService
from pbx.interfaces import ICodec
from pbx.media.codecs import PCMA, PCMU
from pbx.media.rtp import RTPPacket
from pbx.plugins.supervision import supervision
from pbx.testing import FakePBX

from support.conference import AMPLITUDE, TICK, Phone, level

__all__ = ["AMPLITUDE", "Desk", "FakeCallTap", "level"]

#: Each party's tone (Hz).
TONES = {"a": 600.0, "b": 900.0}
#: The supervisor's tone.
SUPERVISOR_TONE = 1300.0


class FakeCallTap:
    """
    A call between ``caller`` (leg a) and ``callee`` (leg b), both PCMU.

    :ivar taps: the listener of each tapped leg.
    :ivar feeds: each fed leg's source and payload type.
    :ivar heard: what each leg's phone got from a feed, decoded.
    """

    def __init__(
        self,
        caller: str = "1001",
        callee: str = "1002",
        types: dict[int, tuple[str, int]] | None = None,
    ) -> None:
        self.caller = caller
        self.callee = callee
        self.codecs: dict[str, ICodec] = {"pcmu": PCMU(), "pcma": PCMA()}
        self.types = (
            types
            if types is not None
            else {0: ("pcmu", 8000), 101: ("telephone-event", 8000)}
        )
        self.taps: dict[str, Callable[[bytes], object]] = {}
        self.feeds: dict[str, tuple[Any, int]] = {}
        self.heard: dict[str, list[np.ndarray]] = {"a": [], "b": []}
        self._removes: dict[str, Callable[[], None]] = {}
        self._encoder = PCMU().new_encoder()
        self._decoder = PCMU().new_decoder()
        self._phase = 0
        self._sequence = 0

    def listen(
        self, leg: str, listener: Callable[[bytes], object]
    ) -> Callable[[], None]:
        """Keep ``listener`` (one per leg here); returns what forgets it."""
        self.taps[leg] = listener

        def remove() -> None:
            if self.taps.get(leg) is listener:
                del self.taps[leg]

        return remove

    def payload_types(self, leg: str) -> dict[int, tuple[str, int]]:
        """PCMU and telephone-event, for both legs."""
        return dict(self.types)

    def feed(self, leg: str, source: Any, payload_type: int) -> None:
        """Listen to ``source`` as the relay's feed does, keeping what it sends decoded."""
        self.unfeed(leg)
        self.feeds[leg] = (source, payload_type)
        self._removes[leg] = source.add(
            lambda payload: self.heard[leg].append(
                np.asarray(self._decoder.decode(payload), dtype=np.int16)
            )
        )

    def unfeed(self, leg: str) -> None:
        """Stop listening to ``leg``'s source."""
        self.feeds.pop(leg, None)
        remove = self._removes.pop(leg, None)
        if remove is not None:
            remove()

    def talk(self, pt: int = 0) -> None:
        """Each tapped leg sends one 20 ms frame of its tone."""
        t = (self._phase + np.arange(160)) / 8000
        self._phase += 160
        self._sequence += 1
        for leg, listener in list(self.taps.items()):
            pcm = (np.sin(2 * np.pi * TONES[leg] * t) * AMPLITUDE).astype(np.int16)
            packet = RTPPacket(
                pt,
                self._sequence,
                self._sequence * 160,
                0x1000 if leg == "a" else 0x2000,
                self._encoder.encode(pcm),
            )
            listener(packet.to_bytes())

    def hears(self, leg: str, frequency: float, seconds: float = 0.4) -> float:
        """How loud ``frequency`` was in the last ``seconds`` fed to ``leg`` (1: a phone's tone)."""
        frames = self.heard[leg][-round(seconds / TICK) :]
        audio = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
        return level(audio, frequency, 8000) / AMPLITUDE


class Desk:
    """
    The supervision service in a :class:`FakePBX`, with one live call
    (``call-1``: 1001 calls 1002) and the options of ``options_yaml``.
    """

    def __init__(self, options_yaml: str, tap: FakeCallTap | None = None) -> None:
        self.clock = task.Clock()
        self.pbx = FakePBX(clock=self.clock)
        self.tap = tap if tap is not None else FakeCallTap()
        self.pbx.taps["call-1"] = self.tap
        self.pbx.calls.append(
            {
                "call_id": "call-1",
                "caller": self.tap.caller,
                "callee": self.tap.callee,
                "state": "answered",
            }
        )
        self.service = supervision.make_service(
            self.pbx, supervision.parse_options(yaml.safe_load(options_yaml))
        )
        assert isinstance(self.service, SupervisionService)
        self.service.startService()
        self.phones: list[Phone] = []

    @property
    def supervision(self) -> Any:
        """The running :class:`~pbx.features.supervision.desk.Supervision`."""
        return self.service.supervision

    def call(self, supervisor: str, dialled: str, args: Any = None) -> Phone:
        """``supervisor`` dials ``dialled``: the ``supervise`` application runs on its channel."""
        phone = Phone(self.clock, supervisor, dialled, PCMU(), SUPERVISOR_TONE)
        self.phones.append(phone)
        phone.done = self.pbx.applications["supervise"].run(phone.channel, args)
        return phone

    def run(self, seconds: float) -> None:
        """Tick everything: the parties talk, the clock advances, each live phone's channel ticks."""
        for _ in range(round(seconds / TICK)):
            self.tap.talk()
            self.clock.advance(TICK)
            for phone in self.phones:
                if not phone.channel.hung_up:
                    phone.channel.tick(phone.frame())
