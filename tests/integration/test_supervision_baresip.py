"""
Integration test: a supervisor listens to, whispers to and barges into a
call between two baresip phones, through the real daemon, with real audio.

The agent 1001 calls 1002; pbx relays their media.  The supervisor 1000
(allowed over 1001 by ``features.supervision.supervisors``) dials
``*331001`` (``{match: "_*33X!", app: supervise}``), then presses 4
(whisper) and 5 (barge) and hangs up.  Every phone plays its own keyed
tone (:func:`support.calls.keyed_tone`: 600 Hz the agent, 900 Hz the other
party, 1300 Hz the supervisor) and records what it hears; each phase is
measured over :data:`TALK` seconds of each phone's recording:

- listen: the supervisor hears both parties (each one's keying correlates
  in its recording); neither party hears the supervisor (its tone below a
  tenth of the other party's) and they still hear each other;
- whisper: the agent hears the supervisor and still the other party; the
  other party does not hear the supervisor;
- barge: both parties hear the supervisor, and each other;
- after the supervisor hangs up: the parties hear each other and not the
  supervisor (the plain relay is back).

An administrator asks the API to have 1000 listen to the call: 1000's
phone rings, answers by itself and hears both parties, who do not hear it;
stopping the monitor through the API hangs 1000's phone up.

A supervisor the configuration does not allow (1003 over 1002) is refused:
its call is hung up by pbx, and the call it asked for goes on untouched.
Only loopback is used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.baresip import LIMIT, MODULES, NEEDED, Phone, press, recorded_seconds
from support.calls import call_config, free_udp_block, keyed_tone, write_pcm_wav
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
from support.keying import keying_by_piece, tone_envelope

pytestmark = pytest.mark.integration

AGENT, OTHER, SUPERVISOR, INTRUDER = "1001", "1002", "1000", "1003"
#: Each phone's tone (Hz) and keying seed.
TONES = {
    AGENT: (600.0, 31),
    OTHER: (900.0, 32),
    SUPERVISOR: (1300.0, 33),
    INTRUDER: (1700.0, 34),
}
AMPLITUDE = 8000
SIGNAL_SECONDS = 120.0
#: Seconds of each phase measured.
TALK = 6.0
#: Margin (s) after each change: the jitter buffers settle.
SETTLE = 1.0
RELAY_PORTS = 40




class BaresipSupervisionTests(SynchronousTestCase):
    """A supervisor on a call between baresip phones, through the real daemon."""

    def setUp(self) -> None:
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
        self.passwords = {n: strong_password(n) for n in TONES}
        first = free_udp_block(RELAY_PORTS + 20 * len(TONES))
        relay = (first, first + RELAY_PORTS - 1)
        self.phone_rtp = {n: first + RELAY_PORTS + 20 * i for i, n in enumerate(TONES)}
        admin = self.admin = admin_password()
        self.api_base = f"http://127.0.0.1:{api_port}/api/v1"
        config = json.loads(call_config(
            api_port=api_port, sip_port=self.sip_port, admin_password=admin,
            extensions=self.passwords, transports=("udp",), rtp_ports=relay,
        ))  # fmt: skip
        config["features"] = {"supervision": {
            "supervisors": {SUPERVISOR: [AGENT], INTRUDER: [AGENT]},
        }}  # fmt: skip
        config["dialplan"] = [
            {"match": "_*33X!", "app": "supervise"},
            {"match": "_*34X!", "app": "supervise"},
            {"match": "_*35X!", "app": "supervise"},
        ]
        self.daemon = Daemon(str(self.workdir / "pbx"), json.dumps(config, indent=1))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(api_port, admin)
        self.patterns: dict[str, list[bool]] = {}

    def start_phone(self, number: str, answer: bool) -> Phone:
        """Write ``number``'s signal file and start its phone; wait for its registration."""
        frequency, seed = TONES[number]
        samples, self.patterns[number] = keyed_tone(
            frequency, SIGNAL_SECONDS, seed, amplitude=AMPLITUDE
        )
        source = self.workdir / f"signal-{number}.wav"
        write_pcm_wav(source, samples)
        phone = Phone(
            self.baresip, self.workdir / f"baresip-{number}", number,
            self.passwords[number], self.sip_port, Path("..", source.name),
            self.phone_rtp[number], answer=answer,
        )  # fmt: skip
        self.addCleanup(phone.stop)
        try:
            wait_until(
                lambda: [
                    r for r in self.api.registrations() if r["extension"] == number
                ],
                LIMIT,
                f"{number}'s registration",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{phone.output()[-3000:]}") from None
        return phone

    def phase(self, phones: dict[str, Phone], what: str) -> dict[str, float]:
        """Let :data:`TALK` seconds pass in every phone's recording after a settling margin; their start."""
        start = {n: recorded_seconds(p) + SETTLE for n, p in phones.items()}
        wait_until(
            lambda: all(
                recorded_seconds(p) >= start[n] + TALK for n, p in phones.items()
            ),
            LIMIT,
            f"{TALK}s of {what}",
        )
        return start

    def hears(
        self, listener: str, audio: np.ndarray, talker: str, start: float, what: str
    ) -> float:
        """
        Require that ``audio`` (from ``start`` s, :data:`TALK` s long) follows
        ``talker``'s keying; its mean level of ``talker``'s frequency.
        """
        envelope = tone_envelope(audio, TONES[talker][0])
        stretch = slice(round(start * 50), round((start + TALK) * 50))
        pieces = keying_by_piece(
            envelope[stretch], self.patterns[talker], stretch.start
        )
        detail = f"{what}: {listener} hearing {talker}: " + ", ".join(
            f"r={r:.2f} at lag {lag}" for r, lag in pieces
        )
        rs = sorted(r for r, _ in pieces)
        self.assertGreaterEqual(len(rs), 8, detail)
        self.assertGreater(rs[len(rs) // 2], 0.9, detail)
        self.assertGreater(rs[len(rs) // 4], 0.8, detail)
        return float(envelope[stretch].mean())

    def level(self, audio: np.ndarray, talker: str, start: float) -> float:
        """The mean level of ``talker``'s frequency in ``audio`` over a measured stretch."""
        envelope = tone_envelope(audio, TONES[talker][0])
        return float(envelope[round(start * 50) : round((start + TALK) * 50)].mean())

    def mode(self) -> str | None:
        """The supervisor's mode, as the API reports it (None: not supervising)."""
        for monitor in self.api.get("/supervision/monitors")["monitors"]:
            if monitor["supervisor"] == SUPERVISOR:
                return str(monitor["mode"])
        return None

    def test_listen_whisper_barge(self) -> None:
        """
        Listening, the supervisor hears both parties and neither hears it;
        whispering, only the agent hears it; barging, both do; once it has
        hung up the parties hear each other and not the supervisor.
        """
        other = self.start_phone(OTHER, answer=True)
        agent = self.start_phone(AGENT, answer=False)
        supervisor = self.start_phone(SUPERVISOR, answer=False)
        agent.control.command("dial", OTHER)
        agent.control.event("CALL_ESTABLISHED")
        other.control.event("CALL_ESTABLISHED")
        wait_until(
            lambda: recorded_seconds(agent) > 0.5, LIMIT, "the agent's call audio"
        )

        supervisor.control.command("dial", f"*33{AGENT}")
        supervisor.control.event("CALL_ESTABLISHED")
        wait_until(lambda: self.mode() == "listen", LIMIT, "the supervisor listening")
        everyone = {AGENT: agent, OTHER: other, SUPERVISOR: supervisor}
        listen = self.phase(everyone, "listening")

        press(supervisor, "4", 1)
        wait_until(lambda: self.mode() == "whisper", LIMIT, "the supervisor whispering")
        whisper = self.phase(everyone, "whispering")

        press(supervisor, "5", 2)
        wait_until(lambda: self.mode() == "barge", LIMIT, "the supervisor barging in")
        barge = self.phase(everyone, "barging in")

        supervisor.control.command("hangup")
        supervisor.control.event("CALL_CLOSED")
        wait_until(lambda: self.mode() is None, LIMIT, "the supervisor gone")
        parties = {AGENT: agent, OTHER: other}
        after = self.phase(parties, "the call after the supervisor left")

        calls = self.api.get("/calls")["calls"]
        self.assertEqual(len(calls), 1, calls)
        agent.control.command("hangup")
        agent.control.event("CALL_CLOSED")
        heard = {}
        for number, phone in everyone.items():
            phone.stop()
            heard[number] = np.asarray(phone.heard(), dtype=np.float64)
        log = "\n".join(list(self.daemon.output)[-40:])

        # Listening: the supervisor hears both; the parties hear each other, not it.
        self.hears(SUPERVISOR, heard[SUPERVISOR], AGENT, listen[SUPERVISOR], "listen")
        self.hears(SUPERVISOR, heard[SUPERVISOR], OTHER, listen[SUPERVISOR], "listen")
        for party, peer in ((AGENT, OTHER), (OTHER, AGENT)):
            peer_level = self.hears(party, heard[party], peer, listen[party], "listen")
            leak = self.level(heard[party], SUPERVISOR, listen[party])
            self.assertLess(
                leak, 0.1 * peer_level, f"listen: {party} hears the supervisor\n{log}"
            )

        # Whispering: the agent hears the supervisor and the other party; the other party only the agent.
        self.hears(AGENT, heard[AGENT], SUPERVISOR, whisper[AGENT], "whisper")
        self.hears(AGENT, heard[AGENT], OTHER, whisper[AGENT], "whisper")
        agent_level = self.hears(OTHER, heard[OTHER], AGENT, whisper[OTHER], "whisper")
        leak = self.level(heard[OTHER], SUPERVISOR, whisper[OTHER])
        self.assertLess(
            leak, 0.1 * agent_level, "whisper: the other party hears the supervisor"
        )
        self.hears(SUPERVISOR, heard[SUPERVISOR], AGENT, whisper[SUPERVISOR], "whisper")

        # Barging in: both parties hear the supervisor and each other.
        for party, peer in ((AGENT, OTHER), (OTHER, AGENT)):
            self.hears(party, heard[party], SUPERVISOR, barge[party], "barge")
            self.hears(party, heard[party], peer, barge[party], "barge")

        # After: the plain relay again.
        for party, peer in ((AGENT, OTHER), (OTHER, AGENT)):
            peer_level = self.hears(party, heard[party], peer, after[party], "after")
            leak = self.level(heard[party], SUPERVISOR, after[party])
            self.assertLess(
                leak, 0.1 * peer_level, f"after: {party} still hears the supervisor"
            )

    def test_not_allowed(self) -> None:
        """A supervisor not allowed over the extension is hung up by pbx; the call goes on."""
        other = self.start_phone(OTHER, answer=True)
        agent = self.start_phone(AGENT, answer=False)
        intruder = self.start_phone(INTRUDER, answer=False)
        agent.control.command("dial", OTHER)
        agent.control.event("CALL_ESTABLISHED")
        other.control.event("CALL_ESTABLISHED")
        intruder.control.command("dial", f"*33{OTHER}")
        intruder.control.event("CALL_CLOSED")
        self.assertEqual(self.api.get("/supervision/monitors")["monitors"], [])
        wait_until(
            lambda: len(self.api.get("/calls")["calls"]) == 1,
            LIMIT,
            "only the parties' call",
        )

    def test_api_listen(self) -> None:
        """
        POST /api/v1/supervision/calls/<id> rings the supervisor, who hears
        both parties and is not heard; DELETE of its monitor hangs it up.
        """
        other = self.start_phone(OTHER, answer=True)
        agent = self.start_phone(AGENT, answer=False)
        supervisor = self.start_phone(SUPERVISOR, answer=True)
        agent.control.command("dial", OTHER)
        agent.control.event("CALL_ESTABLISHED")
        other.control.event("CALL_ESTABLISHED")
        [call] = self.api.get("/calls")["calls"]
        status, body = http("POST", f"{self.api_base}/auth/login",
                            {"username": "admin", "password": self.admin})  # fmt: skip
        self.assertEqual(status, 200, body)
        token = body["token"]
        url = f"{self.api_base}/supervision/calls/{call['call_id']}"
        status, body = http(
            "POST", url, {"supervisor": SUPERVISOR, "mode": "listen"}, token=token
        )
        self.assertEqual((status, body["status"]), (202, "ringing"), body)
        supervisor.control.event("CALL_ESTABLISHED")
        wait_until(lambda: self.mode() == "listen", LIMIT, "the supervisor listening")
        everyone = {AGENT: agent, OTHER: other, SUPERVISOR: supervisor}
        listen = self.phase(everyone, "listening")
        mark = supervisor.control.mark()
        status, body = http(
            "DELETE", f"{self.api_base}/supervision/monitors/{SUPERVISOR}", token=token
        )
        self.assertEqual((status, body["stopped"]), (200, True), body)
        supervisor.control.event("CALL_CLOSED", since=mark)
        agent.control.command("hangup")
        agent.control.event("CALL_CLOSED")
        heard = {}
        for number, phone in everyone.items():
            phone.stop()
            heard[number] = np.asarray(phone.heard(), dtype=np.float64)
        self.hears(
            SUPERVISOR, heard[SUPERVISOR], AGENT, listen[SUPERVISOR], "API listen"
        )
        self.hears(
            SUPERVISOR, heard[SUPERVISOR], OTHER, listen[SUPERVISOR], "API listen"
        )
        for party, peer in ((AGENT, OTHER), (OTHER, AGENT)):
            peer_level = self.hears(
                party, heard[party], peer, listen[party], "API listen"
            )
            leak = self.level(heard[party], SUPERVISOR, listen[party])
            self.assertLess(
                leak, 0.1 * peer_level, f"API listen: {party} hears the supervisor"
            )
