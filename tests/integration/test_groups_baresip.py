"""
Integration test: ring groups, follow-me and do-not-disturb by schedule
with baresip phones through the real daemon.

Six baresip phones register (1001 calls; 1002-1006 are called and answer
only when the test tells them to, with ctrl_tcp's ``accept``).  Each plays
its own keyed tone (:func:`support.calls.keyed_tone`) and records what it
hears, so an answered call is checked for audio both ways as
``test_calls_baresip.py`` does.  Ringing is seen as baresip's
``CALL_INCOMING`` events, and its stopping (pbx's CANCEL) as
``CALL_CLOSED`` events at phones that never answered.

The configuration:

- group ``sales`` (600): ringall over 1002, 1003, 1004;
- group ``support`` (601): hunt over 1002, 1003, 3 s each;
- group ``night`` (602): ringall over 1002 for 3 s, then extension 1004;
- follow-me of 1005: after 3 s, 1003 rings too;
- follow-me of 1004: after 2 s, instead, 1003 with "press 1 to accept";
- 1006 has a DND schedule open one minute a week, a few days from now.

Only loopback is used.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.baresip import LIMIT, MODULES, NEEDED, Phone, press, recorded_seconds
from support.calls import (
    RATE,
    best_alignment,
    call_config,
    envelope,
    free_udp_block,
    heard_problems,
    keyed_tone,
    tone_share,
    write_pcm_wav,
)
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    http,
    require_binary,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

NUMBERS = ("1001", "1002", "1003", "1004", "1005", "1006")
TONES = {
    "1001": (440.0, 1),
    "1002": (1000.0, 2),
    "1003": (700.0, 3),
    "1004": (1300.0, 4),
    "1005": (1700.0, 5),
    "1006": (1900.0, 6),
}
SIGNAL_SECONDS = 40.0
#: Packets each way the relay carries before the test hangs up (3 s).
PACKETS = 150
RELAY_PORTS = 40
HUNT_MEMBER_TIMEOUT = 3
FOLLOW_AFTER = 3


def closed_schedule() -> dict[str, Any]:
    """A DND schedule open only for one minute a week, a day away from now (UTC): closed now."""
    day = (datetime.datetime.now(datetime.UTC).weekday() + 3) % 7
    return {
        "timezone": "UTC",
        "hours": [
            {
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][day],
                "from": "03:00",
                "to": "03:01",
            }
        ],
    }


class GroupTests(SynchronousTestCase):
    """Groups, follow-me and DND schedules with real phones."""

    def setUp(self) -> None:
        """Start pbx with the groups above; start and register the five phones."""
        self.baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(
                f"baresip-core is incomplete: no {missing} in {MODULES}"
            )
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.sip_port = free_port()
        api_port = free_port()
        self.passwords = {n: strong_password(n) for n in NUMBERS}
        relay, *phones = port_blocks([RELAY_PORTS] + [20] * len(NUMBERS))
        self.phone_rtp = dict(zip(NUMBERS, phones, strict=True))
        admin = admin_password()
        config = json.loads(
            call_config(
                api_port=api_port,
                sip_port=self.sip_port,
                admin_password=admin,
                extensions=self.passwords,
                transports=("udp",),
                rtp_ports=(relay, relay + RELAY_PORTS - 1),
            )
        )
        config["groups"] = {
            "sales": {
                "number": "600",
                "members": ["1002", "1003", "1004"],
                "strategy": "ringall",
            },
            "support": {
                "number": "601",
                "members": ["1002", "1003"],
                "strategy": "hunt",
                "member_timeout": HUNT_MEMBER_TIMEOUT,
                "timeout": 30,
            },
            "night": {
                "number": "602",
                "members": ["1002"],
                "timeout": 3,
                "final": {"extension": "1004"},
            },
        }
        config["follow_me"] = {
            "1005": {"after": FOLLOW_AFTER, "numbers": ["1003"], "mode": "also"},
            "1004": {"after": 2, "numbers": ["1003"], "mode": "only", "confirm": True},
        }
        config["dnd_schedule"] = {"1006": closed_schedule()}
        self.daemon = Daemon(str(self.workdir / "pbx"), json.dumps(config, indent=1))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(api_port, admin)
        self.patterns: dict[str, list[bool]] = {}
        self.phones = {n: self.start_phone(n) for n in NUMBERS}

    def start_phone(self, number: str) -> Phone:
        """Write ``number``'s signal and start its phone (answering only on ``accept``); wait for its registration."""
        frequency, seed = TONES[number]
        samples, self.patterns[number] = keyed_tone(frequency, SIGNAL_SECONDS, seed)
        source = self.workdir / f"signal-{number}.wav"
        write_pcm_wav(source, samples)
        phone = Phone(
            self.baresip,
            self.workdir / f"baresip-{number}",
            number,
            self.passwords[number],
            self.sip_port,
            Path("..", source.name),
            self.phone_rtp[number],
            answer=False,
        )
        self.addCleanup(phone.stop)
        wait_until(
            lambda: [r for r in self.api.registrations() if r["extension"] == number],
            LIMIT,
            f"{number}'s registration",
        )
        return phone

    def talk_and_hang_up(self, caller: str, callee: str) -> None:
        """Once 3 s of audio went each way, the caller hangs up; each heard the other."""

        def carried() -> bool:
            calls = self.api.get("/calls")["calls"]
            if len(calls) != 1 or calls[0]["state"] != "confirmed":
                return False
            media = calls[0]["media"]
            return (
                min(media["a_to_b"]["packets"], media["b_to_a"]["packets"]) >= PACKETS
            )

        wait_until(carried, LIMIT, f"{PACKETS} packets each way")
        self.phones[caller].control.command("hangup")
        for number in (caller, callee):
            self.phones[number].control.event("CALL_CLOSED")
        for number in (caller, callee):
            self.assertEqual(self.phones[number].stop(), 0)
        for listener, talker in ((caller, callee), (callee, caller)):
            problems = heard_problems(
                self.phones[listener].heard(),
                talker=TONES[talker][0],
                own=TONES[listener][0],
                pattern=self.patterns[talker],
            )
            self.assertEqual(problems, [], f"{listener} hearing {talker}")

    def b_leg_callee(self) -> str:
        """The callee of the answered leg's record (the member whose phone answered)."""

        def b_record() -> str | None:
            rows = [r for r in self.api.get("/cdr")["records"] if r["leg"] == "b"]
            return rows[0]["callee"] if rows else None

        return str(wait_until(b_record, LIMIT, "the answered leg's record"))

    def test_ringall(self) -> None:
        """
        600 rings 1002, 1003 and 1004 at once; 1003 answers; the other two
        stop ringing (CANCEL); 1001 and 1003 hear each other; the record of
        the answered leg names 1003.
        """
        caller = self.phones["1001"]
        caller.control.command("dial", "600")
        for number in ("1002", "1003", "1004"):
            self.phones[number].control.event("CALL_INCOMING")
        self.phones["1003"].control.command("accept")
        caller.control.event("CALL_ESTABLISHED")
        self.phones["1003"].control.event("CALL_ESTABLISHED")
        for number in ("1002", "1004"):
            self.phones[number].control.event("CALL_CLOSED")
        self.talk_and_hang_up("1001", "1003")
        self.assertEqual(self.b_leg_callee(), "1003")

    def test_hunt(self) -> None:
        """601 rings 1002 alone; after member_timeout it stops and 1003 rings, answers and talks."""
        caller = self.phones["1001"]
        caller.control.command("dial", "601")
        self.phones["1002"].control.event("CALL_INCOMING")
        started = time.monotonic()
        self.phones["1002"].control.event("CALL_CLOSED")
        self.phones["1003"].control.event("CALL_INCOMING")
        waited = time.monotonic() - started
        self.assertGreater(waited, HUNT_MEMBER_TIMEOUT - 0.5)
        self.assertLess(waited, HUNT_MEMBER_TIMEOUT + 2.0)
        self.assertFalse(self.rang("1004"))
        self.phones["1003"].control.command("accept")
        caller.control.event("CALL_ESTABLISHED")
        self.talk_and_hang_up("1001", "1003")
        self.assertEqual(self.b_leg_callee(), "1003")

    def test_member_logged_out_through_the_api(self) -> None:
        """
        The groups are listed; 1002 logs out of support through the API, so
        601 rings 1003 first and 1002 never rings.
        """
        listed = self.api.get("/groups/")["groups"]
        self.assertEqual(
            [(g["name"], g["number"], g["strategy"]) for g in listed],
            [
                ("night", "602", "ringall"),
                ("sales", "600", "ringall"),
                ("support", "601", "hunt"),
            ],
        )
        status, body = http(
            "DELETE",
            f"{self.api.base}/groups/support/members/1002",
            token=self.api._token,
        )
        self.assertEqual((status, body["logged_in"]), (200, ["1003"]))
        self.phones["1001"].control.command("dial", "601")
        self.phones["1003"].control.event("CALL_INCOMING")
        self.phones["1003"].control.command("accept")
        self.phones["1001"].control.event("CALL_ESTABLISHED")
        self.talk_and_hang_up("1001", "1003")
        self.assertFalse(self.rang("1002"))

    def test_final_destination(self) -> None:
        """602: 1002 rings 3 s unanswered and stops; then the final extension 1004 rings, answers and talks."""
        caller = self.phones["1001"]
        caller.control.command("dial", "602")
        self.phones["1002"].control.event("CALL_INCOMING")
        self.phones["1002"].control.event("CALL_CLOSED")
        self.phones["1004"].control.event("CALL_INCOMING")
        self.phones["1004"].control.command("accept")
        caller.control.event("CALL_ESTABLISHED")
        self.talk_and_hang_up("1001", "1004")
        self.assertEqual(self.b_leg_callee(), "1004")

    def test_follow_me(self) -> None:
        """1005 rings alone for 3 s, then 1003 rings too, answers and talks; 1005 stops ringing."""
        caller = self.phones["1001"]
        caller.control.command("dial", "1005")
        self.phones["1005"].control.event("CALL_INCOMING")
        started = time.monotonic()
        self.phones["1003"].control.event("CALL_INCOMING")
        waited = time.monotonic() - started
        self.assertGreater(waited, FOLLOW_AFTER - 0.5)
        self.assertLess(waited, FOLLOW_AFTER + 2.0)
        self.phones["1003"].control.command("accept")
        caller.control.event("CALL_ESTABLISHED")
        self.phones["1005"].control.event("CALL_CLOSED")
        self.talk_and_hang_up("1001", "1003")
        self.assertEqual(self.b_leg_callee(), "1003")

    def test_follow_me_confirm(self) -> None:
        """
        1004 rings 2 s and stops; pbx calls 1003, which answers and hears
        the prompt while 1001 still hears ringing; 1003 presses 1 and only
        then is 1001 answered; each hears the other's tone.
        """
        caller, mobile = self.phones["1001"], self.phones["1003"]
        caller.control.command("dial", "1004")
        self.phones["1004"].control.event("CALL_INCOMING")
        self.phones["1004"].control.event("CALL_CLOSED")
        mobile.control.event("CALL_INCOMING")
        mobile.control.command("accept")
        mobile.control.event("CALL_ESTABLISHED")
        # The prompt plays into 1003's call: a second of it has arrived.
        wait_until(lambda: recorded_seconds(mobile) > 1.0, LIMIT, "the prompt at 1003")
        self.assertFalse(
            any(m.get("type") == "CALL_ESTABLISHED" for m in caller.control.messages)
        )
        press(mobile, "1", 1)
        caller.control.event("CALL_ESTABLISHED")
        accepted = recorded_seconds(mobile)
        wait_until(
            lambda: (
                recorded_seconds(caller) > 3.5
                and recorded_seconds(mobile) > accepted + 3.5
            ),
            LIMIT,
            "3 s of the bridged call",
        )
        caller.control.command("hangup")
        caller.control.event("CALL_CLOSED")
        mobile.control.event("CALL_CLOSED")
        for phone in (caller, mobile):
            self.assertEqual(phone.stop(), 0)
        heard = {
            "1001": caller.heard(),
            "1003": mobile.heard()[round((accepted + 1.0) * RATE) :],
        }
        for listener, talker in (("1001", "1003"), ("1003", "1001")):
            self.assertEqual(
                tone_problems(
                    heard[listener],
                    TONES[talker][0],
                    TONES[listener][0],
                    self.patterns[talker],
                ),
                [],
                f"{listener} hearing {talker}",
            )
        records = wait_until(
            lambda: self.api.get("/cdr")["records"] or None, LIMIT, "the records"
        )
        self.assertIn("follow-me", {r["application"] for r in records})

    def test_dnd_schedule(self) -> None:
        """1006 is outside its working hours: a call to it is refused 486 and its phone never rings."""
        caller = self.phones["1001"]
        caller.control.command("dial", "1006")
        closed = caller.control.event("CALL_CLOSED")
        self.assertIn("486", json.dumps(closed))
        # pbx answers 486 without sending any INVITE: nothing can still be on its way.
        self.assertFalse(self.rang("1006"))

    def rang(self, number: str) -> bool:
        """Whether ``number``'s phone has had an incoming call."""
        return any(
            m.get("type") == "CALL_INCOMING"
            for m in self.phones[number].control.messages
        )




def tone_problems(
    audio: list[int], talker: float, own: float, pattern: list[bool]
) -> list[str]:
    """
    What is wrong with ``audio`` as the talker's keyed tone: most of the loud
    frames' energy at the talker's frequency, almost none at the listener's
    own, and an envelope that follows the talker's keying at some lag up to
    30 s (the talker's signal began when its own call did, before the bridge).
    """
    problems = []
    if (share := tone_share(audio, talker)) <= 0.8:
        problems.append(f"{share:.2f} of the energy at {talker} Hz")
    if (share := tone_share(audio, own)) >= 0.05:
        problems.append(f"{share:.2f} of the energy at its own {own} Hz")
    r, lag = best_alignment(envelope(audio), pattern, max_lag=1500)
    if r <= 0.8:
        problems.append(f"envelope correlation {r:.2f} at lag {lag}")
    return problems


def port_blocks(sizes: list[int]) -> list[int]:
    """
    The first ports of free UDP blocks of these sizes, not overlapping (small
    blocks: a benchmark running beside the tests may hold ports all over).
    """
    taken: list[tuple[int, int]] = []
    while len(taken) < len(sizes):
        size = sizes[len(taken)]
        first = free_udp_block(size)
        if all(
            first + size <= start or start + length <= first for start, length in taken
        ):
            taken.append((first, size))
    return [first for first, _ in taken]
