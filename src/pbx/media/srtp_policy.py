"""
Which legs speak SRTP: the policy an extension or a trunk is given
(``srtp:`` in the config and the API), and its check.

Kept apart from :mod:`pbx.media.sdes` so that reading the config loads no
crypto library.
"""

from __future__ import annotations

__all__ = ["POLICIES", "SrtpPolicy", "srtp_policy_problem"]


class SrtpPolicy:
    """What a leg (an extension's phone, a trunk) may or must speak."""

    OFF = "off"
    """Plain RTP only: an ``RTP/SAVP`` offer gets ``488``."""
    OFFERED = "offered"
    """SRTP when the phone offers it over TLS, or when the other leg is encrypted; plain otherwise."""
    REQUIRED = "required"
    """SRTP only: plain RTP, or any offer over UDP/TCP, gets ``488``."""


POLICIES = (SrtpPolicy.OFF, SrtpPolicy.OFFERED, SrtpPolicy.REQUIRED)


def srtp_policy_problem(value: object) -> str:
    """What is wrong with ``value`` as a policy, "" if nothing."""
    if value in POLICIES:
        return ""
    return f"must be one of {', '.join(POLICIES)}, not {value!r}"
