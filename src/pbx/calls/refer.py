"""
REFER (RFC 3515) as a phone's transfer key sends it: what the Refer-To
header asks for, the Replaces header of an attended transfer (RFC 3891),
and the NOTIFYs of the implicit subscription that report how the transfer
goes (message/sipfrag, RFC 3420), which ``Refer-Sub: false`` (RFC 4488)
turns off.

Pure parsing and message building; the decisions are
:mod:`pbx.calls.transfer`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

from attrs import define, frozen

from pbx.calls.signalling import SIPSender
from pbx.sip.dialog import Dialog
from pbx.sip.headers import parse_name_addr, parse_params
from pbx.sip.message import Request, Response, SIPParseError
from pbx.sip.uri import URI

#: Reason phrases of the statuses a transfer reports.
REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    403: "Forbidden",
    404: "Not Found",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    603: "Decline",
}


class ReferError(ValueError):
    """A Refer-To or Replaces header pbx cannot act on: answer 400 with the message."""


@frozen
class Replaces:
    """
    The dialog an attended transfer replaces (RFC 3891 §6.1).

    :ivar to_tag: the tag of the UA that gets the INVITE (RFC 3891 §3), here pbx's.
    :ivar from_tag: the other end's tag.
    :ivar early_only: whether only an early dialog may be replaced.
    """

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    def keys(self) -> list[tuple[str, str, str]]:
        """
        The dialog keys (Call-ID, our tag, their tag) it may name: phones
        disagree on whose tag is ``to-tag`` when they name a dialog they
        called in, so both readings are tried, the RFC's first.
        """
        return [
            (self.call_id, self.to_tag, self.from_tag),
            (self.call_id, self.from_tag, self.to_tag),
        ]


@frozen
class ReferTarget:
    """
    What a REFER asks for.

    :ivar uri: the Refer-To URI without its headers.
    :ivar number: its user part, unescaped: the number the transferee goes to.
    :ivar replaces: for an attended transfer, the dialog the target is in now.
    """

    uri: URI
    number: str
    replaces: Replaces | None = None


def parse_replaces(value: str) -> Replaces:
    """
    Parse a Replaces header value (RFC 3891 §6.1):
    ``callid;to-tag=..;from-tag=..[;early-only]``.

    :raises ReferError: no Call-ID, or a tag missing.
    """
    call_id, _, rest = value.strip().partition(";")
    call_id = call_id.strip()
    try:
        params = parse_params(";" + rest) if rest.strip() else {}
    except (SIPParseError, ValueError) as e:
        raise ReferError(f"bad Replaces parameters: {e}") from None
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if not call_id or not to_tag or not from_tag:
        raise ReferError("Replaces needs a Call-ID, to-tag and from-tag")
    return Replaces(call_id, to_tag, from_tag, "early-only" in params)


def parse_refer_to(value: str | None) -> ReferTarget:
    """
    Parse a Refer-To header value (RFC 3515 §2.1): a SIP URI, maybe with an
    escaped ``Replaces`` header (RFC 3891 §7.1).

    :raises ReferError: no Refer-To, not a SIP URI, no user part, or a bad Replaces.
    """
    if not value or not value.strip():
        raise ReferError("no Refer-To")
    try:
        uri = parse_name_addr(value.strip()).uri
    except (SIPParseError, ValueError) as e:
        raise ReferError(f"bad Refer-To {value.strip()[:120]!r}: {e}") from None
    if not uri.is_sip:
        raise ReferError(f"Refer-To is not a SIP URI: {uri.scheme}")
    method = uri.param("method")
    if method is not None and method.upper() != "INVITE":
        # RFC 3515 §2.1: a Refer-To may ask for another method; pbx only connects calls.
        raise ReferError(f"Refer-To asks for {method[:20]}, not INVITE")
    number = unquote(uri.user or "")
    if not number:
        raise ReferError("Refer-To names no number")
    replaces = None
    for name, escaped in uri.headers:
        if name.lower() == "replaces":
            replaces = parse_replaces(unquote(escaped))
    return ReferTarget(
        URI(uri.scheme, uri.user, None, uri.host, uri.port, uri.params),
        number,
        replaces,
    )


def wants_subscription(request: Request) -> bool:
    """RFC 4488 §4: ``Refer-Sub: false`` asks for no implicit subscription (no NOTIFY)."""
    return (request.headers.get("Refer-Sub") or "true").strip().lower() != "false"


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """A message/sipfrag body holding a status line (RFC 3515 §2.4.5, RFC 3420)."""
    return (
        f"SIP/2.0 {status} {reason or REASONS.get(status, '')}".rstrip().encode()
        + b"\r\n"
    )


@define(eq=False)
class ReferProgress:
    """
    The NOTIFYs of one REFER's implicit subscription (RFC 3515 §2.4.4).

    :ivar sip: sends requests (:class:`~pbx.calls.signalling.SIPSender`).
    :ivar dialog: the dialog the REFER came in.
    :ivar enabled: False when the REFER said ``Refer-Sub: false``: nothing is sent.
    """

    sip: SIPSender
    dialog: Dialog
    enabled: bool = True
    #: The final status once reported (the subscription is then terminated).
    final: int | None = None

    def report(
        self,
        status: int,
        reason: str | None = None,
        on_response: Callable[[Response], None] | None = None,
    ) -> bool:
        """
        NOTIFY the transferor of ``status``; a final one (>= 200) ends the
        subscription (RFC 3515 §2.4.5).  Nothing after the final one.

        :param on_response: called with the NOTIFY's final response.
        :returns: whether a NOTIFY went out.
        """
        if not self.enabled or self.final is not None:
            return False
        if status >= 200:
            self.final = status
        notify = self.dialog.request(
            "NOTIFY",
            body=sipfrag(status, reason),
            content_type="message/sipfrag;version=2.0",
        )
        notify.headers.add("Event", "refer")
        notify.headers.add(
            "Subscription-State",
            "terminated;reason=noresource" if status >= 200 else "active;expires=60",
        )

        def answered(response: Response) -> None:
            if response.status >= 200 and on_response is not None:
                on_response(response)

        self.sip.request(notify, self.dialog.peer, answered)
        return True
