"""
PIDF-LO by value: a caller's civic address as a presence document.

The document follows RFC 4119 (the ``geopriv`` object inside PIDF), with
the civic address of RFC 5139 and the profile of RFC 5491: one
``<tuple>`` (its ``<status>`` holding ``<gp:geopriv>``, RFC 5491 §3.1) or
one ``<dm:device>`` (``<gp:geopriv>`` directly inside, RFC 5491 §3.4),
each with ``<gp:location-info>``, ``<gp:usage-rules>``, ``<gp:method>``
and a timestamp.  Built with :mod:`xml.etree.ElementTree`, so every value
is escaped.  Pure: no Twisted.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from pbx.emergency.options import CivicAddress

__all__ = ["CONTENT_TYPE", "NS", "build_pidf_lo"]

CONTENT_TYPE = "application/pidf+xml"
#: Namespace prefix -> URI, as RFC 5491's examples write them.
NS = {
    "": "urn:ietf:params:xml:ns:pidf",
    "dm": "urn:ietf:params:xml:ns:pidf:data-model",
    "gp": "urn:ietf:params:xml:ns:pidf:geopriv10",
    "gbp": "urn:ietf:params:xml:ns:pidf:geopriv10:basicPolicy",
    "ca": "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr",
}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
#: How long the recipient may keep the location (RFC 4119 §2.2.2 retention-expiry).
RETENTION_SECONDS = 24 * 3600

for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def _timestamp(when: float) -> str:
    """RFC 3339 in UTC, as PIDF's timestamp and retention-expiry take it."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_pidf_lo(
    address: CivicAddress,
    *,
    entity: str,
    now: float,
    method: str = "Manual",
    element: str = "tuple",
    item_id: str = "",
) -> bytes:
    """
    The PIDF-LO document locating ``entity`` at ``address``.

    :param entity: whom the document is about: ``pres:1000@example.com``.
    :param now: the clock's time, for the timestamp and retention expiry.
    :param method: how the location was found (the IANA method token:
        ``Manual`` for a configured or user-set address, ``Derived`` for
        one taken from the phone's network).
    :param element: ``tuple`` or ``device`` (RFC 5491 §3.4).
    :param item_id: the id of the tuple or device (default: one made from ``entity``).
    :returns: UTF-8 XML with its declaration.
    """
    if element not in ("tuple", "device"):
        raise ValueError(f"element must be tuple or device, not {element!r}")
    ident = item_id or "loc-" + uuid.uuid5(uuid.NAMESPACE_URL, entity).hex[:16]
    presence = ET.Element(_q("", "presence"), {"entity": entity})
    geopriv = ET.Element(_q("gp", "geopriv"))
    info = ET.SubElement(geopriv, _q("gp", "location-info"))
    civic = ET.SubElement(info, _q("ca", "civicAddress"), {_XML_LANG: "en"})
    for name, value in address.elements:
        ET.SubElement(civic, _q("ca", name)).text = value
    rules = ET.SubElement(geopriv, _q("gp", "usage-rules"))
    # RFC 4119 §2.2.2: not to be passed on by anyone but the PSAP's own
    # system; kept a day (the PSAP's records are governed by its own law).
    ET.SubElement(rules, _q("gbp", "retransmission-allowed")).text = "false"
    ET.SubElement(rules, _q("gbp", "retention-expiry")).text = _timestamp(
        now + RETENTION_SECONDS
    )
    ET.SubElement(geopriv, _q("gp", "method")).text = method
    if element == "tuple":
        item = ET.SubElement(presence, _q("", "tuple"), {"id": ident})
        status = ET.SubElement(item, _q("", "status"))
        status.append(geopriv)
        ET.SubElement(item, _q("", "timestamp")).text = _timestamp(now)
    else:
        item = ET.SubElement(presence, _q("dm", "device"), {"id": ident})
        item.append(geopriv)
        # RFC 4479 §3.4.3: a device is named by a URN.
        device = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, entity)}"
        ET.SubElement(item, _q("dm", "deviceID")).text = device
        ET.SubElement(item, _q("dm", "timestamp")).text = _timestamp(now)
    body: bytes = ET.tostring(presence, encoding="utf-8", xml_declaration=True)
    return body
