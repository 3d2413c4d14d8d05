"""
Integration tests: baresip registers over UDP, TCP and TLS.

baresip runs until told to stop, so each test starts it, polls the API until
the binding shows up (bounded), then terminates it; baresip unregisters on
the way out, which the API shows too.

Digest algorithm: the packaged baresip 1.0.0 (libre 1.1.0) knows MD5 only,
and it does not skip a challenge it cannot answer: as soon as any
WWW-Authenticate names SHA-256 it gives up with "Register: Function not
implemented", whichever order the challenges come in.  That is why pbx
challenges with MD5 only by default (``sip.digest_algorithms``).
:class:`BaresipTests` sets ``digest_algorithms: [MD5]`` explicitly;
:class:`BaresipDefaultDigestTests` leaves it out, checks that the default
challenge names MD5 alone, and registers with it.

TLS: libre 1.1.0 does not verify the server's certificate (it registers
even with an unrelated CA bundle, and has no ``sip_verify_server`` option).
The test still points ``sip_cafile`` at the server's self-signed certificate,
and checks with Python's ssl module that this very file verifies the server
on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    free_port_pair,
    loopback_config,
    require_binary,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

EXTENSION = "1001"
MODULES = Path("/usr/lib/baresip/modules")
#: Upper bound for a registration to show up or go away.
LIMIT = 20.0
#: baresip quits by itself after this many seconds, should a test die before terminating it.
SAFETY_QUIT = 120
#: How baresip reports a registration that failed for good (e.g. "Register: Function not implemented").
REFUSED = re.compile(r"reg: \S+: Register: .*")


class RegisterRefused(AssertionError):
    """baresip gave up registering and said why."""


class BaresipCase(SynchronousTestCase):
    """A daemon with one extension and TLS, and the means to run baresip against it."""

    #: The server's challenge order; see the module docstring.
    digest_algorithms: list[str] | None = ["MD5"]

    def setUp(self) -> None:
        self.baresip = require_binary("baresip", "baresip-core")
        if not (MODULES / "account.so").is_file():
            raise AssertionError(
                f"{MODULES}/account.so is missing: baresip-core is incomplete"
            )
        self.workdir = os.path.abspath(self.mktemp())
        self.api_port = free_port()
        self.sip_port = free_port()
        self.tls_port = free_port()
        self.password = strong_password(EXTENSION)
        admin = admin_password()
        self.daemon = Daemon(
            self.workdir,
            loopback_config(
                api_port=self.api_port,
                sip_port=self.sip_port,
                tls_port=self.tls_port,
                admin_password=admin,
                extensions={EXTENSION: self.password},
                digest_algorithms=self.digest_algorithms,
                state_dir=os.path.join(self.workdir, "state"),
            ),
        )
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.certificate = os.path.join(self.workdir, "state", "tls", "cert.pem")
        self.api = API(self.api_port, admin)

    def start_baresip(
        self, transport: str
    ) -> tuple[subprocess.Popen[bytes], int, Path]:
        """
        Start baresip with one account on ``transport``.

        :returns: the process, baresip's own SIP port (it listens for TLS
            one above) and its output file.
        """
        local = free_port_pair()
        confdir = Path(self.workdir) / f"baresip-{transport}"
        confdir.mkdir()
        # Only what registration needs: no audio device, no console, no
        # control sockets.  A codec is loaded so the account has media to offer.
        (confdir / "config").write_text(
            "poll_method\t\tepoll\n"
            f"module_path\t\t{MODULES}\n"
            f"sip_listen\t\t127.0.0.1:{local}\n"
            f"sip_cafile\t\t{self.certificate}\n"
            "module\t\t\tg711.so\n"
            "module_tmp\t\taccount.so\n"
        )
        port = self.tls_port if transport == "tls" else self.sip_port
        (confdir / "accounts").write_text(
            f"<sip:{EXTENSION}@127.0.0.1:{port};transport={transport}>"
            f";auth_pass={self.password};regint=300\n"
        )
        log = confdir / "output.txt"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [self.baresip, "-f", str(confdir), "-t", str(SAFETY_QUIT), "-s"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=confdir,
            )
        self.addCleanup(self.kill, process)
        return process, local, log

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """Make sure baresip is gone."""
        if process.poll() is None:
            process.kill()
        process.wait(30)

    def binding(self, transport: str) -> dict[str, Any] | None:
        """The binding of the extension over ``transport``, if listed."""
        for r in self.api.registrations():
            if r["extension"] == EXTENSION and r["transport"] == transport:
                return r
        return None

    def check_register(self, transport: str) -> None:
        """
        baresip's binding over ``transport`` is listed as expected, and gone
        once baresip is terminated (it unregisters on the way out).

        :raises RegisterRefused: when baresip reports that it gave up.
        """
        process, local, log = self.start_baresip(transport)

        def registered() -> dict[str, Any] | None:
            if process.poll() is not None:
                raise AssertionError(f"baresip exited {process.returncode}")
            refused = REFUSED.search(log.read_text(errors="replace"))
            if refused:
                raise RegisterRefused(refused.group(0))
            return self.binding(transport)

        try:
            binding = wait_until(
                registered, LIMIT, f"baresip's {transport} registration"
            )
        except AssertionError as e:
            raise type(e)(f"{e}\n{log.read_text(errors='replace')[-4000:]}") from None
        contact_port = local + 1 if transport == "tls" else local
        contact = binding["contact"]
        self.assertTrue(contact.startswith(f"sip:{EXTENSION}-"), contact)
        self.assertIn(f"@127.0.0.1:{contact_port}", contact)
        if transport != "udp":
            self.assertTrue(contact.endswith(f";transport={transport}"), contact)
        self.assertTrue(binding["source"].startswith("127.0.0.1:"), binding)
        self.assertTrue(binding["user_agent"].startswith("baresip"), binding)
        self.assertTrue(240 < binding["expires_in"] <= 300, binding)
        self.assertEqual(len(self.api.registrations()), 1)

        # SIGTERM: baresip unregisters (Expires: 0) and exits.
        process.send_signal(signal.SIGTERM)
        wait_until(
            lambda: self.binding(transport) is None,
            LIMIT,
            f"baresip's {transport} unregistration",
        )
        self.assertEqual(process.wait(LIMIT), 0)
        self.assertFalse(self.daemon.tracebacks)


class BaresipTests(BaresipCase):
    """baresip registers over each transport and the API shows the right binding."""

    def test_register_udp(self) -> None:
        """baresip registers over UDP; the binding is listed with transport udp, then removed on exit."""
        self.check_register("udp")

    def test_register_tcp(self) -> None:
        """baresip registers over TCP; the binding is listed with transport tcp, then removed on exit."""
        self.check_register("tcp")

    def test_register_tls(self) -> None:
        """baresip registers over TLS, trusting the generated certificate; the binding says tls."""
        context = ssl.create_default_context(cafile=self.certificate)
        with socket.create_connection(("127.0.0.1", self.tls_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                self.assertIn(tls.version(), ("TLSv1.2", "TLSv1.3"))
        self.check_register("tls")


class BaresipDefaultDigestTests(BaresipCase):
    """With the default challenge (MD5 only), baresip 1.0 registers."""

    digest_algorithms = None

    def test_default_challenge_is_md5(self) -> None:
        """An unauthenticated REGISTER is challenged with MD5 and nothing else."""
        self.assertEqual(challenge_algorithms(self.sip_port), ["MD5"])

    def test_register_udp(self) -> None:
        """baresip registers over UDP against the default challenge."""
        self.check_register("udp")


def challenge_algorithms(sip_port: int, limit: float = 10.0) -> list[str]:
    """
    Send one unauthenticated REGISTER over UDP (resent like a UA, RFC 3261
    §17.1.2.2) and return the algorithm of each WWW-Authenticate of the 401.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        tag = secrets.token_hex(6)
        request = (
            f"REGISTER sip:127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{tag};rport\r\n"
            f"From: <sip:{EXTENSION}@127.0.0.1>;tag={tag}\r\n"
            f"To: <sip:{EXTENSION}@127.0.0.1>\r\n"
            f"Call-ID: challenge-{tag}@127.0.0.1\r\n"
            "CSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{EXTENSION}@127.0.0.1:{port}>\r\n"
            "Max-Forwards: 70\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        deadline = time.monotonic() + limit
        interval = 0.5
        while time.monotonic() < deadline:
            s.sendto(request, ("127.0.0.1", sip_port))
            ready, _, _ = select.select(
                [s], [], [], max(0.0, min(interval, deadline - time.monotonic()))
            )
            interval = min(2 * interval, 4.0)
            if not ready:
                continue
            text = s.recv(65535).decode("utf-8", "replace")
            if not text.startswith("SIP/2.0 401"):
                raise AssertionError(f"expected 401, got: {text.splitlines()[0]}")
            challenges = [
                line.split(":", 1)[1]
                for line in text.split("\r\n")
                if line.lower().startswith("www-authenticate:")
            ]
            return [
                (
                    m.group(1)
                    if (m := re.search(r"algorithm=\"?([\w-]+)", c, re.I))
                    else "MD5"
                )
                for c in challenges
            ]
    raise AssertionError(f"no answer to REGISTER on udp:127.0.0.1:{sip_port}")
