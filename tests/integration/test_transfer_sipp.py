"""
Integration tests: attended transfer (REFER with Replaces, RFC 3891 §7.1)
driven by SIPp through the real daemon.

1001 calls 1002 (``uac_call_rtp.xml``: PCMU from a looped tone, BYE after
``-d``), then 1003 calls 1002 (``uac_transfer_target.xml``).  1002
(``uas_attended_transferor.xml``) answers both and REFERs the first call
to 1003 with a Replaces naming the second.  pbx re-INVITEs 1003 onto 1002's
relay port of the first call, ends the second call, NOTIFYs 1002 (100,
then 200) and hangs it up.  1001 and 1003 are then one call: the relay
carries 1001's RTP to 1003's media port and 1003's to 1001, and the call
records say 1002 transferred.

An INVITE with Replaces (RFC 3891 §3): 1001 calls 1002
(``uac_transfer_target.xml`` again), 1002 (``uas_replaced.xml``) logs its
dialog's ID, and 1003 (``uac_replaces.xml``) calls in naming it.  pbx
re-INVITEs 1001 with 1003's offer, answers 1003 on 1002's relay port and
BYEs 1002; RTP then flows between 1001 and 1003.

A keyed blind transfer: 1001 (``uac_keyed_transfer.xml``) sends ``##1003#``
as SIP INFO keys; 1002 (``uas_keyed_transferee.xml``) answers the relayed
INFOs, then talks to 1003 (``uas_ring_answer.xml``) once 1001 is hung up,
and hangs up.
"""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest

from support.daemon import free_port, wait_until
from support.sipp import CALLEE, CALLER, LIMIT, SIPpCallCase

pytestmark = pytest.mark.integration

TARGET = "1003"
#: Packets (20 ms) each way through the joined call the test waits for: 2 s.
PACKETS = 100


class JoinedCallCase(SIPpCallCase):
    """The daemon and SIPp, and the call 1001 ends up in with 1003."""

    def joined(self) -> dict[str, Any] | None:
        """The one live call, once it is 1001 with 1003."""
        calls = self.live_calls()
        if len(calls) != 1 or (calls[0]["caller"], calls[0]["callee"]) != (
            CALLER,
            TARGET,
        ):
            return None
        return calls[0]


class AttendedTransferTests(JoinedCallCase):
    """A SIPp transferor joins its two calls."""

    def test_attended_transfer(self) -> None:
        """1002 joins 1001 and 1003: RTP flows between them through 1002's old relay port."""
        port = self.register_callee(CALLEE)
        transferor = self.start_sipp(
            "uas_attended_transferor", port, "-m", "2", "-mp", str(next(self.media_ports)),
            "-inf", str(self.injection("transferor", [(TARGET,)])),
            name="transferor", limit=60,
        )  # fmt: skip
        caller = self.call("uac_call_rtp", CALLEE, "-d", "15000", wait=False)
        try:
            wait_until(
                lambda: [c for c in self.live_calls() if c["state"] == "confirmed"],
                LIMIT, "1001's call to 1002",
            )  # fmt: skip
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.report('transferor')}") from None
        first = self.live_calls()[0]
        b_port = first["media"]["b"]["local_port"]
        row = (
            TARGET,
            CALLEE,
            f"[authentication username={TARGET} password={self.passwords[TARGET]}]",
        )
        media = next(self.media_ports)
        target = self.start_sipp(
            "uac_transfer_target", free_port(socket.SOCK_DGRAM),
            "-inf", str(self.injection("target", [row])), "-m", "1", "-mp", str(media),
            f"127.0.0.1:{self.sip_port}", name="target", limit=60,
        )  # fmt: skip
        try:
            call = wait_until(self.joined, LIMIT, "1001 joined with 1003")
            self.assertEqual(call["call_id"], first["call_id"])
            self.assertEqual(call["media"]["b"]["local_port"], b_port)
            start = call["media"]
            wait_until(
                lambda: (c := self.joined())
                and c["media"]["a_to_b"]["packets"] - start["a_to_b"]["packets"] >= PACKETS
                and c["media"]["b_to_a"]["packets"] - start["b_to_a"]["packets"] >= PACKETS,
                LIMIT, f"{PACKETS} packets each way between 1001 and 1003",
            )  # fmt: skip
            latched = self.joined()
            assert latched is not None
            host, rtp = latched["media"]["b"]["latched"]
            self.assertEqual(host, "127.0.0.1")
            self.assertTrue(
                media <= rtp < media + 8,
                f"1003's RTP came from {rtp}, not its -mp {media}",
            )
            self.finish(transferor, "transferor")
            self.finish(caller, "caller-uac_call_rtp")
            self.finish(target, "target")
        except AssertionError as e:
            raise AssertionError(
                f"{e}\n{self.report('transferor')}\n{self.report('target')}"
            ) from None
        log = (self.workdir / "transferor.log").read_text(errors="replace")
        self.assertIn("final NOTIFY: SIP/2.0 200", log)
        records = self.wait_records(4)
        causes = [r["hangup_cause"] for r in records]
        self.assertIn(f"transferred to {TARGET}", causes)
        self.assertTrue(
            any(c.startswith(f"transferred: {TARGET} joined") for c in causes), causes
        )
        self.assert_idle()


class ReplacesInviteTests(JoinedCallCase):
    """A SIPp phone takes over another's dialog with an INVITE carrying Replaces."""

    def test_invite_with_replaces(self) -> None:
        """1003 replaces 1002 in 1001's call: 1002 gets BYE, RTP flows between 1001 and 1003."""
        port = self.register_callee(CALLEE)
        replaced = self.start_callee("uas_replaced", port, 1)
        caller = self.call("uac_transfer_target", CALLEE, wait=False)
        log = self.workdir / "callee-uas_replaced.log"
        try:
            found = wait_until(
                lambda: log.exists() and re.search(r"dialog (\S+) (\S+) (\S+) ", log.read_text()),
                LIMIT, "1002's dialog ID in its log",
            )  # fmt: skip
            call_id, pbx_tag, its_tag = found.groups()
            first = wait_until(self.live_calls, LIMIT, "1001's call")[0]
            row = (
                TARGET, CALLEE,
                f"[authentication username={TARGET} password={self.passwords[TARGET]}]",
                call_id, pbx_tag, its_tag,
            )  # fmt: skip
            media = next(self.media_ports)
            joining = self.start_sipp(
                "uac_replaces", free_port(socket.SOCK_DGRAM),
                "-inf", str(self.injection("joining", [row])), "-m", "1", "-mp", str(media),
                "-d", "4000", f"127.0.0.1:{self.sip_port}", name="joining", limit=60,
            )  # fmt: skip
            call = wait_until(self.joined, LIMIT, "1001 with 1003")
            self.assertEqual(call["call_id"], first["call_id"])
            start = call["media"]
            wait_until(
                lambda: (c := self.joined())
                and c["media"]["a_to_b"]["packets"] - start["a_to_b"]["packets"] >= PACKETS // 2
                and c["media"]["b_to_a"]["packets"] - start["b_to_a"]["packets"] >= PACKETS // 2,
                LIMIT, "packets each way between 1001 and 1003",
            )  # fmt: skip
            joined = self.joined()
            assert joined is not None
            host, rtp = joined["media"]["b"]["latched"]
            self.assertTrue(
                media <= rtp < media + 8,
                f"1003's RTP came from {rtp}, not its -mp {media}",
            )
            self.finish(replaced, "callee-uas_replaced")
            self.finish(joining, "joining")
            self.finish(caller, "caller-uac_transfer_target")
        except AssertionError as e:
            raise AssertionError(
                f"{e}\n{self.report('joining')}\n{self.report('callee-uas_replaced')}"
            ) from None
        records = self.wait_records(3)
        self.assertIn("replaced by 1003", [r["hangup_cause"] for r in records])
        self.assert_idle()


class KeyedTransferTests(SIPpCallCase):
    """A phone without a transfer key transfers with the feature code, keyed as SIP INFO."""

    def test_keyed_blind_transfer(self) -> None:
        """1001 keys ##1003#: 1003 rings and answers, 1001 is hung up, 1002 talks to 1003 and hangs up."""
        transferee = self.start_callee(
            "uas_keyed_transferee", self.register_callee(CALLEE), 1
        )
        target = self.start_callee("uas_ring_answer", self.register_callee(TARGET), 1)
        caller = self.call("uac_keyed_transfer", CALLEE, wait=False)
        try:
            wait_until(
                lambda: [c for c in self.live_calls() if (c["caller"], c["callee"]) == (TARGET, CALLEE)],
                LIMIT, "1002's call with 1003",
            )  # fmt: skip
            self.finish(caller, "caller-uac_keyed_transfer")
            self.finish(transferee, "callee-uas_keyed_transferee")
            self.finish(target, "callee-uas_ring_answer")
        except AssertionError as e:
            raise AssertionError(
                f"{e}\n{self.report('caller-uac_keyed_transfer')}"
            ) from None
        records = self.wait_records(3)
        self.assertIn(f"transferred to {TARGET}", [r["hangup_cause"] for r in records])
        self.assert_idle()
