"""
Integration test: a burst of new work far above capacity against the live
daemon, with shedding on (``sip.overload.lag_ms: 200``; it is off by default).

One allow-listed socket on 127.0.0.1 (so the per-source limits do not drop
the burst first) sends :data:`BURST` new REGISTERs and INVITEs without
credentials as fast as it can, with an in-dialog BYE every
:data:`BYE_EVERY` requests.  Nothing waits on time: the test reads answers
until every request has one (bounded), then checks what kind they are.
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

#: Requests in the burst: the daemon's receive buffer (4 MB asked for, so
#: 8 MB as Linux counts, about 1.3 KB per datagram) holds them all, so the
#: kernel drops none of them, while they wait far longer than ``queue_ms``.
BURST = 4000
BYE_EVERY = 50
#: Seconds to wait for every answer (the daemon needs one or two).
ANSWER_LIMIT = 60.0
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
    """Under a burst far above capacity pbx refuses new work with 503 and keeps serving dialogs."""

    def setUp(self) -> None:
        self.sip_port = free_port()
        config = json.loads(loopback_config(
            api_port=free_port(),
            sip_port=self.sip_port,
            admin_password=admin_password(),
            extensions={"1001": strong_password("1001")},
            security={"allow": ["127.0.0.1/32"]},
        ))
        config["sip"]["overload"] = {"lag_ms": 200}
        self.daemon = Daemon(self.mktemp(), json.dumps(config))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(self.sock.close)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def answers(self, wanted: int, limit: float) -> dict[str, bytes]:
        """Final answers by Call-ID, read until ``wanted`` arrived or ``limit`` seconds passed."""
        got: dict[str, bytes] = {}
        deadline = time.monotonic() + limit
        while len(got) < wanted and (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                break
            data = self.sock.recv(65535)
            found = _CALL_ID.search(data)
            if found and not data.startswith(b"SIP/2.0 1"):
                got[found.group(1).decode()] = data
        return got

    def test_burst(self) -> None:
        """New REGISTERs and INVITEs get 503 with Retry-After or their challenge; every BYE gets its 481; new work is taken again after."""
        for n in range(BURST):
            self.sock.sendto(burst_request(n, self.sip_port, self.port), ("127.0.0.1", self.sip_port))
        got = self.answers(BURST, ANSWER_LIMIT)
        status = {call_id: data.split(b" ", 2)[1].decode() for call_id, data in got.items()}
        byes = {f"b{n}@127.0.0.1" for n in range(0, BURST, BYE_EVERY)}
        summary = f"{len(got)} of {BURST} answered; " + ", ".join(
            f"{code}: {list(status.values()).count(code)}" for code in sorted(set(status.values()))
        )
        # In-dialog requests are never refused: each BYE reached the
        # transaction layer, which finds no such dialog (§15.1.2).
        self.assertEqual({status.get(call_id) for call_id in byes}, {"481"}, summary)
        new = {call_id: code for call_id, code in status.items() if call_id not in byes}
        self.assertEqual(len(new), BURST - len(byes), summary)
        self.assertLessEqual(set(new.values()), {"401", "407", "503"}, summary)
        refused = [got[call_id] for call_id, code in new.items() if code == "503"]
        self.assertGreater(len(refused), 0, summary)
        for data in refused:
            self.assertIn(b"\r\nRetry-After: 5\r\n", data)
        print(summary)
        self.assertIsNotNone(self.daemon.wait_for(re.compile(r"overloaded: the reactor")))

        # Recovery: once the queue is read, a new REGISTER is challenged again.
        def challenged() -> bool:
            n = BURST + int(time.monotonic() * 1000) % 1_000_000 * 2 + 1
            self.sock.sendto(burst_request(n, self.sip_port, self.port), ("127.0.0.1", self.sip_port))
            answer = self.answers(1, 2.0)
            return any(data.startswith(b"SIP/2.0 401 ") for data in answer.values())

        wait_until(challenged, 30, "a new REGISTER challenged after the burst", interval=0.2)
        self.assertEqual(self.daemon.tracebacks, [])
