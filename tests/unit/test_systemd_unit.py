"""
Tests for ``share/pbx.service``, the systemd unit: it parses, runs a command
line twistd and ``twistd pbx`` accept, and keeps the hardening that matters.
"""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from twisted.scripts._twistd_unix import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from pbx.tap import Options

UNIT = Path(__file__).resolve().parents[2] / "share" / "pbx.service"


def read_unit() -> configparser.ConfigParser:
    """The unit file as sections of keys (systemd's syntax is INI-like)."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


class SystemdUnitTests(SynchronousTestCase):
    """The shipped unit starts a real pbx command line, as the pbx user, hardened."""

    def test_exec_start_is_accepted(self) -> None:
        """ExecStart is twistd in the foreground with options twistd accepts, then pbx options the tap accepts."""
        argv = shlex.split(read_unit()["Service"]["ExecStart"])
        self.assertEqual(argv[0], "twistd")
        split = argv.index("pbx")
        twistd = ServerOptions()
        twistd.parseOptions(argv[1:split])
        self.assertTrue(twistd["nodaemon"])
        self.assertEqual(twistd["pidfile"], "")
        options = Options()
        options.parseOptions(argv[split + 1 :])
        self.assertEqual(options["config"], "/etc/pbx/pbx.yml")
        self.assertFalse(options["check-config"])

    def test_user_state_and_hardening(self) -> None:
        """It runs as pbx with /var/lib/pbx as state, a read-only system and no capabilities."""
        service = read_unit()["Service"]
        self.assertEqual((service["User"], service["StateDirectory"]), ("pbx", "pbx"))
        self.assertEqual(service["WorkingDirectory"], "/var/lib/pbx")
        self.assertEqual((service["ProtectSystem"], service["NoNewPrivileges"]), ("strict", "yes"))
        # SIP (5060, 5061) and the API (8080) are unprivileged ports.
        self.assertEqual(service["CapabilityBoundingSet"], "")
        self.assertNotIn("AmbientCapabilities", service)
        self.assertEqual(read_unit()["Install"]["WantedBy"], "multi-user.target")
