"""
The README's two commands are the ones the project runs: CI runs the "Test
it" command as written, and both go through ``bootstrap.sh``, whose modes
they name.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parents[2]


def command_under(heading: str) -> str:
    """The first literal block (``::`` then an indented line) of the README section ``heading``."""
    text = (ROOT / "README.rst").read_text()
    section = text.split(f"\n{heading}\n{'-' * len(heading)}\n", 1)[1]
    section = re.split(r"\n\S[^\n]*\n-{3,}\n", section, maxsplit=1)[0]
    match = re.search(r"::\n\n    (\S[^\n]*)\n", section)
    assert match is not None, f"no command in README's {heading!r}"
    return match.group(1)


class ReadmeCommandTests(SynchronousTestCase):
    def test_ci_runs_the_test_command(self) -> None:
        """.ci/run's last line is the README's test command, character for character."""
        command = command_under("Test it")
        lines = (ROOT / ".ci" / "run").read_text().strip().splitlines()
        self.assertEqual(lines[-1], command)
        self.assertEqual(command, "./bootstrap.sh --test && .venv/bin/tox")

    def test_start_command(self) -> None:
        """The start command makes the virtual environment first and runs twistd from it."""
        self.assertEqual(command_under("Start it"), "./bootstrap.sh && .venv/bin/twistd -n pbx")

    def test_bootstrap_knows_both_modes(self) -> None:
        """bootstrap.sh takes no argument or --test, and refuses anything else."""
        script = (ROOT / "bootstrap.sh").read_text()
        self.assertIn('--test) mode=test ;;', script)
        self.assertIn('*) echo "usage: ./bootstrap.sh [--test]" >&2; exit 2 ;;', script)
