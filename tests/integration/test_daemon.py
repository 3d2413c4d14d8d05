"""Integration tests: the real ``twistd pbx`` on loopback."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.daemon import TWISTD, Daemon, free_port, http, require_binary, wait_until

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

    def admin_password(self, daemon: Daemon | None = None) -> str:
        """The generated admin password from a start's block of generated secrets."""
        for line in (daemon or self.daemon).output:
            m = re.search(r"API admin password for admin: (\S+)", line)
            if m:
                return m.group(1)
        raise AssertionError("no generated admin password in the log")

    def secrets_block(self, daemon: Daemon) -> list[str]:
        """The lines of the generated-secrets block, which must come just before pbx ready."""
        lines = list(daemon.output)
        [start] = [i for i, line in enumerate(lines) if "generated secrets, shown once" in line]
        [ready] = [i for i, line in enumerate(lines) if "pbx ready" in line]
        block = lines[start + 1 : ready]
        self.assertTrue(block and all(line.startswith("\t") for line in block), lines[start:ready])
        return [line.strip() for line in block]

    def test_start_login_status_restart(self) -> None:
        """First start shows its secrets once, in one block before ready; status answers after login; a restart keeps them."""
        self.daemon.start()
        password = self.admin_password()
        block = self.secrets_block(self.daemon)
        # 1001 only: 1002 has a configured password.
        self.assertEqual(
            [line.rsplit(":", 1)[0] for line in block],
            ["SIP password for 1001", "API admin password for admin"],
        )
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

    def test_voicemail_pins_in_the_block(self) -> None:
        """With voicemail on, the generated PINs join the same block before pbx ready."""
        daemon = Daemon(self.workdir, config(self.api_port, self.sip_port, "features: {voicemail: {}}"))
        self.addCleanup(daemon.stop)
        daemon.start()
        block = self.secrets_block(daemon)
        pins = [line for line in block if line.startswith("voicemail PIN for ")]
        self.assertEqual([line.split(":")[0] for line in pins], ["voicemail PIN for 1001", "voicemail PIN for 1002"])
        # Shown once: no PIN anywhere else in the output.
        self.assertEqual(len([line for line in daemon.output if "PIN for" in line]), 2)

    def test_bad_config_one_line(self) -> None:
        """A bad config stops startup with one line naming file, key and problem, and status 1."""
        bad = Daemon(self.workdir, config(self.api_port, self.sip_port, 'rtp: {ports: "20000-10000"}'))
        result = subprocess.run(bad.command(), cwd=self.workdir, env=bad.env, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        err = (result.stdout + result.stderr).decode().strip()
        self.assertEqual(err, f"pbx: {bad.config_path}: rtp.ports: range 20000-10000 is inverted")

    def test_fips_mode_needs_fips_libraries(self) -> None:
        """
        security.fips: true starts only where the crypto libraries are in FIPS
        mode; elsewhere it stops with one line naming the key and the library.
        """
        from pbx.security.fips import refusal

        fips = Daemon(self.workdir, config(self.api_port, self.sip_port, "security: {fips: true}"))
        problem = refusal(True)  # the same libraries as the daemon's
        if problem is None:
            self.addCleanup(fips.stop)
            fips.start()
            return
        result = subprocess.run(fips.command(), cwd=self.workdir, env=fips.env, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertEqual((result.stdout + result.stderr).decode().strip(),
                         f"pbx: {fips.config_path}: security.fips: {problem}")

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
        """With log.level warn the daemon logs its generated secrets and its ready line, but no other info line."""
        quiet = Daemon(self.workdir, config(self.api_port, self.sip_port, "log: {level: warn}"))
        log = open(f"{self.workdir}/twistd.out", "w+b")  # noqa: SIM115 - closed by cleanup
        self.addCleanup(log.close)
        process = subprocess.Popen(quiet.command(), cwd=self.workdir, env=quiet.env, stdout=log,
                                   stderr=subprocess.STDOUT)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        # The ready line passes the level, and it comes after everything else of the start.
        ready = Path(f"{self.workdir}/twistd.out")
        wait_until(lambda: "pbx ready" in ready.read_text(errors="replace"), 60.0, "pbx ready at log level warn")
        process.terminate()
        process.wait(60)
        log.seek(0)
        out = log.read().decode()
        self.assertIn("API admin password for admin: ", out)
        self.assertIn("pbx ready", out)
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

    def block_api_port(self) -> socket.socket:
        """Hold the API port, as another program would."""
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", self.api_port))
        blocker.listen()
        self.addCleanup(blocker.close)
        return blocker

    def test_port_in_use(self) -> None:
        """A port in use stops the start with one line, status 1 and no secret made; the next good start shows them."""
        blocker = self.block_api_port()
        daemon = Daemon(self.workdir, config(self.api_port, self.sip_port))
        result = subprocess.run(daemon.command(), cwd=self.workdir, env=daemon.env, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        out = (result.stdout + result.stderr).decode()
        self.assertIn("pbx: startup failed: api.listen", out)
        self.assertNotIn("Traceback", out)
        self.assertNotIn("generated", out)
        self.assertNotIn("password for", out)

        blocker.close()
        self.daemon.start()
        password = self.admin_password()
        base = f"http://127.0.0.1:{self.api_port}/api/v1"
        status, _ = http("POST", f"{base}/auth/login", {"username": "admin", "password": password})
        self.assertEqual(status, 200)

    def twistd(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``twistd pbx -c <the test config> ARGS`` to its end."""
        return subprocess.run(
            [*TWISTD, "--pidfile=", "pbx", "-c", self.daemon.config_path, *args],
            cwd=self.workdir, env=self.daemon.env, capture_output=True, text=True, timeout=60,
        )

    def test_reset_password_while_running(self) -> None:
        """--reset-password prints a new admin or SIP password that works at once on the running PBX."""
        self.daemon.start()
        old = self.admin_password()
        reset = self.twistd("--reset-password", "admin")
        self.assertEqual(reset.returncode, 0, reset.stderr)
        [line] = reset.stdout.splitlines()
        m = re.fullmatch(r"new API admin password for admin: (\S+) \(shown once; only its hash is kept\)", line)
        assert m is not None, line
        base = f"http://127.0.0.1:{self.api_port}/api/v1"
        self.assertEqual(http("POST", f"{base}/auth/login", {"username": "admin", "password": m.group(1)})[0], 200)
        self.assertEqual(http("POST", f"{base}/auth/login", {"username": "admin", "password": old})[0], 401)

        unknown = self.twistd("--reset-password", "nobody")
        self.assertEqual(unknown.returncode, 1)
        self.assertEqual(unknown.stdout, "")
        self.assertEqual(
            unknown.stderr.strip(), f"pbx: {self.daemon.config_path}: no API administrator or extension named 'nobody'"
        )

        sipsak = require_binary("sipsak", "sipsak")
        reset = self.twistd("--reset-password", "1001")
        self.assertEqual(reset.returncode, 0, reset.stderr)
        sip_password = reset.stdout.split(": ", 1)[1].split()[0]
        register = subprocess.run(
            [sipsak, "-U", "-C", f"sip:1001@127.0.0.1:{free_port()}", "-u", "1001", "-x", "60", "-a", sip_password,
             "-s", f"sip:1001@127.0.0.1:{self.sip_port}", "-i"],
            capture_output=True, text=True, errors="replace", timeout=60, stdin=subprocess.DEVNULL,
        )
        self.assertEqual(register.returncode, 0, register.stdout + register.stderr)

    def daemonised(self, pidfile: str) -> list[str]:
        """The command line of a forking twistd (no -n) with its pid file and log in the work directory."""
        logfile = os.path.join(self.daemon.workdir, "twistd.log")
        return [*TWISTD, f"--pidfile={pidfile}", f"--logfile={logfile}", "pbx", "-c", self.daemon.config_path]

    def kill_daemon(self, pidfile: str) -> None:
        """Stop a daemonised twistd left running by a failed test."""
        try:
            with open(pidfile) as f:
                os.kill(int(f.read()), signal.SIGTERM)
        except (OSError, ValueError):
            pass

    def test_daemon_mode_port_in_use(self) -> None:
        """A forking twistd whose port is in use exits non-zero with the reason on stderr and leaves no pid file."""
        self.block_api_port()
        pidfile = os.path.join(self.daemon.workdir, "twistd.pid")
        self.addCleanup(self.kill_daemon, pidfile)
        result = subprocess.run(self.daemonised(pidfile), cwd=self.workdir, env=self.daemon.env,
                                capture_output=True, text=True, timeout=60)
        self.assertNotEqual(result.returncode, 0)
        first = result.stderr.splitlines()[0]
        self.assertTrue(first.startswith(f"pbx: startup failed: api.listen tcp:{self.api_port}:interface=127.0.0.1: "),
                        result.stderr)
        self.assertIn("Address already in use", first)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        # The daemon removed its pid file before telling twistd's parent.
        self.assertFalse(os.path.exists(pidfile))

    def test_daemon_mode_good_start(self) -> None:
        """A forking twistd returns 0 once the PBX is ready, with its pid file; SIGTERM stops it and removes the file."""
        pidfile = os.path.join(self.daemon.workdir, "twistd.pid")
        self.addCleanup(self.kill_daemon, pidfile)
        result = subprocess.run(self.daemonised(pidfile), cwd=self.workdir, env=self.daemon.env,
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, "")
        with open(pidfile) as f:
            pid = int(f.read())
        # Ready means listening: the API answers at once.
        self.assertEqual(http("GET", f"http://127.0.0.1:{self.api_port}/api/v1/status")[0], 401)
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not os.path.exists(pidfile), 30, "the daemon to stop and remove its pid file")
