"""
Which attestation level an outbound call's PASSporT carries (ATIS-1000074 §5.2.3).

- ``A`` (full): pbx authenticated the caller and the calling number is one of
  the trunk's DIDs, so pbx vouches for both.
- ``B`` (partial): the caller is authenticated, but the number is not ours
  (a mobile number set as caller ID, a customer's own range).
- ``C`` (gateway): pbx only relays the call (it came in from another trunk,
  or from a source it did not authenticate).

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

__all__ = ["Attestation", "attestation"]

Attestation = Literal["A", "B", "C"]


def attestation(
    calling_tn: str,
    *,
    authenticated: bool,
    trunk_dids: Collection[str],
    relayed: bool = False,
) -> Attestation:
    """
    Choose the attestation level of an outbound call.

    :param calling_tn: the calling number, canonical (:func:`pbx.stir.tn.canonical_tn`).
    :param authenticated: whether pbx authenticated the caller (a registered
        extension that answered a digest challenge).
    :param trunk_dids: the trunk's DIDs, canonical.
    :param relayed: whether pbx only relays the call (it did not originate it).
    :returns: ``"A"``, ``"B"`` or ``"C"``.
    """
    if relayed or not authenticated:
        return "C"
    return "A" if calling_tn in trunk_dids else "B"
