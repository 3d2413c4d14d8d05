"""
Voice prompts: ``scripts/render_prompts.py`` (flite and sox, run as
processes) reproduces the shipped files byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from support.paths import ROOT
from support.prompt_files import RATES, load_manifest, sha256

SCRIPT = ROOT / "scripts" / "render_prompts.py"


class RegenerationTests(SynchronousTestCase):
    """
    scripts/render_prompts.py reproduces the shipped files.
    """

    def test_rerender_matches_manifest(self) -> None:
        """Re-rendering two prompts into a temporary directory gives the manifest's bytes."""
        if not SCRIPT.is_file():
            raise self.skipTest("not running from a source checkout")
        missing = [t for t in ("flite", "sox") if shutil.which(t) is None]
        if missing and not os.environ.get("CI"):
            raise self.skipTest(
                f"{' and '.join(missing)} not installed (apt-get install flite sox)"
            )
        self.assertEqual(
            missing, [], "CI must have flite and sox (bootstrap.sh installs them)"
        )
        manifest = load_manifest()
        out = Path(tempfile.mkdtemp(prefix="pbx-render-test-"))
        self.addCleanup(shutil.rmtree, out)
        ids = ["digits/7", "vm/goodbye"]
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--out", str(out), "--only", *ids],
            capture_output=True,
            text=True,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        rendered = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        if rendered["generator"] != manifest["generator"]:
            raise self.skipTest(
                f"tool versions differ from the shipped set's: "
                f"{rendered['generator']} != {manifest['generator']}"
            )
        self.assertEqual(sorted(rendered["prompts"]), ids)
        for pid in ids:
            for rate in RATES:
                self.assertEqual(
                    (pid, rate, sha256(out / str(rate) / f"{pid}.wav")),
                    (pid, rate, manifest["prompts"][pid]["sha256"][str(rate)]),
                )
