"""Session timer (RFC 4028) decisions about an incoming INVITE."""

from __future__ import annotations

from pbx.sip.message import Request


def caller_refreshes(request: Request) -> bool:
    """RFC 4028 §9: whether the caller can refresh: it supports timers and left refreshing to itself."""
    supported = [v.strip().lower() for v in request.headers.get_all("Supported")]
    params = (request.headers.get("Session-Expires") or "").split(";")[1:]
    asked = {k.strip().lower(): v.strip().lower() for k, _, v in (p.partition("=") for p in params)}
    return "timer" in supported and asked.get("refresher", "uac") == "uac"
