"""
Integration test: the auto-answer headers of a page and of an intercom
call, as a phone receives them, checked by SIPp.

The member phone is SIPp running ``uas_autoanswer.xml``: it registers as
1002, and its scenario requires ``Call-Info: ...;answer-after=0`` and an
``Alert-Info`` with ``info=alert-autoanswer`` in the INVITE (a call
without them fails the run), answers at once and waits for BYE.  The
pager is SIPp too (``uac_bridged.xml``: a call of ``-d`` ms, then BYE).
Beyond SIPp's check, the INVITE it logged is read back: every header the
group's styles name is there, exactly.  1003 is a member with no phone:
the page skips it and still reaches 1002; or a phone that rings and never
answers (``uas_ring.xml``): the pager's hang-up cancels it.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest

from support.calls import call_config
from support.daemon import free_port
from support.sipp import ABSENT, CALLEE, SIPpCallCase

pytestmark = pytest.mark.integration

GROUP = "700"
STYLES = ["call_info", "polycom", "yealink", "grandstream"]


class SIPpPagingTests(SIPpCallCase):
    """A page and an intercom call to a SIPp phone that insists on being asked to answer by itself."""

    def config(self, **kwargs: Any) -> str:
        """Extensions 1001-1003, a page group of 1002 and 1003, the intercom on ``*80``."""
        config = json.loads(call_config(**kwargs))
        config["features"] = {"paging": {
            "intercom_prefix": "*80",
            "ring_timeout": 60,  # longer than uas_ring waits for its CANCEL
            "groups": {"all": {"number": GROUP, "members": [CALLEE, ABSENT], "auto_answer": STYLES}},
        }}  # fmt: skip
        config["dialplan"] = [
            {"match": GROUP, "app": "paging"},
            {"match": "_*80X!", "app": "intercom"},
        ]
        return json.dumps(config, indent=1)

    def invite_headers(self, scenario: str) -> list[tuple[str, str]]:
        """The headers of the INVITE the callee's SIPp run received (name, value)."""
        messages = (self.workdir / f"callee-{scenario}.messages").read_text(
            errors="replace"
        )
        found = re.search(r"^INVITE sip:[^\n]*\n((?:[^\r\n]+\r?\n)*)", messages, re.M)
        assert found is not None, messages[-3000:]
        return [
            (name.strip(), value.strip())
            for name, _, value in (
                line.partition(":") for line in found.group(1).splitlines()
            )
        ]

    def test_page_asks_to_answer(self) -> None:
        """
        The page's INVITE to 1002 carries every configured auto-answer form;
        1002 answers at once; the pager's BYE ends 1002's call (BYE).
        """
        port = self.register_callee()
        callee = self.start_callee("uas_autoanswer", port, 1)
        rtp = free_port(socket.SOCK_DGRAM)
        self.call("uac_bridged", GROUP, "-d", "2000", "-key", "rtp_port", str(rtp))
        self.finish(callee, "callee-uas_autoanswer")
        headers = self.invite_headers("uas_autoanswer")
        call_info = [v for n, v in headers if n.lower() == "call-info"]
        alert_info = [v for n, v in headers if n.lower() == "alert-info"]
        self.assertEqual(len(call_info), 1, headers)
        self.assertRegex(call_info[0], r"^<sip:[^>]+>;answer-after=0$")
        self.assertEqual(
            alert_info,
            [
                "<http://localhost>;info=alert-autoanswer",
                "info=alert-autoanswer",
                "Ring Answer",
            ],
        )
        self.daemon.wait_for(
            re.compile(rf"page all: {ABSENT} skipped \(unavailable\)"), 1
        )
        self.assert_idle()

    def test_intercom_asks_to_answer(self) -> None:
        """``*801002`` reaches 1002 with the default auto-answer headers; the caller's BYE ends it."""
        port = self.register_callee()
        callee = self.start_callee("uas_autoanswer", port, 1)
        rtp = free_port(socket.SOCK_DGRAM)
        self.call(
            "uac_bridged", f"*80{CALLEE}", "-d", "2000", "-key", "rtp_port", str(rtp)
        )
        self.finish(callee, "callee-uas_autoanswer")
        headers = self.invite_headers("uas_autoanswer")
        self.assertEqual(
            [v for n, v in headers if n.lower() == "alert-info"],
            ["<http://localhost>;info=alert-autoanswer"],
        )
        self.assertEqual(
            len([v for n, v in headers if n.lower() == "call-info"]), 1, headers
        )
        self.assert_idle()

    def test_ringing_member_cancelled(self) -> None:
        """
        A member still ringing when the pager hangs up gets CANCEL (its
        phone rings and never answers), while the one that answered gets BYE.
        """
        answering = self.register_callee()
        ringing = self.register_callee(ABSENT)
        answers = self.start_callee("uas_autoanswer", answering, 1)
        rings = self.start_sipp(
            "uas_ring", ringing, "-m", "1", "-mp", str(next(self.media_ports)),
            name="callee-uas_ring", limit=60,
        )  # fmt: skip
        rtp = free_port(socket.SOCK_DGRAM)
        self.call("uac_bridged", GROUP, "-d", "2000", "-key", "rtp_port", str(rtp))
        self.finish(answers, "callee-uas_autoanswer")
        self.finish(rings, "callee-uas_ring")
        self.assert_idle()
