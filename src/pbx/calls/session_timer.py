"""Session timer (RFC 4028) decisions about an incoming INVITE: its interval, and who refreshes."""

from __future__ import annotations

from pbx.sip.ids import new_tag
from pbx.sip.message import Request, make_response
from pbx.sip.transaction import ServerTransaction


def caller_refreshes(request: Request) -> bool:
    """RFC 4028 §9: whether the caller can refresh: it supports timers and left refreshing to itself."""
    supported = [v.strip().lower() for v in request.headers.get_all("Supported")]
    params = (request.headers.get("Session-Expires") or "").split(";")[1:]
    asked = {k.strip().lower(): v.strip().lower() for k, _, v in (p.partition("=") for p in params)}
    return "timer" in supported and asked.get("refresher", "uac") == "uac"


def session_expires(transaction: ServerTransaction, minimum: int) -> int | None:
    """
    RFC 4028 §8.1: the INVITE's session interval (0 without one), or None
    once it was answered 400 (unreadable) or 422 (below ``minimum``, the Min-SE).
    """
    value = transaction.request.headers.get("Session-Expires")
    if value is None:
        return 0
    text = value.split(";", 1)[0].strip()
    if not text.isdigit():
        transaction.respond(make_response(transaction.request, 400, "Bad Session-Expires"))
        return None
    if int(text) < minimum:
        response = make_response(transaction.request, 422, to_tag=new_tag())
        response.headers.add("Min-SE", str(minimum))
        transaction.respond(response)
        return None
    return int(text)
