"""
Running the real ``twistd pbx`` for integration tests.

The daemon is started as a child process on loopback ports chosen for the
test; :meth:`Daemon.start` returns when its ``pbx ready`` line appears (the
time limit there only guards against a hung start, it is not a measurement).

A thread drains the daemon's output all the time, so a daemon that logs a
lot (one line per malformed datagram in a flood) never blocks on a full
pipe.  Tests wait on log lines (:meth:`Daemon.wait_for`) or poll the API in a
bounded loop (:func:`wait_until`); they never sleep to let the server work.

Helpers for the peer tests live here too: a configuration builder
(:func:`loopback_config`), strong per-test SIP passwords
(:func:`strong_password`), an API client that logs in once (:class:`API`)
and :func:`require_binary`, which skips a test whose SIP peer is not
installed (or fails it when ``CI`` is set, where a missing peer is a broken
image, not an excuse).
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import re
import secrets
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

READY = re.compile(r"pbx ready")

#: twistd, run by the interpreter running the tests.
TWISTD = [
    sys.executable,
    "-c",
    "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
]

#: The API administrator every generated config has.
ADMIN = "admin"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port number free on 127.0.0.1 for both UDP and TCP right now."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, other) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_pair() -> int:
    """A port ``p`` such that ``p`` and ``p + 1`` are free for UDP and TCP (SIP and SIP over TLS)."""
    for _ in range(200):
        port = free_port()
        if port < 65535 and _port_free(port + 1):
            return port
    raise AssertionError("no two adjacent free ports on 127.0.0.1")


def require_binary(name: str, package: str) -> str:
    """
    The path of a SIP peer program.

    :raises unittest.SkipTest: when it is missing (pytest and trial both
        report a skip with the reason).
    :raises AssertionError: when it is missing and ``CI`` is set.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"{name} is not installed (Debian package {package})"
    if os.environ.get("CI"):
        raise AssertionError(f"{reason}; CI is set, so a missing peer is an error")
    raise unittest.SkipTest(reason)


def strong_password(number: str) -> str:
    """A fresh random SIP password that the config accepts for extension ``number``."""
    from pbx.security.passwords import generate_password, password_problem

    while True:
        candidate = generate_password(16)
        if password_problem(candidate, username=number) is None:
            return candidate


def admin_password() -> str:
    """A fresh random API administrator password the config accepts."""
    from pbx.security.passwords import generate_password, password_problem

    while True:
        candidate = generate_password(20)
        if password_problem(candidate, username=ADMIN, min_length=12) is None:
            return candidate


def loopback_config(
    *,
    api_port: int,
    sip_port: int,
    admin_password: str,
    extensions: Mapping[str, str] = {},  # noqa: B006 - never mutated
    transports: Iterable[str] = ("udp", "tcp"),
    tls_port: int | None = None,
    digest_algorithms: Iterable[str] | None = None,
    state_dir: str | None = None,
    domain: str = "pbx.test",
    security: Mapping[str, Any] | None = None,
) -> str:
    """
    A configuration listening on 127.0.0.1 only.

    The result is JSON, which is YAML too; no value holds ``$``, so nothing
    is taken for an environment reference.

    :param extensions: extension number -> SIP password.
    :param transports: ``udp`` and/or ``tcp``, all on ``sip_port``.
    :param tls_port: adds a TLS listener there (self-signed certificate
        generated in ``<state_dir>/tls`` at first start).
    :param digest_algorithms: challenge order; None keeps the default.
    :param security: the ``security:`` section (rate limits, allow-list);
        None keeps the defaults.
    """
    listen = [f"{t}:{sip_port}:interface=127.0.0.1" for t in transports]
    if tls_port is not None:
        listen.append(f"tls:{tls_port}:interface=127.0.0.1")
    sip: dict[str, Any] = {"domain": domain, "listen": listen}
    if digest_algorithms is not None:
        sip["digest_algorithms"] = list(digest_algorithms)
    config: dict[str, Any] = {
        "sip": sip,
        "api": {
            "listen": f"tcp:{api_port}:interface=127.0.0.1",
            "admins": [{"username": ADMIN, "password": admin_password}],
        },
        "extensions": {
            number: {"password": password} for number, password in extensions.items()
        },
    }
    if state_dir is not None:
        config["state_dir"] = state_dir
    if security is not None:
        config["security"] = dict(security)
    text = json.dumps(config, indent=1)
    assert "$" not in text
    return text


def wait_until(
    condition: Callable[[], T | None], limit: float, what: str, interval: float = 0.1
) -> T:
    """
    Poll ``condition`` until it returns something true, at most ``limit`` seconds.

    This is a bounded poll of an observable (the API, a file), not a sleep
    standing in for the server's work: it returns as soon as the condition
    holds.

    :returns: the first true value.
    :raises AssertionError: naming ``what`` when time runs out.
    """
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {limit:.0f}s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """One ``twistd -n pbx`` child process."""

    #: Output lines kept in :attr:`output`; a flood logs one per datagram.
    KEEP_LINES = 100_000
    #: Lines kept after each ``Traceback`` line, in :attr:`tracebacks`.
    TRACEBACK_LINES = 40

    def __init__(
        self,
        workdir: str,
        config: str,
        env: dict[str, str] | None = None,
        *,
        nofile: int | None = None,
    ) -> None:
        """
        :param nofile: when given, the daemon starts with this soft and hard
            open files limit (RLIMIT_NOFILE), so it cannot raise it.
        """
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.config_path = os.path.join(self.workdir, "pbx.yml")
        Path(self.config_path).write_text(config)
        # A config without state_dir keeps its state in <workdir>/pbx-data:
        # the default place, given as systemd's StateDirectory= would give it.
        state = os.path.join(self.workdir, "pbx-data")
        self.env = {**os.environ, "STATE_DIRECTORY": state, **(env or {})}
        self.nofile = nofile
        self.process: subprocess.Popen[bytes] | None = None
        #: The most recent output lines (all of them unless there are more than KEEP_LINES).
        self.output: collections.deque[str] = collections.deque(maxlen=self.KEEP_LINES)
        #: Every traceback in the output, with the lines after it, whatever KEEP_LINES drops.
        self.tracebacks: list[str] = []
        self._changed = threading.Condition()
        self._total = 0  # lines read so far
        # The next line wait_for looks at, counted from the first line read.
        self._cursor = 0
        self._eof = False
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        """The daemon's process id (twistd -n does not fork)."""
        assert self.process is not None, "not started"
        return self.process.pid

    def command(self, *extra: str) -> list[str]:
        """The twistd command line for this daemon."""
        return [*TWISTD, "--pidfile=", "-n", "pbx", "-c", self.config_path, *extra]

    def start(self, limit: float = 60.0) -> None:
        """Start the daemon and wait for its ready line."""
        command = self.command()
        if self.nofile is not None:
            # prlimit sets the limit and execs twistd (same pid); a
            # preexec_fn is unsafe with the output-reading threads running.
            prlimit = require_binary("prlimit", "util-linux")
            command = [prlimit, f"--nofile={self.nofile}:{self.nofile}", "--", *command]
        self.process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(
            target=self._drain, name=f"pbx-output-{self.process.pid}", daemon=True
        )
        self._reader.start()
        self.wait_for(READY, limit)

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        capture = 0
        for raw in iter(self.process.stdout.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._changed:
                self.output.append(text)
                self._total += 1
                if "Traceback" in text:
                    capture = self.TRACEBACK_LINES
                if capture:
                    self.tracebacks.append(text)
                    capture -= 1
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for(self, pattern: re.Pattern[str], limit: float = 60.0) -> str:
        """Wait for an output line after the last one matched that matches ``pattern``; return it."""
        deadline = time.monotonic() + limit
        with self._changed:
            while True:
                first = self._total - len(self.output)
                start = max(self._cursor, first)
                lines = itertools.islice(self.output, start - first, None)
                for number, line in enumerate(lines, start):
                    if pattern.search(line):
                        self._cursor = number + 1
                        return line
                self._cursor = self._total
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._changed.wait(remaining)
            tail = "\n".join(list(self.output)[-40:])
        raise AssertionError(f"no line matching {pattern.pattern!r}; output:\n{tail}")

    def rss_kib(self, field: str = "VmRSS") -> int:
        """
        The daemon's resident set size in KiB (``VmRSS`` in /proc/<pid>/status),
        or its peak so far with ``field="VmHWM"``.
        """
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} for process {self.pid}")

    def stop(self) -> int:
        """Stop the daemon with SIGTERM; return its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None:
            self._reader.join(30)
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.process.stdout.close()
        return self.process.returncode


def http(
    method: str, url: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    """One JSON HTTP request; returns (status, decoded body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


class API:
    """The daemon's REST API as the configured administrator; logs in on first use."""

    def __init__(self, port: int, password: str, username: str = ADMIN) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1"
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def get(self, path: str) -> Any:
        """GET ``path`` (below /api/v1); returns the decoded body of a 200."""
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path}: {status} {body}"
        return body

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Any request to ``path`` (below /api/v1) with a JSON ``body``; (status, decoded body)."""
        if self._token is None:
            status, answer = http("POST", f"{self.base}/auth/login", self._credentials)
            assert status == 200, f"login failed: {status} {answer}"
            self._token = answer["token"]
        return http(method, f"{self.base}{path}", body, token=self._token)

    def download(self, path: str) -> bytes:
        """GET ``path`` (below /api/v1) as raw bytes (an audio file)."""
        self.request("GET", "/status")  # logs in once
        request = urllib.request.Request(f"{self.base}{path}", headers={"Authorization": f"Bearer {self._token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()  # type: ignore[no-any-return]

    def registrations(self) -> list[dict[str, Any]]:
        """The live bindings from /api/v1/registrations."""
        return list(self.get("/registrations")["registrations"])


def options_ping(sip_port: int, limit: float = 10.0) -> str:
    """
    Send OPTIONS over UDP from a fresh socket until a final response comes back.

    Retransmits like a UA (RFC 3261 §17.1.2.2: T1 = 0.5 s, doubling, capped
    at T2 = 4 s) so one lost datagram on a busy server is not a failure.

    :returns: the final response's status line.
    :raises AssertionError: when no final response arrives within ``limit``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        tag = secrets.token_hex(6)
        request = (
            f"OPTIONS sip:pbx@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{tag};rport\r\n"
            f"From: <sip:probe@127.0.0.1:{port}>;tag={tag}\r\n"
            f"To: <sip:pbx@127.0.0.1:{sip_port}>\r\n"
            f"Call-ID: probe-{tag}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        deadline = time.monotonic() + limit
        interval = 0.5
        while time.monotonic() < deadline:
            s.sendto(request, ("127.0.0.1", sip_port))
            resend = min(time.monotonic() + interval, deadline)
            interval = min(interval * 2, 4.0)
            while (remaining := resend - time.monotonic()) > 0:
                # poll, not select: the caller may hold more than 1,024 descriptors.
                poller = select.poll()
                poller.register(s, select.POLLIN)
                if not poller.poll(remaining * 1000):
                    break
                data = s.recv(65535)
                status = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
                if f"probe-{tag}@".encode() in data and not status.startswith(
                    "SIP/2.0 1"
                ):
                    return status
    raise AssertionError(
        f"no final response to OPTIONS on udp:127.0.0.1:{sip_port} within {limit:.0f}s"
    )
