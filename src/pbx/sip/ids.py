"""
Fresh identifiers pbx puts in the messages it makes: tags (RFC 3261 §19.3),
Call-IDs (§8.1.1.4) and Via branches (§8.1.1.7).
"""

from __future__ import annotations

import secrets

#: §8.1.1.7: every branch we make starts with this, so peers know it is unique.
MAGIC_COOKIE = "z9hG4bK"


def new_tag() -> str:
    """A fresh From/To tag (§19.3: at least 32 bits of randomness)."""
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    """A fresh Call-ID (§8.1.1.4)."""
    return f"{secrets.token_hex(12)}@{host}"


def new_branch() -> str:
    """A fresh Via branch (§8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)
