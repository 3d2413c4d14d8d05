"""
Dialogs (RFC 3261 §12) and the requests a user agent builds (§8.1.1).

A B2BUA is a user agent on both sides, so every leg of a call is one
:class:`Dialog` that pbx owns: its tags, CSeq counters, route set and remote
target.  In-dialog requests are sent to the address the peer really uses
(:attr:`Dialog.peer`, the source of its messages or of its registration),
not to the host its Contact names, so phones behind NAT stay reachable.
"""

from __future__ import annotations

from attrs import define, field

from pbx.sip.headers import NameAddr, Via
from pbx.sip.ids import new_branch, new_call_id, new_tag
from pbx.sip.message import Headers, Request, Response, SIPParseError
from pbx.sip.transaction import Peer
from pbx.sip.uri import URI, parse_uri


@define(eq=False)
class LocalAddress:
    """How we name ourselves on one transport: Via sent-by and Contact."""

    transport: str
    host: str
    port: int

    @property
    def hostport(self) -> str:
        """``host:port``, IPv6 in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def via(self, branch: str | None = None) -> str:
        """A Via value for a request we send (with rport, RFC 3581 §3)."""
        return f"SIP/2.0/{self.transport.upper()} {self.hostport};branch={branch or new_branch()};rport"

    def contact(self, user: str = "pbx", *, sips: bool = False) -> str:
        """
        Our Contact header value: the one rule every Contact pbx sends follows.

        A ``sips:`` URI only when the peer asked for SIPS (``sips``, see
        :func:`sips_requested`) and we are on TLS: RFC 3261 §8.1.1.8 and
        §12.1.1 require it then.  A SIPS URI means TLS on every hop
        (RFC 5630), which a phone that registered or called with ``sip:``
        over TLS did not ask for, and baresip 1.0 sends no ACK or BYE to one.
        Otherwise ``sip:`` with ``;transport=tcp`` or ``;transport=tls``
        (RFC 3261 §19.1.1), which phones on those transports accept.

        :param user: the user part.
        :param sips: whether the peer asked for SIPS.
        """
        if sips and self.transport == "tls":
            return f"<sips:{user}@{self.hostport}>"
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"<sip:{user}@{self.hostport}{suffix}>"


@define(eq=False)
class Dialog:
    """
    One dialog, from our side.

    :ivar local: our From/To value (with our tag).
    :ivar remote: the peer's From/To value (with its tag once known).
    :ivar remote_target: the peer's Contact URI (§12.1.1, §12.2.1.2).
    :ivar route_set: Record-Route values in the order requests use them.
    :ivar peer: where requests for this dialog go.
    :ivar address: our address on the peer's transport.
    :ivar sips: whether the dialog is secure (RFC 3261 §12.1.1, §12.1.2):
        our Contact in it is then a ``sips:`` URI.
    """

    call_id: str
    local: NameAddr
    remote: NameAddr
    remote_target: URI
    peer: Peer
    address: LocalAddress
    local_seq: int = 0
    remote_seq: int | None = None
    route_set: list[str] = field(factory=list)
    contact_user: str = "pbx"
    sips: bool = False

    @property
    def local_tag(self) -> str:
        """Our tag."""
        return self.local.tag or ""

    @property
    def remote_tag(self) -> str:
        """The peer's tag ('' before the first tagged response)."""
        return self.remote.tag or ""

    @property
    def key(self) -> tuple[str, str, str]:
        """(Call-ID, local tag, remote tag): the dialog ID (§12)."""
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(cls, request: Request, peer: Peer, address: LocalAddress, local_tag: str) -> Dialog:
        """§12.1.1: the dialog a UAS makes when it answers ``request``."""
        target = request.contacts[0].uri if request.contacts else request.from_.uri
        return cls(
            call_id=request.call_id,
            local=request.to.with_tag(local_tag),
            remote=request.from_,
            remote_target=target,
            peer=peer,
            address=address,
            local_seq=0,
            remote_seq=request.cseq.number,
            # §12.1.1: the route set is the Record-Route list, in order.
            route_set=[str(r) for r in request.record_routes],
            sips=sips_requested(request),
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response, peer: Peer, address: LocalAddress) -> Dialog:
        """§12.1.2: the dialog a UAC makes from a tagged 1xx/2xx to ``request``."""
        target = response.contacts[0].uri if response.contacts else request.uri
        return cls(
            call_id=request.call_id,
            local=request.from_,
            remote=response.to,
            remote_target=target,
            peer=peer,
            address=address,
            local_seq=request.cseq.number,
            remote_seq=None,
            # §12.1.2: the route set is the Record-Route list, reversed.
            route_set=[str(r) for r in reversed(response.record_routes)],
            # §12.1.2: secure when the request went to a SIPS URI.
            sips=request.uri.scheme == "sips",
        )

    def update_target(self, message: Request | Response) -> None:
        """§12.2: a target refresh (re-INVITE, UPDATE, their 2xx) moves the remote target."""
        try:
            contacts = message.contacts
        except SIPParseError:
            return
        if contacts:
            self.remote_target = contacts[0].uri

    def check_remote_seq(self, request: Request) -> bool:
        """
        §12.2.2: a request with a CSeq lower than the last one is out of
        order (answer 500); otherwise remember it.
        """
        number = request.cseq.number
        if self.remote_seq is not None and number < self.remote_seq and request.method not in ("ACK", "CANCEL"):
            return False
        if request.method not in ("ACK", "CANCEL"):
            self.remote_seq = number
        return True

    def contact(self, user: str | None = None) -> str:
        """Our Contact in this dialog (requests and responses alike)."""
        return self.address.contact(user or self.contact_user, sips=self.sips)

    def request(self, method: str, *, body: bytes = b"", content_type: str | None = None,
                cseq: int | None = None, branch: str | None = None) -> Request:
        """
        §12.2.1.1: a request within this dialog.

        ACK and CANCEL reuse the CSeq number given; everything else takes
        the next local sequence number.
        """
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        headers = Headers()
        headers.add("Via", self.address.via(branch))
        headers.add("Max-Forwards", "70")
        for route in self.route_set:
            headers.add("Route", route)
        headers.add("From", str(self.local))
        headers.add("To", str(self.remote))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            headers.add("Contact", self.contact())
        if content_type is not None:
            headers.add("Content-Type", content_type)
        return Request(method, self.remote_target, headers, body)


def sips_requested(request: Request) -> bool:
    """
    Whether our Contact in answer to ``request`` must be a SIPS URI: its
    Request-URI is one (§8.1.1.8), or the top Record-Route is, or, with no
    Record-Route, its Contact is (§12.1.1).
    """
    if request.uri.scheme == "sips":
        return True
    try:
        routes = request.record_routes
        if routes:
            return routes[0].uri.scheme == "sips"
        contacts = request.contacts
    except SIPParseError:
        return False
    return bool(contacts) and contacts[0].uri.scheme == "sips"


def top_via(request: Request) -> Via:
    """The request's top Via (it has been validated by the parser)."""
    return request.top_via


def new_invite(
    *,
    target: URI,
    to: str,
    from_: str,
    address: LocalAddress,
    body: bytes = b"",
    max_forwards: int = 70,
    contact_user: str = "pbx",
    extra: list[tuple[str, str]] | None = None,
) -> Request:
    """§8.1.1: an initial INVITE to ``target``, with a fresh tag and Call-ID."""
    headers = Headers()
    headers.add("Via", address.via())
    headers.add("Max-Forwards", str(max_forwards))
    headers.add("From", f"{from_};tag={new_tag()}")
    headers.add("To", to)
    headers.add("Call-ID", new_call_id(address.host))
    headers.add("CSeq", "1 INVITE")
    # §8.1.1.8: a SIPS Request-URI needs a SIPS Contact.
    headers.add("Contact", address.contact(contact_user, sips=target.scheme == "sips"))
    headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK")
    headers.add("Supported", "timer")
    for name, value in extra or []:
        headers.add(name, value)
    if body:
        headers.add("Content-Type", "application/sdp")
    return Request("INVITE", target, headers, body)


def cancel_for(invite: Request) -> Request:
    """§9.1: a CANCEL for a pending INVITE we sent (same Via branch, To without new tag)."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} CANCEL")
    return Request("CANCEL", invite.uri, headers)


def ack_for_2xx(dialog: Dialog, invite_cseq: int, body: bytes = b"") -> Request:
    """§13.2.2.4: the ACK of a 2xx, in the dialog, with the INVITE's CSeq number."""
    return dialog.request("ACK", cseq=invite_cseq, body=body,
                          content_type="application/sdp" if body else None)


def uri(text: str) -> URI:
    """Parse a URI we built ourselves."""
    return parse_uri(text)
