"""
Running the real ``twistd pbx`` for integration tests.

The daemon is started as a child process on loopback ports chosen for the
test; :meth:`Daemon.start` returns when its ``pbx ready`` line appears (the
time limit there only guards against a hung start, it is not a measurement).
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

READY = re.compile(r"pbx ready")

#: twistd, run by the interpreter running the tests.
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


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


class Daemon:
    """One ``twistd -n pbx`` child process."""

    def __init__(self, workdir: str, config: str, env: dict[str, str] | None = None) -> None:
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.config_path = os.path.join(self.workdir, "pbx.yml")
        Path(self.config_path).write_text(config)
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.output: list[str] = []

    def command(self, *extra: str) -> list[str]:
        """The twistd command line for this daemon."""
        return [*TWISTD, "--pidfile=", "-n", "pbx", "-c", self.config_path, *extra]

    def start(self, limit: float = 60.0) -> None:
        """Start the daemon and wait for its ready line."""
        self.process = subprocess.Popen(
            self.command(), cwd=self.workdir, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.wait_for(READY, limit)

    def wait_for(self, pattern: re.Pattern[str], limit: float = 60.0) -> str:
        """Read output lines until one matches ``pattern``; return it."""
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + limit
        fd = self.process.stdout.fileno()
        buffer = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                if self.process.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                text = line.decode("utf-8", "replace")
                self.output.append(text)
                if pattern.search(text):
                    return text
        raise AssertionError(f"no line matching {pattern.pattern!r}; output:\n" + "\n".join(self.output[-40:]))

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
        if self.process.stdout is not None and not self.process.stdout.closed:
            rest = self.process.stdout.read().decode("utf-8", "replace")
            self.output.extend(rest.splitlines())
            self.process.stdout.close()
        return self.process.returncode


def http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
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
