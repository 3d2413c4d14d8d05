"""
SIP transactions, RFC 3261 §17 with the RFC 6026 corrections.

Four state machines: INVITE and non-INVITE, client and server.  Each keeps
its state in one attribute and its transitions in one method per event, and
every timer comes from the injected clock and is cancelled on every way out.

The layer sits between the transport (which hands it parsed messages with
the :class:`Peer` they came from) and the transaction user, the core (which
gets new server transactions and the responses to its client transactions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from attrs import define, field, frozen

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.sip import timers
from pbx.sip.expiry import ExpiringMap
from pbx.sip.ids import MAGIC_COOKIE
from pbx.sip.message import Request, Response, make_response
from pbx.sip.named_timers import NamedTimers

#: Seconds the bytes of a stateless answer to a request over UDP are kept
#: for its retransmissions: T4, the longest a copy of the
#: request sent before the answer arrived stays in the network.
STATELESS_MEMORY = timers.T4
#: At most this many entries (kept answers and completed transactions) before
#: stateless answers are no longer kept: a flood from many sources must not
#: grow memory without bound (about 1 KB each); past it a retransmission
#: gets a fresh challenge, as if nothing had been kept.
MAX_KEPT = 50_000


@frozen
class Peer:
    """
    Where a message came from or goes to: transport and address.

    :ivar flow: the address is the far end of a connection the peer opened
        (an RFC 5626 §3 flow): its port is ephemeral, so a request to it
        goes on that connection or not at all.  Not part of equality: the
        connection is found by address alone.
    """

    transport: str  # "udp", "tcp" or "tls"
    host: str
    port: int
    flow: bool = field(default=False, eq=False)

    @property
    def reliable(self) -> bool:
        """Whether the transport retransmits by itself (RFC 3261 §17.1.1.2)."""
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


#: Sends a message; False when it could not go (no connection, no socket).
Sender = Callable[[Request | Response, Peer], bool | None]


class TransactionUser(Protocol):
    """What the layer calls upward (the core)."""

    def request_received(self, transaction: ServerTransaction) -> None:
        """A new request arrived in a new server transaction."""

    def ack_received(self, request: Request, peer: Peer) -> None:
        """An ACK matching no transaction (the ACK of a 2xx, RFC 3261 §17.2.1)."""


def server_key(request: Request) -> tuple[Any, ...]:
    """
    The key matching a request to a server transaction.

    RFC 3261 §17.2.3: branch, sent-by and method, where an ACK belongs to
    its INVITE; requests without the magic cookie fall back to the RFC 2543
    fields (Call-ID, From tag, CSeq number, top Via).
    """
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return (branch, via.sent_by.lower(), method)
    return ("2543", request.call_id, request.from_.tag, request.cseq.number, str(via), method)


def _unauthenticated(request: Request) -> bool:
    """A request outside any dialog (no To tag) and without credentials (§22)."""
    if request.to.tag:
        return False
    headers = request.headers
    return not (headers.get("Proxy-Authorization") or headers.get("Authorization"))


def client_key(message: Request | Response) -> tuple[str, str]:
    """RFC 3261 §17.1.3: a response matches by top Via branch and CSeq method."""
    return (message.top_via.branch or "", message.cseq.method)


@define(eq=False)
class ServerTransaction:
    """
    An INVITE (§17.2.1, RFC 6026 §7.1) or non-INVITE (§17.2.2) server
    transaction.  The TU answers with :meth:`respond`.
    """

    layer: TransactionLayer
    request: Request
    peer: Peer
    key: tuple[Any, ...]
    state: str = "trying"
    last_response: Response | None = None
    _timers: NamedTimers = field(init=False)
    _interval: float = timers.T1
    on_ack_timeout: Callable[[], None] | None = None

    def __attrs_post_init__(self) -> None:
        self._timers = NamedTimers(self.layer.clock)
        if self.invite:
            # §17.2.1: the INVITE transaction starts in Proceeding, and a
            # 100 is sent unless the TU answers within 200 ms.
            self.state = "proceeding"
            if not _unauthenticated(self.request):
                self.trying()

    def trying(self) -> None:
        """
        §17.2.1: send 100 (Trying) unless the TU has already answered.

        Sent at once for most INVITEs (the TU of a B2BUA rarely answers
        within 200 ms).  A new INVITE without credentials is usually
        challenged at once and statelessly (§8.2.7: a stateless UAS sends
        no 1xx), so its 100 waits until the TU has seen it: the layer calls
        this again then, and the 100 goes only if nothing else did.
        """
        if self.invite and self.state == "proceeding" and self.last_response is None:
            self.respond(make_response(self.request, 100))

    @property
    def invite(self) -> bool:
        """Whether this is an INVITE transaction."""
        return self.request.method == "INVITE"

    def respond(self, response: Response) -> None:
        """Send a response from the TU (ignored once the transaction is over)."""
        if self.state == "accepted" and 200 <= response.status < 300:
            # RFC 6026 §7.1 (figure 5, "2xx from TU / send response"): in
            # Accepted the TU's 2xx retransmissions go straight out.
            self._send(response)
            return
        if self.state in ("completed", "confirmed", "terminated", "accepted"):
            return
        self.last_response = response
        self._send(response)
        status = response.status
        if status < 200:
            if self.state == "trying":
                self.state = "proceeding"
            return
        if self.invite and status < 300:
            # RFC 6026 §7.1: Accepted absorbs retransmitted INVITEs; the TU
            # retransmits the 2xx itself until its ACK.
            self.state = "accepted"
            self._timers.start("L", timers.TIMER_L, self._terminate)
            return
        self.state = "completed"
        if not self.invite:
            # §17.2.2 Timer J: only the response is needed to answer
            # retransmissions; keep its bytes, not this object.
            self._timers.stop_all()
            self.layer._server.pop(self.key, None)
            if self.peer.reliable:
                self.state = "terminated"
            else:
                self.layer.completed.set(self.key, (response.to_bytes(), self.peer), timers.TIMER_J)
            return
        if self.invite:
            if not self.peer.reliable:
                self._interval = timers.T1
                self._timers.start("G", self._interval, self._timer_g)
            self._timers.start("H", timers.TIMER_H, self._timer_h)
        else:
            self._timers.start("J", 0 if self.peer.reliable else timers.TIMER_J, self._terminate)

    def respond_statelessly(self, response: Response) -> None:
        """
        Send a final response once and forget the transaction: no timers,
        no retransmissions, no transaction kept.

        RFC 3261 §8.2.7: a stateless UAS answers each copy of a request
        anew, and that is how unauthenticated requests should be challenged;
        §17.2.1's retransmissions of a final response would make every
        unacknowledged INVITE from a spoofed source an amplifier.  A
        retransmitted request gets one answer, so there is never more than
        one response per request received.

        Over UDP that answer is the same bytes for :data:`STATELESS_MEMORY`
        seconds: §8.2.7 asks the same To tag for the same request, and a
        client that has moved on (sent the request with credentials) takes
        an identical copy as a retransmission, where a fresh challenge is
        an answer it did not expect.  Copies the client sent before the
        answer reached it are the ones that come back, late when the server
        is behind.  The bytes cost less than a transaction and far less
        than a new challenge.  An ACK is never answered from them (§8.2.7:
        a stateless UAS ignores ACK).
        """
        if self.state in ("completed", "confirmed", "terminated", "accepted"):
            return
        self.last_response = response
        self._send(response)
        self._terminate()
        if not self.peer.reliable and len(self.layer.completed) < MAX_KEPT:
            self.layer.completed.set(self.key, (response.to_bytes(), self.peer), STATELESS_MEMORY)

    def _send(self, response: Response) -> None:
        self.layer.send(response, self.peer)

    def retransmission(self, request: Request) -> None:
        """The same request again (or, for INVITE, its ACK)."""
        if request.method == "ACK":
            if self.state == "completed":
                # §17.2.1: ACK of a non-2xx final response.
                self.state = "confirmed"
                self._timers.stop("G")
                self._timers.stop("H")
                self._timers.start("I", 0 if self.peer.reliable else timers.TIMER_I, self._terminate)
            elif self.state == "accepted":
                self.layer.tu.ack_received(request, self.peer)
            return
        if self.state in ("proceeding", "completed") and self.last_response is not None:
            self._send(self.last_response)

    def _timer_g(self) -> None:
        if self.state != "completed" or self.last_response is None:
            return
        self._send(self.last_response)
        self._interval = min(2 * self._interval, timers.T2)
        self._timers.start("G", self._interval, self._timer_g)

    def _timer_h(self) -> None:
        # §17.2.1: no ACK came; tell the TU.
        if self.on_ack_timeout is not None:
            self.on_ack_timeout()
        self._terminate()

    def _terminate(self) -> None:
        self.state = "terminated"
        self._timers.stop_all()
        self.layer._server.pop(self.key, None)
        self.on_ack_timeout = None  # nothing more to tell the TU (see ClientTransaction._terminate)


def _terminated(response: Response) -> None:
    """What a terminated client transaction does with a response: nothing reaches the TU."""


@define(eq=False)
class ClientTransaction:
    """
    An INVITE (§17.1.1, RFC 6026 §7.2) or non-INVITE (§17.1.2) client
    transaction.  ``on_response`` gets every response the TU must see; a
    timeout is delivered as a synthetic 408, a request that could not be
    sent as a synthetic 503.
    """

    layer: TransactionLayer
    request: Request
    peer: Peer
    on_response: Callable[[Response], None]
    key: tuple[str, str] = ("", "")
    state: str = "calling"
    _timers: NamedTimers = field(init=False)
    _interval: float = timers.T1
    ack: Request | None = None

    def __attrs_post_init__(self) -> None:
        self._timers = NamedTimers(self.layer.clock)
        self.key = client_key(self.request)
        self.state = "calling" if self.invite else "trying"
        if self.layer.send(self.request, self.peer) is False:
            self.transport_error()
            return
        # Timer A/B for INVITE, E/F for non-INVITE: same values (§17.1.2.2).
        if not self.peer.reliable:
            self._timers.start("A", timers.T1, self._retransmit)
        self._timers.start("B", timers.TIMER_B, self._timeout)

    @property
    def invite(self) -> bool:
        """Whether this is an INVITE transaction."""
        return self.request.method == "INVITE"

    def _retransmit(self) -> None:
        if self.state not in ("calling", "trying", "proceeding"):
            return
        self.layer.send(self.request, self.peer)
        if self.invite or self.state == "trying":
            self._interval = 2 * self._interval if self.invite else min(2 * self._interval, timers.T2)
        else:
            self._interval = timers.T2  # §17.1.2.2: Proceeding retransmits every T2
        self._timers.start("A", self._interval, self._retransmit)

    def transport_error(self) -> None:
        """
        §17.1.1.2, §17.1.2.2: the request could not be delivered; the
        transaction ends and the TU sees 503 (§8.1.3.1), on the next turn of
        the clock so the TU has the transaction in hand first.
        """
        if self.state in ("calling", "trying", "proceeding"):
            self._timers.stop("A")
            self._timers.start("B", 0, self._transport_failed)

    def _transport_failed(self) -> None:
        if self.state in ("calling", "trying", "proceeding"):
            on_response = self.on_response
            self._terminate()
            on_response(make_response(self.request, 503, "Service Unavailable"))

    def _timeout(self) -> None:
        if self.state in ("calling", "trying", "proceeding"):
            on_response = self.on_response
            self._terminate()
            on_response(make_response(self.request, 408, "Request Timeout"))

    def response_received(self, response: Response) -> None:
        """A response matched this transaction."""
        status = response.status
        if status < 200:
            if self.state in ("calling", "trying", "proceeding"):
                if self.invite:
                    # §17.1.1.2: Proceeding neither retransmits nor times out;
                    # the TU ends a call that rings too long with CANCEL.
                    self._timers.stop("A")
                    self._timers.stop("B")
                self.state = "proceeding"
                self.on_response(response)
            return
        if self.state in ("calling", "trying", "proceeding"):
            self._timers.stop("A")
            self._timers.stop("B")
            if self.invite and status < 300:
                # RFC 6026 §7.2: Accepted passes 2xx retransmissions up.
                self.state = "accepted"
                self._timers.start("M", timers.TIMER_M, self._terminate)
            elif self.invite:
                self.state = "completed"
                self.ack = self._make_ack(response)
                self.layer.send(self.ack, self.peer)
                self._timers.start("D", 0 if self.peer.reliable else timers.TIMER_D, self._terminate)
            else:
                self.state = "completed"
                self._timers.start("K", 0 if self.peer.reliable else timers.TIMER_K, self._terminate)
            self.on_response(response)
        elif self.state == "accepted" and status < 300:
            self.on_response(response)
        elif self.state == "completed" and self.invite and self.ack is not None:
            self.layer.send(self.ack, self.peer)  # §17.1.1.2: resend ACK

    def _make_ack(self, response: Response) -> Request:
        """§17.1.1.3: the ACK of a non-2xx final response."""
        req = self.request
        ack = Request("ACK", req.uri)
        ack.headers.add("Via", req.headers.get_all("Via")[0])
        for name in ("Route", "Max-Forwards"):
            for value in req.headers.get_all(name):
                ack.headers.add(name, value)
        ack.headers.add("From", req.headers.get("From") or "")
        ack.headers.add("To", response.headers.get("To") or "")
        ack.headers.add("Call-ID", req.call_id)
        ack.headers.add("CSeq", f"{req.cseq.number} ACK")
        return ack

    def cancel_sent(self) -> None:
        """
        §9.1: the TU sent a CANCEL for this INVITE; if no final response
        comes within 64*T1, the transaction ends (with a synthetic 408).
        """
        if self.invite and self.state in ("calling", "proceeding") and "B" not in self._timers:
            self._timers.start("B", timers.TIMER_B, self._timeout)

    def cancel_timers(self) -> None:
        """Stop every timer (the TU is going away)."""
        self._timers.stop_all()

    def _terminate(self) -> None:
        self.state = "terminated"
        self._timers.stop_all()
        self.layer._client.pop(self.key, None)
        # A terminated transaction passes nothing up: letting go of the TU's
        # callback (often a bound method of an object that holds this
        # transaction) frees both by reference counting, not by a pause of
        # the garbage collector.
        self.on_response = _terminated


@define(eq=False)
class TransactionLayer:
    """
    Matches messages to transactions (§17.1.3, §17.2.3), absorbs
    retransmissions and hands new requests to the TU.
    """

    clock: IReactorTime
    send: Sender
    tu: TransactionUser
    _server: dict[tuple[Any, ...], ServerTransaction] = field(factory=dict)
    _client: dict[tuple[str, str], ClientTransaction] = field(factory=dict)
    #: Raw bytes out (resending a completed transaction's final response).
    send_bytes: Callable[[bytes, Peer], Any] | None = None
    completed: ExpiringMap[tuple[Any, ...], tuple[bytes, Peer]] = field(init=False)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.completed = ExpiringMap(self.clock)

    def request_received(self, request: Request, peer: Peer) -> None:
        """A request from the transport."""
        key = server_key(request)
        done = self.completed.get(key) if request.method != "ACK" else None
        if done is not None:
            # A retransmission of a completed non-INVITE request (§17.2.2),
            # or of one answered statelessly.
            if self.send_bytes is not None:
                self.send_bytes(done[0], done[1])
            return
        existing = self._server.get(key)
        if existing is not None:
            if request.method == "ACK" or request.method == existing.request.method:
                existing.retransmission(request)
                return
        if request.method == "ACK":
            self.tu.ack_received(request, peer)
            return
        txn = ServerTransaction(self, request, peer, key)
        self._server[key] = txn
        self.tu.request_received(txn)
        txn.trying()

    def response_received(self, response: Response, peer: Peer) -> None:
        """A response from the transport; unmatched ones are dropped (§18.1.2)."""
        txn = self._client.get(client_key(response))
        if txn is None:
            self.log.debug("stray response {status} dropped", status=response.status)
            return
        txn.response_received(response)

    def start_client(self, request: Request, peer: Peer, on_response: Callable[[Response], None]) -> ClientTransaction:
        """Send ``request`` to ``peer`` in a new client transaction."""
        txn = ClientTransaction(self, request, peer, on_response)
        self._client[txn.key] = txn
        return txn

    def unreachable(self, peer: Peer) -> None:
        """No connection to ``peer`` could be opened: its client transactions fail (§17.1.4)."""
        for txn in [t for t in self._client.values() if t.peer == peer]:
            txn.transport_error()

    def find_invite(self, cancel: Request) -> ServerTransaction | None:
        """§9.2: the INVITE server transaction a CANCEL refers to."""
        key = server_key(cancel)
        return self._server.get(key[:-1] + ("INVITE",))

    @property
    def counts(self) -> tuple[int, int]:
        """(server, client) transactions alive."""
        return len(self._server) + len(self.completed), len(self._client)
