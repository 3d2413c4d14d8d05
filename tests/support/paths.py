"""Where the tests find the files of the source checkout they run from."""

from __future__ import annotations

from pathlib import Path

#: The source checkout: the directory holding ``src/``, ``tests/``, ``share/``, ``etc/``.
ROOT = Path(__file__).resolve().parents[2]
#: The SIPp scenarios of the integration tests.
SCENARIOS = ROOT / "tests" / "sipp"
#: The RFC 4475 and RFC 5118 torture messages (see its README.md and NOTICE).
CONFORMANCE = ROOT / "tests" / "conformance"
