"""
Integration tests: blind transfer (REFER, RFC 3515) from baresip's
``transfer`` command, through the real daemon.

Four phones: 2101 calls (440 Hz keyed tone), 2102 and 2103 answer by
themselves (1000 Hz and 700 Hz), 2104 rings and never answers.  Each test
places one call and transfers it:

- the callee transfers the caller, and the caller transfers the callee, to
  2103: the transferor's baresip reports the call closed as transferred
  (it got the final NOTIFY with a 200 sipfrag), the target answers, and
  each remaining party's recording ends with the other's keyed tone
  (frequency and on/off pattern by correlation); the call records say who
  transferred to whom;
- the callee presses ``##2103#`` (the blind transfer code, sent as RFC
  4733 events as baresip sends keys): pbx hangs the callee up and the caller
  talks to 2103 as after a transfer key;
- the callee transfers the caller to 2104, which rings past
  ``transfer.recall_after``: 2104 stops ringing, 2102 is rung back,
  answers, and the caller talks to it again.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.baresip import LIMIT, MODULES, NEEDED, Phone, press
from support.calls import (
    FRAME,
    call_config,
    free_udp_block,
    keyed_tone,
    read_pcm_wav,
    tone_share,
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

CALLER, CALLEE, TARGET, SILENT = "2101", "2102", "2103", "2104"
TONES = {CALLER: 440.0, CALLEE: 1000.0, TARGET: 700.0, SILENT: 1300.0}
#: Longer than any call: baresip hangs up when its file ends.
SIGNAL_SECONDS = 60.0
RELAY_PORTS = 40
#: Packets (20 ms) each way after the join before the call is hung up: 3 s.
PACKETS = 150
RECALL_AFTER = 5


class BlindTransferTests(SynchronousTestCase):
    """A baresip phone's transfer key moves the other party to a third phone."""

    daemon: ClassVar[Daemon]
    api: ClassVar[API]
    phones: ClassVar[dict[str, Phone]]
    patterns: ClassVar[dict[str, list[bool]]]
    workdir: ClassVar[Path]
    sip_port: ClassVar[int]

    @classmethod
    def setUpClass(cls) -> None:
        """Start pbx and the four phones; wait for every registration."""
        baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(
                f"baresip-core is incomplete: no {missing} in {MODULES}"
            )
        cls.workdir = Path(tempfile.mkdtemp(prefix="pbx-transfer-"))
        cls.phones, cls.patterns = {}, {}
        numbers = (CALLER, CALLEE, TARGET, SILENT)
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
        config["transfer"] = {"recall_after": RECALL_AFTER}
        cls.daemon = Daemon(str(cls.workdir / "pbx"), json.dumps(config, indent=1))
        cls.api = API(api_port, admin)
        try:
            cls.daemon.start()
            for index, number in enumerate(numbers):
                samples, cls.patterns[number] = keyed_tone(
                    TONES[number], SIGNAL_SECONDS, seed=index + 7
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
                    answer=number in (CALLEE, TARGET),
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

    def connect(self) -> dict[Phone, int]:
        """2101 calls 2102; both talk; returns each phone's message mark from before the call."""
        marks = {p: p.control.mark() for p in self.phones.values()}
        caller, callee = self.phones[CALLER], self.phones[CALLEE]
        caller.control.command("dial", CALLEE)
        for phone in (caller, callee):
            phone.control.event("CALL_ESTABLISHED", since=marks[phone])
        wait_until(
            lambda: min(self.carried()) >= 25, LIMIT, "audio between 2101 and 2102"
        )
        return marks

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

    def transferred(self, phone: Phone, since: int) -> None:
        """``phone`` closed its call as transferred: the final NOTIFY carried a 2xx sipfrag."""
        phone.control.wait_for(
            lambda m: (
                m.get("type") == "CALL_CLOSED" and "transfer" in json.dumps(m).lower()
            ),
            since=since,
        )

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
        audio = self.newest(listener, before)
        return tail_problems(
            audio,
            talker=TONES[talker],
            own=TONES[listener],
            pattern=self.patterns[talker],
        )

    def records(self, count: int, before: int) -> list[dict[str, Any]]:
        """The newest ``count`` call records, once there are ``before + count``."""
        return wait_until(
            lambda: (
                page["records"][:count]
                if (page := self.api.get(f"/cdr?limit={count}"))["total"]
                >= before + count
                else None
            ),
            LIMIT,
            f"{count} call records",
        )

    def transfer(self, transferor: str, transferee: str, keyed: bool = False) -> None:
        """
        ``transferor`` (2101 or 2102) transfers the other party to 2103, by
        its transfer key or (``keyed``) by pressing ``##2103#`` (RFC 4733
        events); they talk; checked.
        """
        recorded = {n: p.recorded() for n, p in self.phones.items()}
        cdr_before = self.api.get("/cdr?limit=1")["total"]
        marks = self.connect()
        target, moving = self.phones[TARGET], self.phones[transferor]
        try:
            if keyed:
                for n, key in enumerate(f"##{TARGET}#"):
                    press(moving, key, n)
                moving.control.event("CALL_CLOSED", since=marks[moving])
            else:
                moving.control.command(
                    "transfer", f"sip:{TARGET}@127.0.0.1:{self.sip_port}"
                )
                self.transferred(moving, marks[moving])
            target.control.event("CALL_ESTABLISHED", since=marks[target])
            call = wait_until(
                lambda: (
                    (c := self.the_call())
                    and TARGET in (c["caller"], c["callee"])
                    and c
                ),
                LIMIT,
                "the call with 2103 in it",
            )
            self.assertEqual({call["caller"], call["callee"]}, {transferee, TARGET})
            self.talk(f"{transferee} with {TARGET}")
            self.phones[transferee].control.command("hangup")
            for phone in (self.phones[transferee], target):
                phone.control.event("CALL_CLOSED", since=marks[phone])
        except AssertionError as e:
            tail = "\n".join(list(self.daemon.output)[-40:])
            raise AssertionError(f"{e}\npbx:\n{tail}") from None
        self.assertEqual(
            self.heard(TARGET, transferee, recorded[TARGET]),
            [],
            f"{TARGET} hearing {transferee}",
        )
        self.assertEqual(
            self.heard(transferee, TARGET, recorded[transferee]),
            [],
            f"{transferee} hearing {TARGET}",
        )
        rows = self.records(3, cdr_before)
        causes = {r["hangup_cause"] for r in rows}
        self.assertIn(f"transferred to {TARGET}", causes)
        self.assertEqual({r["disposition"] for r in rows}, {"ANSWERED"})
        # One conversation: the three legs share a linked id, and it finds them all.
        [linked] = {r["linked_id"] for r in rows}
        found = self.api.get(f"/cdr?linked_id={quote(linked, safe='')}")["records"]
        self.assertEqual(sorted(r["id"] for r in found), sorted(r["id"] for r in rows))
        [left] = [r for r in rows if r["hangup_cause"].startswith("transferred")]
        # The target sits where the transferor sat, connected once it had left.
        [joined] = [r for r in rows if r["leg"] == left["leg"] and r["id"] != left["id"]]
        self.assertGreaterEqual(joined["answer"], left["end"])

    # -- tests ---------------------------------------------------------------------

    def test_callee_transfers_caller(self) -> None:
        """2102 transfers its caller 2101 to 2103: 2102 is released, 2101 and 2103 hear each other."""
        self.transfer(CALLEE, CALLER)

    def test_caller_transfers_callee(self) -> None:
        """2101 transfers the callee 2102 to 2103: 2101 is released, 2102 and 2103 hear each other."""
        self.transfer(CALLER, CALLEE)

    def test_callee_keys_transfer(self) -> None:
        """2102 presses ##2103# (RFC 4733 in its RTP): 2102 is released, 2101 and 2103 hear each other."""
        self.transfer(CALLEE, CALLER, keyed=True)

    def test_unanswered_target_recalls(self) -> None:
        """A target that rings past recall_after stops ringing and the transferor's phone rings back."""
        silent, callee = self.phones[SILENT], self.phones[CALLEE]
        recorded = self.phones[CALLER].recorded()
        marks = self.connect()
        try:
            callee.control.command(
                "transfer", f"sip:{SILENT}@127.0.0.1:{self.sip_port}"
            )
            silent.control.event("CALL_INCOMING", since=marks[silent])
            self.transferred(callee, marks[callee])
            closed = callee.control.mark()
            silent.control.event("CALL_CLOSED", since=marks[silent])
            callee.control.event("CALL_ESTABLISHED", since=closed)
            call = wait_until(self.the_call, LIMIT, "the recalled call")
            self.assertEqual((call["caller"], call["callee"]), (CALLER, CALLEE))
            self.talk("2101 with 2102 again")
            self.phones[CALLER].control.command("hangup")
            callee.control.event("CALL_CLOSED", since=closed)
        except AssertionError as e:
            tail = "\n".join(list(self.daemon.output)[-40:])
            raise AssertionError(f"{e}\npbx:\n{tail}") from None
        # While 2104 rang, 2101 heard ringback (440 + 480 Hz; no phone sends 480 Hz).
        audio = self.newest(CALLER, recorded)
        frames = [audio[i : i + FRAME] for i in range(0, len(audio) - FRAME, FRAME)]
        ringing = [
            f
            for f in frames
            if tone_share(f, 480.0) > 0.3 and tone_share(f, 440.0) > 0.3
        ]
        self.assertGreater(len(ringing), 50, "frames of ringback 2101 heard")
