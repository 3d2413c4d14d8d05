"""
Integration tests: SIPp registers 1,000 extensions with digest auth.

The scenario (``tests/sipp/register_auth.xml``) sends REGISTER, expects 401,
answers the challenge and expects 200, once per line of an injection file.
SIPp computes MD5 only and answers the first WWW-Authenticate, so the server
offers MD5 first.  SIPp exits 0 only when every call succeeded.

Startup writes each configured extension into the store; with 1,000 that
takes about a second here, inside the ready-line time limit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    loopback_config,
    require_binary,
    strong_password,
    wait_until,
)
from support.paths import SCENARIOS

pytestmark = pytest.mark.integration

SCENARIO = SCENARIOS / "register_auth.xml"
EXTENSIONS = [str(n) for n in range(2000, 3000)]
#: Calls per second, and most calls in progress at once.
RATE = 500
CONCURRENT = 100
#: Upper bound for every binding to reach the API.
LIMIT_SECONDS = 30.0


class SIPpRegisterTests(SynchronousTestCase):
    """1,000 extensions register through SIPp, and the bindings outlive a restart."""

    def setUp(self) -> None:
        self.sipp = require_binary("sipp", "sip-tester")
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.api_port = free_port()
        self.sip_port = free_port()
        self.passwords = {number: strong_password(number) for number in EXTENSIONS}
        self.admin = admin_password()
        self.config = loopback_config(
            api_port=self.api_port,
            sip_port=self.sip_port,
            admin_password=self.admin,
            extensions=self.passwords,
            digest_algorithms=["MD5", "SHA-256"],
            # 1,000 REGISTERs at 500 a second from one address is a load
            # test, far above the per-source limits: allow-list SIPp.
            security={"allow": ["127.0.0.1"]},
        )
        self.daemon = Daemon(self.workdir, self.config)
        self.addCleanup(self.daemon.stop)
        self.daemon.start(limit=120)

    def injection_file(self) -> str:
        """
        SIPp's injection file: extension; authentication keyword.

        SIPp 3.6 does not expand ``[field0]`` inside ``[authentication ...]``
        in a scenario, but it does expand a keyword that comes from a field,
        so field1 carries the whole keyword.  The passwords are letters and
        digits only, so they need no quoting.
        """
        path = os.path.join(self.workdir, "users.csv")
        lines = ["SEQUENTIAL"]
        lines += [
            f"{n};[authentication username={n} password={p}]"
            for n, p in self.passwords.items()
        ]
        Path(path).write_text("\n".join(lines) + "\n")
        return path

    def run_sipp(self) -> int:
        """Register every extension; return SIPp's local port (the contacts' port)."""
        client_port = free_port(socket.SOCK_DGRAM)
        count = len(self.passwords)
        command = [
            self.sipp,
            "-sf",
            str(SCENARIO),
            "-inf",
            self.injection_file(),
            "-m",
            str(count),
            "-r",
            str(RATE),
            "-l",
            str(CONCURRENT),
            "-i",
            "127.0.0.1",
            "-p",
            str(client_port),
            "-t",
            "u1",
            "-nostdin",
            "-nd",
            "-timeout",
            "120",
            "-timeout_error",
            "-trace_stat",
            "-trace_err",
            "-trace_screen",
            f"127.0.0.1:{self.sip_port}",
        ]
        result = subprocess.run(
            command,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            reports = sorted(Path(self.workdir).glob("register_auth_*"))
            detail = "\n".join(
                f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                for p in reports
            )
            self.fail(
                f"sipp exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{detail}"
            )
        return client_port

    def assert_all_registered(self, api: API, client_port: int) -> None:
        """
        The API lists exactly one binding per extension, as SIPp sent it.

        Every binding is in the store (which the API reads) before its
        200, so the first answer should be complete; the poll, within
        LIMIT_SECONDS, only bounds the wait.
        """

        def complete() -> list[dict[str, Any]] | None:
            listed = api.registrations()
            return listed if len(listed) >= len(EXTENSIONS) else None

        registrations = wait_until(
            complete,
            LIMIT_SECONDS,
            f"{len(EXTENSIONS)} bindings in /api/v1/registrations",
        )
        self.assertEqual(len(registrations), len(EXTENSIONS))
        by_extension = {r["extension"]: r for r in registrations}
        self.assertEqual(sorted(by_extension), EXTENSIONS)
        for number, binding in by_extension.items():
            self.assertEqual(
                binding["contact"],
                f"sip:{number}@127.0.0.1:{client_port};transport=UDP",
            )
            self.assertEqual(binding["transport"], "udp")
            self.assertEqual(binding["source"], f"127.0.0.1:{client_port}")
            self.assertEqual(binding["user_agent"], "SIPp register_auth")
            self.assertGreater(binding["expires_in"], 3000)

    def test_register_1000(self) -> None:
        """Every REGISTER of 1,000 is challenged, then accepted; the API lists 1,000 bindings."""
        client_port = self.run_sipp()
        self.assert_all_registered(API(self.api_port, self.admin), client_port)

    def test_bindings_survive_restart(self) -> None:
        """After a restart on the same state directory, all 1,000 bindings are listed again."""
        client_port = self.run_sipp()
        # Stopped as soon as SIPp is done: bindings still queued for the store
        # must be written at shutdown.  twistd re-raises SIGTERM after a clean stop.
        self.assertIn(self.daemon.stop(), (0, -signal.SIGTERM))
        again = Daemon(self.workdir, self.config)
        self.addCleanup(again.stop)
        again.start(limit=120)
        self.assertTrue(
            [line for line in again.output if "registrations restored: 1000" in line]
        )
        self.assert_all_registered(API(self.api_port, self.admin), client_port)
        self.assertFalse(self.daemon.tracebacks + again.tracebacks)
