"""
Integration test: a flood of new work far above capacity against the live
daemon, with its default overload settings (new work that waited over
200 ms in the UDP receive queue, as the kernel stamped it, gets 503).

One allow-listed socket on 127.0.0.1 (so the per-source limits do not drop
the flood first) sends new REGISTERs and INVITEs without credentials for
:data:`FLOOD_SECONDS`, much faster than pbx can answer them, with an
in-dialog BYE every :data:`BYE_EVERY` requests.  Like any UDP client it
sends again what got no answer (RFC 3261 §17.1.2.2); here only the BYEs,
and only after the flood.  Nothing waits on time: answers are read until
each BYE has one (bounded), then checked.
"""

from __future__ import annotations

import json
import re
import select
import socket
import time

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.daemon import (
    Daemon,
    admin_password,
    free_port,
    loopback_config,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

#: Seconds of flood: more than the daemon's receive buffer holds
#: (pbx.sip.sockets.UDP_RECEIVE_BUFFER), and far more than it reads meanwhile.
FLOOD_SECONDS = 2.0
#: Requests sent between two reads of the answers (one every 5 ms at most).
BATCH = 100
BYE_EVERY = 50
#: Times an unanswered BYE is sent again after the flood (Timer E's copies).
BYE_RETRIES = 6
_CALL_ID = re.compile(rb"\r\nCall-ID: *([^\r]+)", re.IGNORECASE)


def burst_request(n: int, sip_port: int, port: int) -> bytes:
    """The n-th request: a BYE in a dialog, or a new REGISTER or INVITE without credentials."""
    if n % BYE_EVERY == 0:
        method, to = "BYE", "<sip:1001@127.0.0.1>;tag=callee"
    else:
        method, to = ("REGISTER", "<sip:1001@127.0.0.1>") if n % 2 else ("INVITE", "<sip:1001@127.0.0.1>")
    return (
        f"{method} sip:1001@127.0.0.1:{sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-b{n};rport\r\n"
        f"From: <sip:1001@127.0.0.1>;tag=b{n}\r\nTo: {to}\r\n"
        f"Call-ID: b{n}@127.0.0.1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:1001@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class OverloadTests(SynchronousTestCase):
    """Under a flood far above capacity pbx refuses new work that waited too long and keeps serving dialogs."""

    def setUp(self) -> None:
        self.sip_port = free_port()
        config = json.loads(loopback_config(
            api_port=free_port(),
            sip_port=self.sip_port,
            admin_password=admin_password(),
            extensions={"1001": strong_password("1001")},
            security={"allow": ["127.0.0.1/32"]},
        ))
        self.daemon = Daemon(self.mktemp(), json.dumps(config))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(self.sock.close)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def send(self, n: int) -> None:
        """Send the n-th request to the daemon."""
        self.sock.sendto(burst_request(n, self.sip_port, self.port), ("127.0.0.1", self.sip_port))

    def answers(self, wanted: int, limit: float) -> dict[str, bytes]:
        """Final answers by Call-ID, read until ``wanted`` arrived or ``limit`` seconds passed."""
        got: dict[str, bytes] = {}
        deadline = time.monotonic() + limit
        while len(got) < wanted and (remaining := deadline - time.monotonic()) >= 0:
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                break
            data = self.sock.recv(65535)
            found = _CALL_ID.search(data)
            if found and not data.startswith(b"SIP/2.0 1"):
                got[found.group(1).decode()] = data
        return got

    def test_flood(self) -> None:
        """New REGISTERs and INVITEs get their challenge or a 503 with Retry-After; every BYE gets its 481; new work is taken again after."""
        got: dict[str, bytes] = {}
        sent = 0
        end = time.monotonic() + FLOOD_SECONDS
        while time.monotonic() < end:
            for n in range(sent, sent + BATCH):
                self.send(n)
            sent += BATCH
            got.update(self.answers(BATCH * 100, 0.005))
        byes = {f"b{n}@127.0.0.1": n for n in range(0, sent, BYE_EVERY)}
        for attempt in range(BYE_RETRIES + 1):
            got.update(self.answers(sent, 0.5 * 2**attempt))
            missing = [n for call_id, n in byes.items() if call_id not in got]
            if not missing:
                break
            for n in missing:
                self.send(n)
        status = {call_id: data.split(b" ", 2)[1].decode() for call_id, data in got.items()}
        summary = f"{len(got)} of {sent} answered; " + ", ".join(
            f"{code}: {list(status.values()).count(code)}" for code in sorted(set(status.values()))
        )
        print(summary)
        # In-dialog requests are never refused: each BYE reached the
        # transaction layer, which finds no such dialog (§15.1.2).
        self.assertEqual({status.get(call_id) for call_id in byes}, {"481"}, summary)
        new = {call_id: code for call_id, code in status.items() if call_id not in byes}
        self.assertLessEqual(set(new.values()), {"401", "407", "503"}, summary)
        refused = [got[call_id] for call_id, code in new.items() if code == "503"]
        self.assertGreater(len(refused), 0, summary)
        self.assertTrue(all(b"\r\nRetry-After: 5\r\n" in data for data in refused), refused[0])
        self.assertIsNotNone(self.daemon.wait_for(re.compile(r"overloaded: requests wait [0-9]+ ms to be read")))

        # Recovery: once the queue is read, a new REGISTER is challenged again.
        def challenged() -> bool:
            n = sent + int(time.monotonic() * 1000) % 1_000_000 * 2 + 1
            self.send(n)
            answer = self.answers(1, 2.0)
            return any(data.startswith(b"SIP/2.0 401 ") for data in answer.values())

        wait_until(challenged, 30, "a new REGISTER challenged after the flood", interval=0.2)

        # The end of the episode is logged when new work is read in time a
        # second after the last refusal.
        def logged_over() -> bool:
            return challenged() and any("overload over:" in line for line in self.daemon.output)

        wait_until(logged_over, 30, "overload over logged", interval=0.3)
        over = self.daemon.wait_for(re.compile(r"overload over: [0-9]+ request"))
        count = int(re.search(r"overload over: ([0-9]+)", over).group(1))  # type: ignore[union-attr]
        self.assertGreaterEqual(count, len(refused), over)
        self.assertEqual(self.daemon.tracebacks, [])
