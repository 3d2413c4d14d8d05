"""
The INVITE headers that ask a phone to answer by itself (a page, an
intercom call).

There is no one standard that every phone follows, so a page sends the
forms the phones in use understand, chosen by name per group:

- ``call_info`` (and its alias ``cisco``): ``Call-Info: <sip:DOMAIN>;answer-after=0``,
  the ``answer-after`` parameter on Call-Info (RFC 3261 §20.9); Cisco,
  Yealink, Snom, Fanvil and Grandstream honour it;
- ``call_info_bare``: ``Call-Info: answer-after=0`` (older Grandstream);
- ``polycom``: ``Alert-Info: <http://localhost>;info=alert-autoanswer``
  (Polycom; Yealink too);
- ``yealink``: ``Alert-Info: info=alert-autoanswer``;
- ``grandstream``: ``Alert-Info: Ring Answer``.

The default, ``call_info`` and ``polycom``, covers most desk phones with
two well-formed headers.  The ``yealink``, ``call_info_bare`` and
``grandstream`` forms are not valid RFC 3261 syntax (no URI in angle
brackets): they are sent only to groups that ask for them.

Pure: nothing here knows about Twisted or SIP transactions.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DEFAULT_STYLES", "STYLES", "auto_answer_headers"]

#: Each style's header name and value (``{domain}`` is the PBX's SIP domain).
STYLES: dict[str, tuple[str, str]] = {
    "call_info": ("Call-Info", "<sip:{domain}>;answer-after=0"),
    "cisco": ("Call-Info", "<sip:{domain}>;answer-after=0"),
    "call_info_bare": ("Call-Info", "answer-after=0"),
    "polycom": ("Alert-Info", "<http://localhost>;info=alert-autoanswer"),
    "yealink": ("Alert-Info", "info=alert-autoanswer"),
    "grandstream": ("Alert-Info", "Ring Answer"),
}

DEFAULT_STYLES: tuple[str, ...] = ("call_info", "polycom")


def auto_answer_headers(styles: Iterable[str], domain: str) -> list[tuple[str, str]]:
    """
    The headers of ``styles``, each one once, in order.

    :param domain: the PBX's SIP domain (the Call-Info URI's host).
    :raises KeyError: for an unknown style (the options allow none).
    """
    headers: list[tuple[str, str]] = []
    for style in styles:
        name, value = STYLES[style]
        header = (name, value.format(domain=domain))
        if header not in headers:
            headers.append(header)
    return headers
