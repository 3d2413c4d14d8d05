"""Packaging: the wheel carries the twistd dropin and installs into a fresh venv."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.paths import ROOT

pytestmark = pytest.mark.packaging


class WheelTests(SynchronousTestCase):
    """Build the wheel, install it into a new virtual environment, ask twistd."""

    def test_wheel_installs_and_twistd_lists_pbx(self) -> None:
        """The installed wheel makes `twistd --help` list pbx and ships the default config."""
        if not (ROOT / "setup.py").exists():
            raise self.skipTest("not running from a source checkout")
        work = Path(self.mktemp()).resolve()
        work.mkdir(parents=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(ROOT)],
            check=True, cwd=work,
        )
        [wheel] = list(work.glob("pbx-*.whl"))
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn("twisted/plugins/pbx_plugin.py", names)
        self.assertFalse([n for n in names if n.startswith("twisted/plugins/__init__")])
        self.assertTrue([n for n in names if n.endswith("data/etc/pbx/pbx.yml")])
        # The browser pages are package data, beside the code that serves them.
        shipped = {n.rpartition("/")[2] for n in names if n.startswith("pbx/api/static/")}
        source = {p.name for p in (ROOT / "src" / "pbx" / "api" / "static").iterdir()}
        self.assertEqual(shipped, source)
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, env=env, cwd=work)
        result = subprocess.run([str(venv / "bin" / "twistd"), "--help"], capture_output=True, env=env, cwd=work)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout.decode(), r"\n\s+pbx\s+An enterprise telephone system")
        self.assertTrue((venv / "etc" / "pbx" / "pbx.yml").is_file())
        check = subprocess.run([str(venv / "bin" / "twistd"), "pbx", "--check-config"],
                               capture_output=True, env=env, cwd=work)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn(str(venv / "etc" / "pbx" / "pbx.yml"), check.stdout.decode())
        pages = subprocess.run(
            [str(python), "-c", "from pbx.api.pages import load_static; print(sorted(load_static('x')))"],
            capture_output=True, env=env, cwd=work, text=True,
        )
        self.assertEqual(pages.returncode, 0, pages.stderr)
        self.assertIn("'index.html'", pages.stdout)
