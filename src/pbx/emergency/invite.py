"""
What an emergency INVITE to a trunk carries beyond an ordinary one.

- The caller's location by value: a ``multipart/mixed`` body (RFC 5621
  §3) holding the SDP offer and the PIDF-LO (:mod:`pbx.emergency.pidf`),
  the latter with a ``Content-ID``;
- ``Geolocation: <cid:...>`` naming that part (RFC 6442 §4.1) and
  ``Geolocation-Routing: no`` (§4.2: the location is for the PSAP, not
  for choosing a route);
- the callback number in ``P-Asserted-Identity`` (RFC 3325 §9.1), so the
  PSAP can call back: a ``tel:`` URI for an E.164 number, which may stand
  beside the ``sip:`` one a trunk puts there itself (§9.1 allows one of
  each);
- ``Priority: emergency`` (RFC 3261 §20.26).

Without a known location the call still goes out (Kari's Law: nothing
blocks it) with the headers but no PIDF-LO; the carrier's record for the
callback number is then all the PSAP has.  Pure: no Twisted.
"""

from __future__ import annotations

from attrs import frozen

from pbx.emergency.options import CivicAddress
from pbx.emergency.pidf import CONTENT_TYPE as PIDF_CONTENT_TYPE
from pbx.emergency.pidf import build_pidf_lo
from pbx.sip.ids import new_tag

__all__ = ["EmergencyInvite", "emergency_invite"]

CRLF = b"\r\n"


@frozen
class EmergencyInvite:
    """
    The additions to one outbound emergency INVITE.

    :ivar headers: ``(name, value)`` pairs to add (in this order).
    :ivar body: the new message body (the SDP alone when there is no location).
    :ivar content_type: the new ``Content-Type`` of the body.
    :ivar location: the PIDF-LO inside the body, or ``b""``.
    :ivar content_id: the PIDF-LO part's ``Content-ID`` (without ``<>``),
        which ``Geolocation`` names; for a sender that builds the multipart
        body itself.
    """

    headers: tuple[tuple[str, str], ...]
    body: bytes
    content_type: str
    location: bytes = b""
    content_id: str = ""


def emergency_invite(
    *,
    extension: str,
    callback_number: str,
    sdp: bytes,
    domain: str,
    now: float,
    address: CivicAddress | None,
    method: str = "Manual",
    element: str = "tuple",
    sdp_type: str = "application/sdp",
    token: str = "",
) -> EmergencyInvite:
    """
    The headers and body an emergency INVITE from ``extension`` carries.

    :param extension: the extension that dialled the emergency number.
    :param callback_number: the number the PSAP calls back (E.164 where
        the trunk gives one); put in P-Asserted-Identity.
    :param sdp: the SDP offer the INVITE would carry (may be empty: an
        offerless INVITE then carries the PIDF-LO alone).
    :param domain: our SIP domain (the PAI's and the Content-ID's host).
    :param now: the clock's time (the PIDF-LO's timestamp).
    :param address: the caller's dispatchable location, or None.
    :param method: how that location was found (see :func:`build_pidf_lo`).
    :param element: ``tuple`` or ``device`` (``emergency.pidf_element``).
    :param sdp_type: the Content-Type of ``sdp``.
    :param token: a unique token for the boundary and Content-ID (default: a fresh one).
    """
    if callback_number.startswith("+"):
        identity = f"<tel:{callback_number}>"
    else:
        identity = f"<sip:{callback_number}@{domain};user=phone>"
    headers = [
        ("P-Asserted-Identity", identity),
        ("Priority", "emergency"),
    ]
    if address is None:
        return EmergencyInvite(tuple(headers), sdp, sdp_type if sdp else "")
    token = token or new_tag() + new_tag()
    cid = f"{token}@{domain}"
    location = build_pidf_lo(
        address,
        entity=f"pres:{extension}@{domain}",
        now=now,
        method=method,
        element=element,
    )
    boundary = f"boundary-{token}"
    parts = []
    if sdp:
        parts.append(b"Content-Type: " + sdp_type.encode() + CRLF + CRLF + sdp)
    parts.append(
        b"Content-Type: "
        + PIDF_CONTENT_TYPE.encode()
        + CRLF
        + b"Content-ID: <"
        + cid.encode()
        + b">"
        + CRLF
        + CRLF
        + location
    )
    # RFC 2046 §5.1.1: the CRLF before each "--boundary" line belongs to the
    # delimiter, not to the part; the last delimiter ends with "--".
    mark = b"--" + boundary.encode()
    body = b"".join(mark + CRLF + part + CRLF for part in parts) + mark + b"--" + CRLF
    headers += [("Geolocation", f"<cid:{cid}>"), ("Geolocation-Routing", "no")]
    return EmergencyInvite(
        tuple(headers), body, f"multipart/mixed;boundary={boundary}", location, cid
    )
