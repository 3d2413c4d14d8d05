"""
Helpers for the integration tests of pbx's features (the attendant, voicemail
retrieval) with the real daemon and SIPp phones.

:class:`FeatureCallCase` is :class:`support.sipp.SIPpCallCase` with a
configuration of the test's own (:meth:`FeatureCallCase.configure` adds the
feature, its dialplan routes and ``security:``), and:

- :meth:`FeatureCallCase.dial`: one call from 1001 with a UAC scenario whose
  SDP names a port of an :class:`~support.apps.RTPRecorder` (what pbx sends
  is recorded there) and whose keys come from the injection file's fields
  3 onwards (one SIP INFO each);
- :meth:`FeatureCallCase.audit`: the audit trail, read from the daemon's
  SQLite database (the REST API has no audit endpoint);
- :func:`heard_in_order`: prompts found one after the other in a recording,
  some of them only by their start (a prompt a key cut short).
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from support.apps import RTPRecorder, frames, locate, prompt
from support.calls import RATE, call_config, free_udp_block
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    require_binary,
    strong_password,
)
from support.sipp import CALLER, LIMIT, SIPP_RUNS, SIPpCallCase

__all__ = [
    "FeatureCallCase",
    "Heard",
    "describe",
    "heard_in_order",
    "prompt_end",
]

#: Relay ports reserved for pbx: 20 RTP/RTCP pairs.
RELAY_PORTS = 40

#: What :func:`heard_in_order` found: (prompt id, r, start in seconds).
Heard = list[tuple[str, float, float]]


def heard_in_order(
    audio: np.ndarray, expected: Sequence[tuple[str, float | None]]
) -> Heard:
    """
    Find each prompt of ``expected`` in ``audio``, each after the previous one.

    :param expected: (prompt id, seconds): a prompt is looked for by its first
        ``seconds`` only (it was cut short by a key), or whole for None.
    :returns: (prompt id, r, start in seconds) of each, in order.
    """
    found: Heard = []
    start = 0
    samples = np.asarray(audio, dtype=np.float64)
    for prompt_id, seconds in expected:
        template = prompt(prompt_id)
        if seconds is not None:
            template = template[: int(seconds * RATE)]
        r, offset = locate(samples[start:], template, first=True)
        found.append((prompt_id, r, (start + offset) / RATE))
        start += offset + len(template) // 2
    return found


def prompt_end(found: tuple[str, float, float]) -> float:
    """When a prompt :func:`heard_in_order` found whole ends (pbx pads the last frame)."""
    prompt_id, _, start = found
    return start + frames(prompt(prompt_id)) * 0.02


def describe(found: Heard) -> str:
    """One line per prompt found, for a failure message."""
    return ", ".join(f"{p} r={r:.3f} at {t:.2f}s" for p, r, t in found)


class FeatureCallCase(SIPpCallCase):
    """The daemon with 1001 and 1002 and one feature, and SIPp phones to call it."""

    #: The extensions of the configuration.
    NUMBERS: tuple[str, ...] = ("1001", "1002")

    def configure(self, config: dict[str, Any]) -> None:
        """Add the feature, its routes and anything else to the configuration (a dict)."""
        raise NotImplementedError

    def setUp(self) -> None:
        """Start the daemon on loopback with :meth:`configure`'s configuration."""
        self.sipp = require_binary("sipp", "sip-tester")
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.api_port = free_port()
        self.sip_port = free_port()
        self.passwords = {n: strong_password(n) for n in self.NUMBERS}
        self.relay_first = free_udp_block(RELAY_PORTS + 8 * SIPP_RUNS)
        self.relay_last = self.relay_first + RELAY_PORTS - 1
        self.media_ports = iter(
            range(self.relay_last + 1, self.relay_last + 1 + 8 * SIPP_RUNS, 8)
        )
        self.admin = admin_password()
        config = json.loads(
            call_config(
                api_port=self.api_port,
                sip_port=self.sip_port,
                admin_password=self.admin,
                extensions=self.passwords,
                transports=("udp",),
                rtp_ports=(self.relay_first, self.relay_last),
            )
        )
        self.configure(config)
        text = json.dumps(config, indent=1)
        assert "$" not in text
        self.daemon = Daemon(str(self.workdir / "pbx"), text)
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(self.api_port, self.admin)
        self.processes = []
        self.addCleanup(self._kill_all)

    def recorder(self) -> RTPRecorder:
        """A fresh :class:`RTPRecorder`, closed at the end of the test."""
        recorder = RTPRecorder()
        self.addCleanup(recorder.close)
        return recorder

    def dial(
        self,
        scenario: str,
        callee: str,
        recorder: RTPRecorder,
        name: str,
        keys: Sequence[str] = (),
    ) -> None:
        """
        Call ``callee`` as 1001 with ``tests/sipp/<scenario>.xml`` and wait
        for SIPp to succeed.

        The injection row is ``1001;<callee>;[authentication ...];<keys...>``,
        so the scenario finds the keys in ``[field3]`` onwards.  Its files are
        ``<name>.messages`` and so on in the work directory.
        """
        row = [
            CALLER,
            callee,
            f"[authentication username={CALLER} password={self.passwords[CALLER]}]",
            *keys,
        ]
        inf = self.injection(name, [row])
        process = self.start_sipp(
            scenario, free_port(socket.SOCK_DGRAM),
            "-inf", str(inf), "-m", "1", "-mp", str(next(self.media_ports)),
            "-key", "rtp_port", str(recorder.port),
            f"127.0.0.1:{self.sip_port}",
            name=name, limit=LIMIT * 3,
        )  # fmt: skip
        self.finish(process, name)

    def messages(self, name: str) -> str:
        """The SIP messages SIPp run ``name`` sent and received."""
        return (self.workdir / f"{name}.messages").read_text(errors="replace")

    def audit(self, kind: str | None = None) -> list[dict[str, Any]]:
        """
        The audit events (of ``kind``), oldest first, read from the daemon's
        SQLite database: the API keeps an audit trail but does not serve it.
        """
        path = self.workdir / "pbx" / "pbx-data" / "pbx.db"
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            connection.row_factory = sqlite3.Row
            query = "SELECT time, kind, subject, source, detail FROM audit"
            rows = (
                connection.execute(query + " WHERE kind = ? ORDER BY id", (kind,))
                if kind is not None
                else connection.execute(query + " ORDER BY id")
            )
            return [dict(row) for row in rows]
        finally:
            connection.close()
