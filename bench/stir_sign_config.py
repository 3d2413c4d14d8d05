"""
Write what ``trunk_calls.py --sign`` appends to pbx's configuration: a test
STIR/SHAKEN PKI (``tests/support/stir.py``: root, intermediate, signer
with TNAuthList, valid from 30 days ago for a year) in DIR, and
``DIR/sign.yml``, the ``stir_shaken:`` section that makes pbx sign every
INVITE out through a trunk with it.

Usage, from a source checkout::

    python bench/stir_sign_config.py DIR
    python bench/trunk_calls.py --sign DIR/sign.yml
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.stir import make_pki  # noqa: E402


def main(argv: list[str]) -> int:
    """Write the PKI's files and sign.yml into the directory ``argv[0]`` names."""
    if len(argv) != 1:
        print("usage: stir_sign_config.py DIR", file=sys.stderr)
        return 2
    folder = Path(argv[0]).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    pki = make_pki(around=time.time())
    (folder / "shaken.pem").write_bytes(pki.chain_pem())
    (folder / "shaken.key").write_bytes(pki.signer_key_pem())
    (folder / "sign.yml").write_text(
        "stir_shaken:\n"
        f"  certificate: {folder / 'shaken.pem'}\n"
        f"  key: {folder / 'shaken.key'}\n"
        '  x5u: "https://certs.example.com/shaken.pem"\n'
    )
    print(folder / "sign.yml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
