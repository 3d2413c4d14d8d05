"""
Integration tests: call park from baresip's ``transfer`` command (a REFER
to the park code), retrieval by dialling the slot, and the recall of an
unretrieved call, through the real daemon.

Three phones, each sending its own keyed tone: 2201 calls (440 Hz), 2202
answers by itself (1000 Hz) and parks the caller, 2203 (700 Hz) dials the
slot.

- 2202 parks 2201: 2202's baresip closes its call as transferred (the
  final NOTIFY's sipfrag was 2xx), ``/api/v1/park/`` lists slot 71 with
  2201 parked by 2202; before it left, 2202 heard the slot said (its
  recording holds the ``digits/7`` and ``digits/1`` prompts, each found by
  correlation above 0.9); 2201 hears music on hold (each half second of
  what it records matches the default class's track, at 8 kHz, by
  correlation above 0.9, as the music-on-hold test checks); 2203 dials 71 and is connected to 2201: each one's
  recording ends with the other's keyed tone (frequency and on/off pattern
  by correlation), and the slot is free again;
- a call nobody retrieves rings 2202 back after ``park.timeout``; 2202
  answers and talks to 2201 again.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.music import default_music_dir, load_music_class
from pbx.media.prompts import PromptLibrary
from pbx.media.wav import load_wav

from support.baresip import LIMIT, MODULES, NEEDED, Phone
from support.calls import (
    FRAME,
    RATE,
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
from support.music import best_match

pytestmark = pytest.mark.integration

CALLER, PARKER, RETRIEVER = "2201", "2202", "2203"
TONES = {CALLER: 440.0, PARKER: 1000.0, RETRIEVER: 700.0}
#: Longer than any call: baresip hangs up when its file ends.
SIGNAL_SECONDS = 60.0
RELAY_PORTS = 40
#: Packets (20 ms) each way after the join before the call is hung up: 3 s.
PACKETS = 150
PARK_TIMEOUT = 15
#: Seconds of music recorded, after a margin for the park to take effect.
STRETCH, SETTLE = 3.0, 0.8
#: Frames of each piece of music correlated on its own (0.5 s).
PIECE = 25


def growing(path: Path) -> np.ndarray:
    """What a phone decoded so far into ``path`` (read while it is being written)."""
    data = path.read_bytes()[44:]
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64)


class ParkTests(SynchronousTestCase):
    """A baresip phone parks its call; another phone retrieves it, or the parker is rung back."""

    daemon: ClassVar[Daemon]
    api: ClassVar[API]
    phones: ClassVar[dict[str, Phone]]
    patterns: ClassVar[dict[str, list[bool]]]
    workdir: ClassVar[Path]
    sip_port: ClassVar[int]
    music: ClassVar[np.ndarray]

    @classmethod
    def setUpClass(cls) -> None:
        """Start pbx (park on 70, slots 71-73) and the three phones; wait for every registration."""
        baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(
                f"baresip-core is incomplete: no {missing} in {MODULES}"
            )
        cls.workdir = Path(tempfile.mkdtemp(prefix="pbx-park-"))
        cls.phones, cls.patterns = {}, {}
        numbers = (CALLER, PARKER, RETRIEVER)
        passwords = {n: strong_password(n) for n in numbers}
        cls.sip_port, api_port = free_port(), free_port()
        first = free_udp_block(RELAY_PORTS + 20 * len(numbers))
        admin = admin_password()
        config = json.loads(
            call_config(
                api_port=api_port,
                sip_port=cls.sip_port,
                admin_password=admin,
                extensions=passwords,
                transports=("udp",),
                state_dir=str(cls.workdir / "pbx" / "state"),
                rtp_ports=(first, first + RELAY_PORTS - 1),
            )
        )
        config["park"] = {"code": "70", "slots": "71-73", "timeout": PARK_TIMEOUT}
        config["moh"] = {}  # the default class pbx ships
        cls.music = load_music_class("default", default_music_dir()).pcm(RATE)
        cls.daemon = Daemon(str(cls.workdir / "pbx"), json.dumps(config, indent=1))
        cls.api = API(api_port, admin)
        try:
            cls.daemon.start()
            for index, number in enumerate(numbers):
                samples, cls.patterns[number] = keyed_tone(
                    TONES[number], SIGNAL_SECONDS, seed=index + 11
                )
                source = cls.workdir / f"signal-{number}.wav"
                write_pcm_wav(source, samples)
                cls.phones[number] = Phone(
                    baresip,
                    cls.workdir / f"baresip-{number}",
                    number,
                    passwords[number],
                    cls.sip_port,
                    Path("..", source.name),
                    first + RELAY_PORTS + 20 * index,
                    answer=number == PARKER,
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
        """No call is left, no slot is occupied, and pbx logged no traceback."""
        wait_until(lambda: self.api.get("/calls")["calls"] == [], LIMIT, "no call left")
        self.assertEqual(self.api.get("/park/")["occupied"], [])
        self.assertFalse(self.daemon.tracebacks)

    # -- helpers -------------------------------------------------------------------

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

    def talk(self, what: str) -> None:
        """Wait until :data:`PACKETS` more packets went each way in the live call."""
        start = self.carried()
        wait_until(
            lambda: all(
                n - s >= PACKETS for n, s in zip(self.carried(), start, strict=True)
            ),
            LIMIT,
            f"{PACKETS} packets each way ({what})",
        )

    def said(self, before: set[Path]) -> dict[str, float]:
        """
        How well each digit prompt of slot 71 is found in 2202's newest
        recording: read as it grows, until both are found or time is up.
        """
        phone = self.phones[PARKER]
        prompts = PromptLibrary()
        digits = {
            d: load_wav(prompts.path(f"digits/{d}")).samples.astype(np.float64)
            for d in "71"
        }
        scores: dict[str, float] = {}

        def found() -> bool:
            fresh = phone.recorded() - before
            if not fresh:
                return False
            audio = growing(max(fresh, key=lambda p: p.stat().st_mtime))
            if len(audio) < RATE:
                return False
            scores.update({d: best_match(pcm, audio) for d, pcm in digits.items()})
            return min(scores.values()) > 0.9

        try:
            wait_until(found, LIMIT, "the slot in 2202's recording")
        except AssertionError:
            pass
        return scores

    def park(self) -> dict[Phone, int]:
        """2201 calls 2202, 2202 parks it and hears the slot; returns each phone's mark from before the call."""
        recorded = self.phones[PARKER].recorded()
        marks = {p: p.control.mark() for p in self.phones.values()}
        caller, parker = self.phones[CALLER], self.phones[PARKER]
        caller.control.command("dial", PARKER)
        for phone in (caller, parker):
            phone.control.event("CALL_ESTABLISHED", since=marks[phone])
        wait_until(lambda: min(self.carried()) >= 25, LIMIT, "audio 2201 <-> 2202")
        parker.control.command("transfer", f"sip:70@127.0.0.1:{self.sip_port}")
        parker.control.wait_for(
            lambda m: (
                m.get("type") == "CALL_CLOSED" and "transfer" in json.dumps(m).lower()
            ),
            since=marks[parker],
        )
        [slot] = wait_until(
            lambda: self.api.get("/park/")["occupied"] or None, LIMIT, "slot 71 taken"
        )
        self.assertEqual(
            (slot["slot"], slot["parked"], slot["parker"]), ("71", CALLER, PARKER)
        )
        scores = self.said(recorded)
        self.assertGreater(min(scores.values()), 0.9, f"2202 hearing 71: {scores}")
        return marks

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

    def music_problems(self, listener: str, before: set[Path]) -> list[float]:
        """
        The correlation with the default class of each half second of the
        next :data:`STRETCH` seconds ``listener`` records (after
        :data:`SETTLE`), when fewer than all but one pass 0.9; else [].
        """
        phone = self.phones[listener]
        path = wait_until(
            lambda: (
                max(phone.recorded() - before, key=lambda p: p.stat().st_mtime)
                if phone.recorded() - before
                else None
            ),
            LIMIT,
            f"{listener}'s recording",
        )
        start = len(growing(path)) / RATE + SETTLE
        wait_until(
            lambda: len(growing(path)) / RATE >= start + STRETCH,
            LIMIT,
            f"{STRETCH}s more of {listener}'s recording",
        )
        audio = growing(path)[int(start * RATE) : int((start + STRETCH) * RATE)]
        step = PIECE * FRAME
        scores = [
            best_match(audio[i : i + step], self.music.astype(np.float64))
            for i in range(0, len(audio) - step + 1, step)
        ]
        return [] if sum(s > 0.9 for s in scores) >= len(scores) - 1 else scores

    def failed(self, e: AssertionError) -> AssertionError:
        """``e`` with the end of pbx's log."""
        tail = "\n".join(list(self.daemon.output)[-40:])
        return AssertionError(f"{e}\npbx:\n{tail}")

    # -- tests ---------------------------------------------------------------------

    def test_park_and_retrieve(self) -> None:
        """2202 parks 2201 at 71; 2203 dials 71 and 2201 and 2203 hear each other."""
        recorded = {n: p.recorded() for n, p in self.phones.items()}
        retriever = self.phones[RETRIEVER]
        try:
            marks = self.park()
            self.assertEqual(
                self.music_problems(CALLER, recorded[CALLER]), [], "2201's music"
            )
            retriever.control.command("dial", "71")
            retriever.control.event("CALL_ESTABLISHED", since=marks[retriever])
            call = wait_until(
                lambda: (
                    (c := self.the_call())
                    and RETRIEVER in (c["caller"], c["callee"])
                    and c
                ),
                LIMIT,
                "the call with 2203 in it",
            )
            self.assertEqual({call["caller"], call["callee"]}, {CALLER, RETRIEVER})
            self.assertEqual(self.api.get("/park/")["occupied"], [])
            self.talk("2201 with 2203")
            self.phones[CALLER].control.command("hangup")
            for phone in (self.phones[CALLER], retriever):
                phone.control.event("CALL_CLOSED", since=marks[phone])
        except AssertionError as e:
            raise self.failed(e) from None
        self.assertEqual(
            self.heard(RETRIEVER, CALLER, recorded[RETRIEVER]), [], "2203 hearing 2201"
        )
        self.assertEqual(
            self.heard(CALLER, RETRIEVER, recorded[CALLER]), [], "2201 hearing 2203"
        )

    def test_unretrieved_recalls_parker(self) -> None:
        """A call nobody retrieves rings 2202 back after park.timeout; 2202 answers and talks to 2201."""
        recorded = self.phones[PARKER].recorded()
        parker = self.phones[PARKER]
        try:
            self.park()
            closed = parker.control.mark()
            parker.control.event("CALL_ESTABLISHED", since=closed)
            call = wait_until(self.the_call, LIMIT, "the recalled call")
            self.assertEqual((call["caller"], call["callee"]), (CALLER, PARKER))
            self.assertEqual(self.api.get("/park/")["occupied"], [])
            self.talk("2201 with 2202 again")
            self.phones[CALLER].control.command("hangup")
            parker.control.event("CALL_CLOSED", since=closed)
        except AssertionError as e:
            raise self.failed(e) from None
        self.assertEqual(
            self.heard(PARKER, CALLER, recorded),
            [],
            "2202 hearing 2201 after the recall",
        )
