"""The prompt files shipped in the source checkout: where they are, their manifest, their hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from support.paths import ROOT

#: The prompts of every language, and the English ones.
PROMPTS = ROOT / "share" / "prompts"
LANG = PROMPTS / "en"
#: The sample rates every prompt is shipped at.
RATES = (8000, 16000)


def load_manifest() -> dict:
    """
    Read the shipped manifest.
    """
    return json.loads((LANG / "manifest.json").read_text(encoding="utf-8"))


def sha256(path: Path) -> str:
    """
    Hash a file.
    """
    return hashlib.sha256(path.read_bytes()).hexdigest()
