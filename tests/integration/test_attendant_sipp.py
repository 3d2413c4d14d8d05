"""
Integration tests: the auto attendant with the real daemon and SIPp phones.

The configuration has extensions 1001 and 1002, the ``attendant`` feature
with two menus and the route ``*50`` to the menu ``main``::

    main:   greeting aa/welcome; 1 -> extension 1002, 2 -> menu "second"
    second: greeting aa/operator; * -> hang up

1001 is a SIPp UAC that calls ``*50`` and sends its keys as SIP INFO
(``application/dtmf-relay``); its SDP names a port of the test's own
:class:`~support.apps.RTPRecorder`, so the test hears what the caller heard
and finds the prompts in it against the prompt files.  1002 is a SIPp UAS
registered as in :mod:`support.sipp` that answers.

SIPp runs with ``-timeout``; everything else is a bounded poll of the API or
the log.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from support.apps import MATCH
from support.calls import RATE
from support.features import FeatureCallCase, describe, heard_in_order, prompt_end
from support.sipp import CALLEE, CALLER, LIMIT

pytestmark = pytest.mark.integration

ATTENDANT = "*50"
#: How much of a prompt cut short by a key is looked for (s).
OPENING = 1.5


def call_id(messages: str) -> str:
    """The first Call-ID in SIPp's messages (one call per run)."""
    found = re.search(r"^Call-ID: *([^\r\n]+)", messages, re.M)
    assert found is not None, messages[-2000:]
    return found.group(1).strip()


class SIPpAttendantTests(FeatureCallCase):
    """Calls to ``*50`` from a SIPp phone: a transfer, and a walk through both menus."""

    def configure(self, config: dict[str, Any]) -> None:
        """The attendant with its two menus, and ``*50``."""
        config["features"] = {
            "attendant": {
                "menus": {
                    "main": {
                        "greeting": "aa/welcome",
                        "options": {"1": {"extension": CALLEE}, "2": {"menu": "second"}},
                    },
                    "second": {
                        "greeting": "aa/operator",
                        "options": {"*": {"hangup": True}},
                    },
                },
            },
        }
        config["dialplan"] = [
            {"match": ATTENDANT, "app": "attendant", "args": {"menu": "main"}}
        ]

    def test_key_transfers(self) -> None:
        """
        1001 calls ``*50`` and presses 1 two seconds into the greeting: the
        greeting stops, "please hold while your call is transferred" plays,
        and 1002's phone gets an INVITE from 1001 and answers.  1001's BYE
        reaches 1002.  The records: the call to ``*50`` answered, and the
        attendant's leg to 1002 answered, both ended by 1001.
        """
        recorder = self.recorder()
        port = self.register_callee()
        callee = self.start_callee("uas_answer", port, 1, "-rtp_echo")
        self.dial("uac_attendant_transfer", ATTENDANT, recorder, "caller-transfer", ["1"])
        self.finish(callee, "callee-uas_answer")
        self.daemon.wait_for(re.compile(rf"attendant: transfer to {CALLEE}: answered"), LIMIT)

        # 1002's phone was called by 1001, through pbx.
        invite = re.search(
            r"^INVITE sip:[^\r\n]*\r?\n((?:[^\r\n]+\r?\n)*)",
            self.messages("callee-uas_answer"),
            re.M,
        )
        assert invite is not None, self.report("callee-uas_answer")
        [sender] = re.findall(r"^From:[^\r\n]*", invite.group(1), re.M)
        self.assertRegex(sender, rf"<sip:{CALLER}@")

        # The greeting, cut by the key after two seconds, then aa/transfer.
        heard = recorder.audio()
        found = heard_in_order(heard, [("aa/welcome", OPENING), ("aa/transfer", None)])
        report = describe(found)
        for prompt_id, r, _ in found:
            self.assertGreater(r, MATCH, f"{prompt_id}: {report}")
        (_, _, welcome), (_, _, transfer) = found
        self.assertLess(welcome, 0.5, report)
        self.assertGreater(transfer - welcome, 1.8, f"greeting cut too early: {report}")
        self.assertLess(transfer - welcome, 3.0, f"greeting not cut by the key: {report}")
        self.assertGreater(len(heard) / RATE, prompt_end(found[1]) + 1.0, "no bridged call after aa/transfer")

        records = self.wait_records(2)
        by_leg = {r["leg"]: r for r in records}
        keys = ("caller", "callee", "disposition", "hangup_side")
        self.assertEqual(
            {k: by_leg["a"][k] for k in keys},
            {"caller": CALLER, "callee": ATTENDANT, "disposition": "ANSWERED", "hangup_side": "a"},
        )
        self.assertEqual(
            {k: by_leg["b"][k] for k in keys},
            {"caller": CALLER, "callee": CALLEE, "disposition": "ANSWERED", "hangup_side": "a"},
        )
        # Each leg's record is its own dialog's: the caller's Call-ID, the callee's.
        self.assertEqual(
            (by_leg["a"]["call_id"], by_leg["b"]["call_id"]),
            (call_id(self.messages("caller-transfer")), call_id(invite.group(1))),
        )
        self.assertIsNotNone(by_leg["b"]["answer"])
        self.assert_idle()
        self.assertFalse(self.daemon.tracebacks, "\n".join(self.daemon.tracebacks))

    def test_invalid_key_and_second_menu(self) -> None:
        """
        1001 calls ``*50`` and presses 5, which no option has: "that is not
        a valid choice" (aa/invalid) and the greeting again; 2 goes to the
        second menu (its greeting, aa/operator, plays whole); * there says
        goodbye and pbx hangs up.  No one else is called.
        """
        recorder = self.recorder()
        self.dial("uac_attendant_menus", ATTENDANT, recorder, "caller-menus", ["5", "2", "*"])

        heard = recorder.audio()
        found = heard_in_order(
            heard,
            [
                ("aa/welcome", OPENING),
                ("aa/invalid", None),
                ("aa/welcome", OPENING),
                ("aa/operator", None),
                ("general/goodbye", None),
            ],
        )
        report = describe(found)
        for prompt_id, r, _ in found:
            self.assertGreater(r, MATCH, f"{prompt_id}: {report}")
        welcome, invalid, again, operator, goodbye = found
        self.assertLess(welcome[2], 0.5, report)
        # The key cut the greeting: aa/invalid came two seconds in, not after
        # its 6.2 s, and the greeting started again as soon as it ended.
        self.assertLess(invalid[2] - welcome[2], 3.0, report)
        self.assertLessEqual(abs(again[2] - prompt_end(invalid)), 0.1, report)
        self.assertLess(operator[2] - again[2], 3.0, report)
        # Nothing after goodbye: pbx hung up.
        self.assertLess(abs(len(heard) / RATE - prompt_end(goodbye)), 0.1, report)

        [record] = self.wait_records(1)
        self.assertEqual(
            {k: record[k] for k in ("caller", "callee", "disposition", "hangup_side")},
            {"caller": CALLER, "callee": ATTENDANT, "disposition": "ANSWERED", "hangup_side": "pbx"},
        )
        self.assertIsNone(
            re.search(r"attendant: transfer", "\n".join(self.daemon.output)),
            "the attendant transferred the call",
        )
        self.assert_idle()
        self.assertFalse(self.daemon.tracebacks, "\n".join(self.daemon.tracebacks))
