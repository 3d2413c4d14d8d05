"""Integration tests: the real ``twistd pbx`` on loopback."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.daemon import Daemon, free_port, http, wait_until

pytestmark = pytest.mark.integration


def config(api_port: int, sip_port: int, extra: str = "") -> str:
    """A loopback configuration on the given ports."""
    return f"""
sip:
  domain: pbx.test
  listen: ["udp:{sip_port}:interface=127.0.0.1", "tcp:{sip_port}:interface=127.0.0.1"]
api:
  listen: "tcp:{api_port}:interface=127.0.0.1"
  admins:
    - {{username: admin, password: "${{PBX_ADMIN_PASSWORD:-}}"}}
extensions:
  "1001": {{name: Demo One}}
  "1002": {{name: Demo Two, password: "Sec0nd-demo-secret"}}
{extra}
"""


class DaemonTests(SynchronousTestCase):
    """The daemon starts on embedded defaults, answers the API and keeps its state."""

    def setUp(self) -> None:
        self.api_port = free_port()
        self.sip_port = free_port()
        self.workdir = self.mktemp()
        self.daemon = Daemon(self.workdir, config(self.api_port, self.sip_port))
        self.addCleanup(self.daemon.stop)

    def admin_password(self) -> str:
        """The generated admin password from the first start's log."""
        for line in self.daemon.output:
            m = re.search(r"generated API admin password for admin: (\S+)", line)
            if m:
                return m.group(1)
        raise AssertionError("no generated admin password in the log")

    def test_start_login_status_restart(self) -> None:
        """First start generates secrets once; status answers after login; a restart keeps them."""
        self.daemon.start()
        password = self.admin_password()
        generated = [line for line in self.daemon.output if "generated SIP password" in line]
        self.assertEqual(len(generated), 1)  # 1001 only: 1002 has a configured password
        self.assertIn("for 1001", generated[0])
        base = f"http://127.0.0.1:{self.api_port}/api/v1"
        self.assertEqual(http("GET", f"{base}/status")[0], 401)
        status, body = http("POST", f"{base}/auth/login", {"username": "admin", "password": password})
        self.assertEqual(status, 200)
        token = body["token"]
        status, body = http("GET", f"{base}/status", token=token)
        self.assertEqual(status, 200)
        self.assertEqual(body["counts"]["extensions"], 2)
        self.assertIn(f"http:127.0.0.1:{self.api_port}", body["listeners"])
        # twistd re-raises SIGTERM after a clean shutdown.
        self.assertIn(self.daemon.stop(), (0, -signal.SIGTERM))
        self.assertTrue([line for line in self.daemon.output if "Main loop terminated" in line])
        self.assertFalse([line for line in self.daemon.output if "Traceback" in line])

        again = Daemon(self.workdir, config(self.api_port, self.sip_port))
        self.addCleanup(again.stop)
        again.start()
        self.assertFalse([line for line in again.output if "generated" in line])
        status, _ = http("POST", f"{base}/auth/login", {"username": "admin", "password": password})
        self.assertEqual(status, 200)

    def test_bad_config_one_line(self) -> None:
        """A bad config stops startup with one line naming file, key and problem, and status 1."""
        bad = Daemon(self.workdir, config(self.api_port, self.sip_port, 'rtp: {ports: "20000-10000"}'))
        result = subprocess.run(bad.command(), cwd=self.workdir, env=bad.env, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        err = (result.stdout + result.stderr).decode().strip()
        self.assertEqual(err, f"pbx: {bad.config_path}: rtp.ports: range 20000-10000 is inverted")

    def test_bad_log_level_one_line(self) -> None:
        """An unknown log.level stops startup with one line naming the key and the levels."""
        bad = Daemon(self.workdir, config(self.api_port, self.sip_port, "log: {level: loud}"))
        result = subprocess.run(bad.command(), cwd=self.workdir, env=bad.env, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            (result.stdout + result.stderr).decode().strip(),
            f"pbx: {bad.config_path}: log.level: must be one of debug, info, warn, error, not 'loud'",
        )

    def test_log_level_warn(self) -> None:
        """With log.level warn the daemon logs its generated secrets (warn) but none of its info lines."""
        quiet = Daemon(self.workdir, config(self.api_port, self.sip_port, "log: {level: warn}"))
        log = open(f"{self.workdir}/twistd.out", "w+b")  # noqa: SIM115 - closed by cleanup
        self.addCleanup(log.close)
        process = subprocess.Popen(quiet.command(), cwd=self.workdir, env=quiet.env, stdout=log,
                                   stderr=subprocess.STDOUT)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        base = f"http://127.0.0.1:{self.api_port}/api/v1"

        def answers() -> bool:
            try:
                return http("GET", f"{base}/status")[0] == 401
            except OSError:
                return False

        wait_until(answers, 60.0, "the API (no ready line at warn)")
        process.terminate()
        process.wait(60)
        log.seek(0)
        out = log.read().decode()
        self.assertIn("generated API admin password for admin", out)
        # Both info lines come before the API listens.
        self.assertNotIn("at schema version", out)
        self.assertNotIn("extensions from config", out)
        self.assertNotIn("Traceback", out)

    def test_check_config(self) -> None:
        """--check-config exits 0 for a good file and 1 with the one line for a bad one."""
        good = Daemon(self.workdir, config(self.api_port, self.sip_port))
        ok = subprocess.run(good.command("--check-config"), cwd=self.workdir, env=good.env,
                            capture_output=True, timeout=60)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn(b"configuration OK", ok.stdout)
        bad = Daemon(self.workdir, config(self.api_port, self.sip_port, "features: {voicemale: {}}"))
        result = subprocess.run(bad.command("--check-config"), cwd=self.workdir, env=bad.env,
                                capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.decode().strip(),
                         f"pbx: {bad.config_path}: features.voicemale: no plugin provides this feature")
        self.assertNotIn(b"Traceback", result.stdout + result.stderr)

    def test_port_in_use(self) -> None:
        """A listener that cannot bind stops the daemon with one line and a non-zero status."""
        import socket

        blocker = socket.socket()
        blocker.bind(("127.0.0.1", self.api_port))
        blocker.listen()
        self.addCleanup(blocker.close)
        daemon = Daemon(self.workdir, config(self.api_port, self.sip_port))
        result = subprocess.run(daemon.command(), cwd=self.workdir, env=daemon.env, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        out = (result.stdout + result.stderr).decode()
        self.assertIn("pbx: startup failed: api.listen", out)
        self.assertNotIn("Traceback", out)
