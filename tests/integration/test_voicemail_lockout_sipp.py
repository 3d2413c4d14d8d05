"""
Integration test: wrong voicemail PINs from a SIPp phone lock the mailbox,
with the real daemon.

The configuration has extension 1001 with the voicemail PIN 482913 (set in
the file), the ``voicemail`` feature with ``pin_attempts: 2``, ``*97`` to
``voicemail-main`` (the caller's own mailbox) and ``security:`` locking out
after 3 failures for 60 s.  1001 is a SIPp UAC that enters PINs as SIP INFO
keys (``sipp/uac_voicemail_pin.xml``); its SDP names a port of the test's
own :class:`~support.apps.RTPRecorder`, so the test hears what the caller
heard and finds the prompts in it against the prompt files.

The REST API has no audit endpoint: the audit trail is read from the
daemon's SQLite database.

Wrong PINs typed on a phone and wrong PINs in the API's user login (an
extension number and its voicemail PIN) count in one
:class:`~pbx.security.lockout.Lockout`, under the extension: a mailbox
locked on the phone is locked for the API too (429), so a guesser gets no
fresh attempts by switching.

SIPp runs with ``-timeout``; everything else is a bounded poll.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from support.apps import MATCH
from support.calls import RATE
from support.features import FeatureCallCase, describe, heard_in_order, prompt_end
from support.sipp import CALLER, LIMIT

pytestmark = pytest.mark.integration

VOICEMAIL = "*97"
PIN = "482913"
WRONG = "135790"
PIN_ATTEMPTS = 2
LOCKOUT_FAILURES = 3
LOCKOUT_DELAY = 60
#: How much of vm/enter-password (cut short by the first key) is looked for (s).
OPENING = 0.8


class SIPpVoicemailLockoutTests(FeatureCallCase):
    """Wrong PINs end calls, then lock the mailbox against the right PIN too."""

    NUMBERS = (CALLER,)

    def configure(self, config: dict[str, Any]) -> None:
        """1001's PIN, voicemail, ``*97`` and the lockout settings."""
        config["extensions"][CALLER]["voicemail_pin"] = PIN
        config["features"] = {"voicemail": {"pin_attempts": PIN_ATTEMPTS}}
        config["dialplan"] = [{"match": VOICEMAIL, "app": "voicemail-main"}]
        config["security"] = {
            "lockout_failures": LOCKOUT_FAILURES,
            "lockout_window": 300,
            "lockout_delay": LOCKOUT_DELAY,
            "lockout_max_delay": 600,
        }

    def pins(self, name: str, pin: str, times: int) -> Any:
        """
        Call ``*97`` and enter ``pin`` ``times`` times; what the caller heard.

        The phone's media stops with the call: a recorder still sending to
        the relay port of an ended call would latch that port when pbx gives
        it to the next call (the same IP as the SDP's), and get its audio.
        """
        recorder = self.recorder()
        self.dial("uac_voicemail_pin", VOICEMAIL, recorder, name, [str(times), *pin])
        recorder.close()
        return recorder.audio()

    def assert_heard(self, heard: Any, expected: list[tuple[str, float | None]]) -> list[tuple[str, float, float]]:
        """
        ``expected`` in ``heard``, in order, the first prompt at the start
        and nothing after the last: pbx hung up once it was said.
        """
        found = heard_in_order(heard, expected)
        report = describe(found)
        for prompt_id, r, _ in found:
            self.assertGreater(r, MATCH, f"{prompt_id}: {report}")
        self.assertLess(found[0][2], 0.5, report)
        self.assertLess(abs(len(heard) / RATE - prompt_end(found[-1])), 0.1, report)
        return found

    def login(self, password: str) -> tuple[int, Any, str]:
        """An API user login as 1001: (status, decoded body, Retry-After or "")."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}/api/v1/auth/login",
            data=json.dumps({"username": CALLER, "password": password}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read()), ""
        except urllib.error.HTTPError as e:
            with e:
                return e.code, json.loads(e.read() or b"null"), e.headers.get("Retry-After", "")

    def test_wrong_pins_lock_the_mailbox(self) -> None:
        """
        1. Two wrong PINs (pin_attempts): "incorrect" twice, "goodbye", BYE.
        2. A third wrong PIN (lockout_failures): "locked", BYE at once.
        3. The right PIN: still "locked", BYE; no login, no failure counted.
        The audit trail has the three failures and one lockout; the log says
        the mailbox is locked for 60 s.  Then the API: a user login with the
        right PIN is refused too (429 with Retry-After): one budget of guesses.
        """
        # The administrator's token, before the API's lockout of 127.0.0.1.
        self.api.get("/extensions")

        heard = self.pins("wrong-twice", WRONG, PIN_ATTEMPTS)
        self.assert_heard(
            heard,
            [
                ("vm/enter-password", OPENING),
                ("vm/password-incorrect", None),
                ("vm/enter-password", OPENING),
                ("vm/password-incorrect", None),
                ("vm/goodbye", None),
            ],
        )
        self.assertEqual(len(self.audit("voicemail.pin.failure")), PIN_ATTEMPTS)
        self.assertEqual(self.audit("voicemail.lockout"), [])

        heard = self.pins("wrong-again", WRONG, 1)
        self.assert_heard(heard, [("vm/enter-password", OPENING), ("vm/locked-out", None)])
        self.daemon.wait_for(
            re.compile(rf"voicemail {CALLER}: PIN locked for {LOCKOUT_DELAY} s after failures from {CALLER}"),
            LIMIT,
        )

        heard = self.pins("right-pin", PIN, 1)
        found = self.assert_heard(heard, [("vm/enter-password", OPENING), ("vm/locked-out", None)])
        self.assertLess(found[1][2], 2.0, describe(found))
        output = "\n".join(self.daemon.output)
        self.assertNotRegex(output, r"voicemail \d+: logged in")

        failures = self.audit("voicemail.pin.failure")
        self.assertEqual(
            [(e["subject"], e["source"]) for e in failures], [(CALLER, CALLER)] * LOCKOUT_FAILURES
        )
        [lockout] = self.audit("voicemail.lockout")
        self.assertEqual(
            (lockout["subject"], lockout["source"], lockout["detail"]),
            (CALLER, CALLER, f"{LOCKOUT_DELAY}s"),
        )
        self.assertGreaterEqual(lockout["time"], failures[-1]["time"])

        # One budget: the mailbox locked on the phone is locked for the API.
        status, body, retry = self.login(PIN)
        self.assertEqual(status, 429, f"the right PIN at the API while locked: {body}")
        self.assertTrue(retry.isdigit() and 0 < int(retry) <= LOCKOUT_DELAY, retry)
        self.assertEqual(
            [(e["kind"], e["subject"]) for e in self.audit() if e["kind"].startswith("api.login")],
            [("api.login", "admin")],
        )

        self.assert_idle()
        self.assertFalse(self.daemon.tracebacks, "\n".join(self.daemon.tracebacks))
