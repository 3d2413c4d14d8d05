"""
The SIP core: where bytes from every transport become requests and
responses, are checked (RFC 3261 §8.2, §18.2.1), pass through the
transaction layer, and reach the method's handler.  Before any parsing, the
source defence may drop a message (a banned source, or one over its rate),
and while the reactor is behind the overload guard refuses new calls and
registrations (:mod:`pbx.sip.overload`); malformed
messages and scanners' requests count against their source.

Handlers are registered per method (REGISTER goes to the registrar, later
INVITE to the call controller); OPTIONS is answered here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.security.defence import is_scanner
from pbx.security.interfaces import ISourceDefence
from pbx.sip.expiry import ExpiringMap
from pbx.sip.ids import new_tag
from pbx.sip.location import DEFAULT_PORTS
from pbx.sip.message import (
    MalformedMessage,
    Request,
    Response,
    SIPParseError,
    UnsupportedVersion,
    make_response,
    parse_message,
)
from pbx.sip.overload import OverloadGuard, refusal
from pbx.sip.transaction import Peer, ServerTransaction, TransactionLayer
from pbx.sip.transport import Transports

Handler = Callable[[ServerTransaction], Any]

#: RFC 3261 §8.2.2.3: option tags we implement.  Path (RFC 3327) and
#: outbound (RFC 5626) headers are ignored, so they are not claimed: a
#: request that requires them gets 420.
SUPPORTED: tuple[str, ...] = ()
ACCEPT = "application/sdp"


def _unbracket(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def stamp_via(request: Request, peer: Peer) -> None:
    """
    RFC 3261 §18.2.1 and RFC 3581 §4: record where the request really came
    from in its top Via, so responses find their way back through NAT.
    """
    via = request.top_via
    params: dict[str, str | None] = {}
    if _unbracket(via.host).lower() != peer.host.lower():
        params["received"] = peer.host
    if via.wants_rport:
        params["received"] = peer.host
        params["rport"] = str(peer.port)
    if not params:
        return
    values = request.headers.get_all("Via")
    values[0] = str(via.with_params(**params))
    request.headers.set("Via", ", ".join(values))


def response_peer(request: Request, peer: Peer) -> Peer:
    """
    RFC 3261 §18.2.2 with RFC 3581 §4: where responses to ``request`` go.

    Streams answer on the connection the request came in on.  UDP answers
    go to the source address (``received``), at the ``rport`` port when the
    client asked for it and otherwise at the Via's sent-by port.  The host
    named in the Via is never used: a response never goes to an address
    that only the message itself claims.
    """
    if peer.transport != "udp":
        return peer
    via = request.top_via
    if via.wants_rport:
        return peer
    return Peer("udp", peer.host, via.port or 5060)


@define(eq=False)
class SIPCore:
    """
    Receives every SIP message and dispatches requests to method handlers.

    :ivar clock: the injected time source for every SIP timer.
    :ivar user_agent: our Server / User-Agent header value.
    """

    clock: IReactorTime
    user_agent: str = "pbx"
    handlers: dict[str, Handler] = field(factory=dict)
    #: Gets ACKs of 2xx responses, which belong to no transaction (§17.1.1.3).
    ack_handler: Callable[[Request, Peer], None] | None = None
    #: Event packages accepted in SUBSCRIBE (the event server fills it).
    allow_events: list[str] = field(factory=list)
    transports: Transports = field(init=False)
    transactions: TransactionLayer = field(init=False)
    #: Screens every message before it is parsed, and hears of misbehaviour.
    defence: ISourceDefence | None = None
    #: Refuses new work while the reactor is behind.
    overload: OverloadGuard | None = None
    stats: dict[str, int] = field(factory=lambda: {"received": 0, "bad": 0, "dropped": 0, "limited": 0})
    # RFC 3261 §8.2.2.2: (From tag, Call-ID, CSeq) of requests without a To
    # tag, to spot the same request arriving by another path.
    _merge: ExpiringMap[tuple[str, str, int, str], str] = field(init=False)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.transports = Transports(self.receive, self.clock)
        self.transactions = TransactionLayer(self.clock, self._send, self, send_bytes=self.transports.send_bytes)
        self.transports.unreachable = self.transactions.unreachable
        self._merge = ExpiringMap(self.clock)

    @property
    def allow(self) -> str:
        """The Allow header value: the methods we handle."""
        return ", ".join(sorted({"OPTIONS", "ACK", *self.handlers}))

    def _send(self, message: Request | Response, peer: Peer) -> bool:
        if isinstance(message, Response):
            message.headers.set("Server", self.user_agent)
        return self.transports.send(message, peer)

    # -- from the transports ----------------------------------------------

    def receive(self, data: bytes, peer: Peer, stream: bool, waited: float | None = None) -> None:
        """One message's bytes from a transport (``waited``: seconds in the UDP receive queue)."""
        self.stats["received"] += 1
        if self.defence is not None and not self.defence.admit(data, peer.host):
            # Banned or over its rate: dropped before any parsing, unanswered.
            self.stats["limited"] += 1
            return
        if self.overload is not None and self.overload.refuses(data, waited):
            self._refuse(data, peer)
            return
        try:
            message = parse_message(data, stream=stream)
        except MalformedMessage as e:
            self._malformed(e, peer)
            return
        if isinstance(message, Response):
            self.transactions.response_received(message, peer)
            return
        try:
            stamp_via(message, peer)
            reply_to = response_peer(message, peer)
            if stream:
                self._note_alias(message, peer)
        except SIPParseError as e:
            self._malformed(MalformedMessage(e.reason, message), peer)
            return
        if self._scanner(message, peer) or self._reject(message, reply_to):
            return
        self.transactions.request_received(message, reply_to)

    def _refuse(self, data: bytes, peer: Peer) -> None:
        """
        New work refused while overloaded, without parsing it.  Over UDP it
        is dropped unanswered: the client sends it again (RFC 3261
        §17.1.1.2 Timer A, §17.1.2.2 Timer E), and each copy is read again
        only when pbx has room, where a 503 would end the client's
        transaction (a failed call or registration) and cost an answer.
        A stream carries no retransmissions: there, a stateless 503 with
        Retry-After (§21.5.4).
        """
        assert self.overload is not None
        answer = refusal(data, peer, self.overload.limits.retry_after)
        if answer is not None:
            self.transports.send_bytes(answer[0], answer[1])

    def _scanner(self, request: Request, peer: Peer) -> bool:
        """A request from a known SIP scanner bans its source; it is dropped unanswered."""
        agent = request.headers.get("User-Agent")
        if self.defence is None or not agent or not is_scanner(agent):
            return False
        return bool(self.defence.offence(peer.host, "scanner"))

    def _note_alias(self, request: Request, peer: Peer) -> None:
        """
        RFC 5923 §5: a Via with ``alias`` offers the connection for requests
        to its sent-by address too (the phone's listening address, which
        its Contact names), but only ever for addresses on the host the
        connection comes from.
        """
        via = request.top_via
        if "alias" not in via.params or via.transport.lower() != peer.transport:
            return
        if _unbracket(via.host).lower() != peer.host.lower():
            # Without the mutual TLS authentication §6 asks for, only an
            # address on the connection's own host is believed.
            return
        port = via.port or DEFAULT_PORTS.get(peer.transport, 5060)
        self.transports.alias(Peer(peer.transport, _unbracket(via.host), port), peer)

    def _malformed(self, error: MalformedMessage, peer: Peer) -> None:
        """§8.2: 400 (or 505) when we can address a response; else drop."""
        self.stats["bad"] += 1
        if self.defence is not None and self.defence.offence(peer.host, "malformed"):
            self.stats["dropped"] += 1
            return
        request = error.request
        if request is None or request.method == "ACK":
            self.stats["dropped"] += 1
            self.log.info("malformed message from {peer} dropped: {reason}", peer=str(peer), reason=error.reason)
            return
        try:
            reply_to = response_peer(request, peer)
            stamp_via(request, peer)
        except SIPParseError:
            self.stats["dropped"] += 1
            self.log.info("malformed message from {peer} dropped: {reason}", peer=str(peer), reason=error.reason)
            return
        # §8.2.6.2: a final response adds a To tag (make_response leaves
        # a To it cannot read untouched).
        if isinstance(error, UnsupportedVersion):
            response = make_response(request, 505, to_tag=new_tag())
        else:
            # The reason phrase names the fault; keep it to printable text.
            reason = "".join(c for c in error.reason if c.isprintable())[:100] or "Bad Request"
            response = make_response(request, 400, reason, to_tag=new_tag())
        self.log.info("400 to {peer}: {reason}", peer=str(peer), reason=error.reason)
        self._send(response, reply_to)

    def _reject(self, request: Request, peer: Peer) -> bool:
        """
        Checks of RFC 3261 §8.2.1-§8.2.2 that need no transaction; answers
        and returns True when the request stops here.
        """
        if request.method == "ACK":
            return False
        status, reason, extra = 0, "", {}
        scheme = request.uri.scheme.lower()
        require = [r.strip().lower() for r in request.headers.get_all("Require") if r.strip()]
        unsupported = [r for r in require if r not in SUPPORTED]
        if scheme not in ("sip", "sips", "tel"):
            status = 416  # §8.2.2.1
        elif unsupported and request.method != "CANCEL":
            status, extra = 420, {"Unsupported": ", ".join(unsupported)}  # §8.2.2.3
        elif (request.max_forwards == 0) and request.method not in ("OPTIONS", "REGISTER"):
            status = 483  # §16.3 step 2; we are the last hop for OPTIONS/REGISTER
        elif self._merged(request):
            status, reason = 482, "Loop Detected"  # §8.2.2.2
        if not status:
            return False
        # §8.2.6.2: the UAS adds a To tag to every final response.
        response = make_response(request, status, reason or None, to_tag=new_tag())
        for name, value in extra.items():
            response.headers.add(name, value)
        self._send(response, peer)
        return True

    def _merged(self, request: Request) -> bool:
        if request.to.tag is not None:
            return False
        key = (request.from_.tag or "", request.call_id, request.cseq.number, request.method)
        branch = request.top_via.branch or ""
        seen = self._merge.get(key)
        if seen is None:
            if len(self._merge) > 200_000:
                self._merge.clear()  # bounded; a lost entry only misses a loop
            self._merge.set(key, branch, 32)
            return False
        return seen != branch

    # -- from the transaction layer (the transaction user) ----------------

    def request_received(self, transaction: ServerTransaction) -> None:
        """A new request: dispatch by method."""
        request = transaction.request
        method = request.method
        handler = self.handlers.get(method)
        if handler is not None:
            try:
                handler(transaction)
            except Exception:
                self.log.failure("{method} handler failed", method=method)
                transaction.respond(make_response(request, 500))
            return
        if method == "OPTIONS":
            transaction.respond(self.options_response(request))
        elif method == "CANCEL" and (invite := self.transactions.find_invite(request)) is not None:
            # §9.2: a CANCEL matching a transaction gets 200, with the To tag
            # of the INVITE's response; it cannot undo a final response.
            # (It used to get 481 here, which §9.2 keeps for no match.)
            last = invite.last_response
            tag = last.to.tag if last is not None else None
            transaction.respond(make_response(request, 200, to_tag=tag or new_tag()))
        elif method in ("BYE", "CANCEL", "PRACK", "UPDATE", "INFO", "NOTIFY"):
            # No dialog or transaction of ours matches (§15.1.2, §9.2).
            transaction.respond(make_response(request, 481, to_tag=new_tag()))
        else:
            response = make_response(request, 501, to_tag=new_tag())
            response.headers.add("Allow", self.allow)
            transaction.respond(response)

    def ack_received(self, request: Request, peer: Peer) -> None:
        """An ACK for a 2xx: the call layer's business."""
        if self.ack_handler is None:
            return
        try:
            self.ack_handler(request, peer)
        except Exception:
            self.log.failure("ACK handler failed")

    def options_response(self, request: Request) -> Response:
        """§11.2: what we support, answered without authentication."""
        response = make_response(request, 200, to_tag=new_tag())
        response.headers.add("Allow", self.allow)
        response.headers.add("Accept", ACCEPT)
        if self.allow_events:
            # RFC 6665 §4.4.4: OPTIONS answers list the event packages.
            response.headers.add("Allow-Events", ", ".join(self.allow_events))
        if SUPPORTED:
            response.headers.add("Supported", ", ".join(SUPPORTED))
        return response

