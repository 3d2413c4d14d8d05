"""
Helpers for the paging unit tests (``unit/features/paging/``).

- :class:`PageRig`: the ``paging`` and ``intercom`` applications on a
  :class:`~pbx.testing.FakePBX` and a :class:`task.Clock`; member phones
  are :class:`support.conference.Phone` channels (a steady tone of their
  own, what pbx sends them kept decoded) that :meth:`FakePBX.originate`
  hands back when they "answer"; every phone ticks each 20 ms.
- :class:`RingingPBX`: a :class:`~pbx.testing.FakePBX` whose originated
  legs ring until the test answers them (or they are cancelled).
- :class:`FakeSocket`: a multicast socket that keeps what is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from attrs import Factory, define

from twisted.internet.defer import Deferred

from pbx.calls.originated import Originated
from pbx.calls.outbound import check_extra_headers
from pbx.features.paging.app import Intercom, Paging
from pbx.features.paging.options import parse_options
from pbx.interfaces import ICodec
from pbx.media.codecs import PCMU
from pbx.testing import FakePBX

from support.conference import TICK, Phone


class FakeSocket:
    """A sending socket: datagrams are kept; :attr:`refuse` makes ``sendto`` fail."""

    def __init__(self, interface: str = "", ttl: int = 1, loop: bool = True) -> None:
        self.interface, self.ttl, self.loop = interface, ttl, loop
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.closed = False
        self.refuse: OSError | None = None

    def sendto(self, data: bytes, address: tuple[str, int], /) -> int:
        """Keep the datagram (or raise :attr:`refuse`)."""
        if self.closed:
            raise OSError("closed")
        if self.refuse is not None:
            raise self.refuse
        self.sent.append((data, address))
        return len(data)

    def close(self) -> None:
        """Mark closed."""
        self.closed = True


@define(eq=False)
class RingingPBX(FakePBX):
    """
    A FakePBX whose :meth:`originate` rings until :meth:`answer`;
    cancelling records the number in :attr:`cancelled` (the outcome is then
    "cancelled"), unless :attr:`answer_on_cancel` has a channel for it: then
    the leg answers just as it is cancelled (the race of a phone answering
    while pbx sends CANCEL).
    """

    ringing: dict[str, Deferred[Originated]] = Factory(dict)
    cancelled: list[str] = Factory(list)
    answer_on_cancel: dict[str, Any] = Factory(dict)

    def originate(
        self,
        number: str,
        caller: str,
        caller_name: str = "",
        timeout: float | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Deferred[Originated]:
        """Ring ``number`` until answered or cancelled."""
        self.originated.append(number)
        self.originate_headers[number] = check_extra_headers(headers)

        def cancel(d: Deferred[Originated]) -> None:
            channel = self.answer_on_cancel.get(number)
            if channel is not None:
                self.answer(number, channel)
            else:
                self.cancelled.append(number)
                d.callback(Originated("cancelled"))

        d: Deferred[Originated] = Deferred(cancel)
        self.ringing[number] = d
        return d

    def answer(self, number: str, channel: Any) -> None:
        """The phone of ``number`` answers with ``channel``."""
        self.ringing.pop(number).callback(
            Originated(
                "answered",
                channel,
                channel.wait_for_hangup(),
                lambda: channel.closed("pbx"),
            )
        )


class PageRig:
    """The two applications with the options of ``yaml_text``, and phones."""

    def __init__(self, yaml_text: str, pbx: FakePBX | None = None) -> None:
        self.pbx = pbx if pbx is not None else FakePBX()
        self.clock = self.pbx.clock
        self.options = parse_options(yaml.safe_load(yaml_text))
        self.sockets: list[FakeSocket] = []
        self.paging = Paging(self.pbx, self.options, self._socket)
        self.intercom = Intercom(self.pbx, self.options)
        self.phones: list[Phone] = []
        self.runs: list[Deferred[None]] = []

    def _socket(self, interface: str, ttl: int, loop: bool) -> FakeSocket:
        sock = FakeSocket(interface, ttl, loop)
        self.sockets.append(sock)
        return sock

    def phone(
        self,
        number: str,
        frequency: float | None,
        dialled: str = "",
        codec: ICodec | None = None,
    ) -> Phone:
        """A phone of ``number`` sending a tone of ``frequency`` (None: silence), in G.711 unless ``codec``."""
        phone = Phone(self.clock, number, dialled, codec or PCMU(), frequency)
        self.phones.append(phone)
        return phone

    def member(
        self, number: str, frequency: float | None = None, outcome: str = "answered"
    ) -> Phone:
        """A member phone that :meth:`FakePBX.originate` answers with (or the outcome it gives)."""
        phone = self.phone(number, frequency)
        self.pbx.answerers[number] = phone.channel
        self.pbx.outcomes[number] = outcome
        return phone

    def dial(
        self,
        app: Any,
        number: str,
        dialled: str,
        frequency: float | None = 600.0,
        args: Any = None,
        codec: ICodec | None = None,
    ) -> tuple[Phone, Deferred[None]]:
        """The phone of ``number`` dials ``dialled`` and is handed to ``app``."""
        phone = self.phone(number, frequency, dialled, codec)
        done = app.run(phone.channel, {} if args is None else args)
        self.runs.append(done)
        return phone, done

    def hang_up_all(self) -> list[Deferred[None]]:
        """
        Everyone still on the line hangs up; the applications' runs that
        have not finished after that (there should be none).
        """
        for phone in self.phones:
            phone.hang_up()
        return [d for d in self.runs if not d.called]

    def run(self, seconds: float) -> None:
        """Let ``seconds`` pass, every phone on the line sending and receiving each tick."""
        for _ in range(round(seconds / TICK)):
            self.clock.advance(TICK)
            for phone in self.phones:
                if not phone.channel.hung_up:
                    phone.channel.tick(phone.frame())
