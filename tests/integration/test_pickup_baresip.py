"""
Integration tests: call pickup between baresip phones, through the real
daemon.

2301 calls 2302 (440 Hz keyed tone), whose phone rings and is never
answered; 2303 (700 Hz) picks the call up: by directed pickup (``**2302``)
in one test, by group pickup (``*8``, 2302 and 2303 in ``sales``) in the
other.  2302 stops ringing (it gets CANCEL), 2301's call is answered, and
each of 2301 and 2303 records the other's keyed tone (frequency and on/off
pattern by correlation).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.baresip import LIMIT, MODULES, NEEDED, Phone
from support.calls import (
    call_config,
    free_udp_block,
    keyed_tone,
    read_pcm_wav,
    write_pcm_wav,
)
from support.conversation import tail_problems
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    require_binary,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

CALLER, RINGING, PICKER = "2301", "2302", "2303"
TONES = {CALLER: 440.0, RINGING: 1000.0, PICKER: 700.0}
#: Longer than any call: baresip hangs up when its file ends.
SIGNAL_SECONDS = 60.0
RELAY_PORTS = 40
#: Packets (20 ms) each way after the pickup before the call is hung up: 3 s.
PACKETS = 150


class PickupTests(SynchronousTestCase):
    """A baresip phone picks up a call ringing another."""

    daemon: ClassVar[Daemon]
    api: ClassVar[API]
    phones: ClassVar[dict[str, Phone]]
    patterns: ClassVar[dict[str, list[bool]]]
    workdir: ClassVar[Path]

    @classmethod
    def setUpClass(cls) -> None:
        """Start pbx (pickup group sales: 2302, 2303) and the three phones; wait for every registration."""
        baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(
                f"baresip-core is incomplete: no {missing} in {MODULES}"
            )
        cls.workdir = Path(tempfile.mkdtemp(prefix="pbx-pickup-"))
        cls.phones, cls.patterns = {}, {}
        numbers = (CALLER, RINGING, PICKER)
        passwords = {n: strong_password(n) for n in numbers}
        sip_port, api_port = free_port(), free_port()
        first = free_udp_block(RELAY_PORTS + 20 * len(numbers))
        admin = admin_password()
        config = json.loads(
            call_config(
                api_port=api_port,
                sip_port=sip_port,
                admin_password=admin,
                extensions=passwords,
                transports=("udp",),
                state_dir=str(cls.workdir / "pbx" / "state"),
                rtp_ports=(first, first + RELAY_PORTS - 1),
            )
        )
        config["pickup_groups"] = {"sales": [RINGING, PICKER]}
        cls.daemon = Daemon(str(cls.workdir / "pbx"), json.dumps(config, indent=1))
        cls.api = API(api_port, admin)
        try:
            cls.daemon.start()
            for index, number in enumerate(numbers):
                samples, cls.patterns[number] = keyed_tone(
                    TONES[number], SIGNAL_SECONDS, seed=index + 21
                )
                source = cls.workdir / f"signal-{number}.wav"
                write_pcm_wav(source, samples)
                cls.phones[number] = Phone(
                    baresip,
                    cls.workdir / f"baresip-{number}",
                    number,
                    passwords[number],
                    sip_port,
                    Path("..", source.name),
                    first + RELAY_PORTS + 20 * index,
                    answer=False,
                )
            for number in numbers:
                wait_until(
                    lambda n=number: [
                        r for r in cls.api.registrations() if r["extension"] == n
                    ],
                    LIMIT,
                    f"{number}'s registration",
                )
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        """Stop the phones and pbx; remove their files."""
        for phone in cls.phones.values():
            phone.stop()
        cls.daemon.stop()
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def tearDown(self) -> None:
        """No call is left, and pbx logged no traceback."""
        wait_until(lambda: self.api.get("/calls")["calls"] == [], LIMIT, "no call left")
        self.assertFalse(self.daemon.tracebacks)

    def the_call(self) -> dict[str, Any] | None:
        """The one live call, once confirmed."""
        calls = self.api.get("/calls")["calls"]
        return (
            calls[0] if len(calls) == 1 and calls[0]["state"] == "confirmed" else None
        )

    def carried(self) -> tuple[int, int]:
        """Packets the relay carried each way in the one live call so far."""
        call = self.the_call()
        if call is None:
            return (0, 0)
        return call["media"]["a_to_b"]["packets"], call["media"]["b_to_a"]["packets"]

    def newest(self, listener: str, before: set[Path]) -> list[int]:
        """The audio of ``listener``'s newest recording not in ``before``, once closed."""
        phone = self.phones[listener]
        path = max(
            wait_until(
                lambda: phone.recorded() - before or None,
                LIMIT,
                f"{listener}'s recording",
            ),
            key=lambda p: p.stat().st_mtime,
        )
        return wait_until(lambda: read_pcm_wav(path) or None, LIMIT, f"audio in {path}")

    def heard(self, listener: str, talker: str, before: set[Path]) -> list[str]:
        """What is wrong with the end of ``listener``'s newest recording as ``talker``'s tone."""
        return tail_problems(
            self.newest(listener, before),
            talker=TONES[talker],
            own=TONES[listener],
            pattern=self.patterns[talker],
        )

    def pick_up(self, number: str) -> None:
        """2301 calls 2302, which rings; 2303 dials ``number``; 2301 and 2303 talk; checked."""
        recorded = {n: p.recorded() for n, p in self.phones.items()}
        marks = {p: p.control.mark() for p in self.phones.values()}
        caller, ringing, picker = (self.phones[n] for n in (CALLER, RINGING, PICKER))
        try:
            caller.control.command("dial", RINGING)
            ringing.control.event("CALL_INCOMING", since=marks[ringing])
            picker.control.command("dial", number)
            for phone in (caller, picker):
                phone.control.event("CALL_ESTABLISHED", since=marks[phone])
            ringing.control.event("CALL_CLOSED", since=marks[ringing])
            start = wait_until(
                lambda: min(self.carried()) >= 1 and self.carried(),
                LIMIT,
                "audio 2301 <-> 2303",
            )
            wait_until(
                lambda: all(
                    n - s >= PACKETS for n, s in zip(self.carried(), start, strict=True)
                ),
                LIMIT,
                f"{PACKETS} packets each way",
            )
            call = self.the_call()
            assert call is not None
            self.assertEqual(call["caller"], CALLER)
            caller.control.command("hangup")
            for phone in (caller, picker):
                phone.control.event("CALL_CLOSED", since=marks[phone])
        except AssertionError as e:
            tail = "\n".join(list(self.daemon.output)[-40:])
            raise AssertionError(f"{e}\npbx:\n{tail}") from None
        self.assertEqual(
            self.heard(PICKER, CALLER, recorded[PICKER]), [], "2303 hearing 2301"
        )
        self.assertEqual(
            self.heard(CALLER, PICKER, recorded[CALLER]), [], "2301 hearing 2303"
        )

    def test_directed_pickup(self) -> None:
        """2303 dials **2302 while 2302 rings: 2303 and 2301 hear each other, 2302 stops ringing."""
        self.pick_up("**2302")

    def test_group_pickup(self) -> None:
        """2303 dials *8 while 2302, of its pickup group, rings: 2303 and 2301 hear each other."""
        self.pick_up("*8")
