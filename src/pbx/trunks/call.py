"""
A call from a phone out through a trunk: a :class:`~pbx.calls.call.Call`
whose callee's leg is one INVITE to the carrier instead of the forks to an
extension's phones.

The INVITE names the number sent (To, Request-URI) and the caller ID chosen
by the route (From, P-Asserted-Identity), carries what the outbound hooks
add, offers only the trunk's codecs, and answers the carrier's digest
challenges (RFC 3261 §22.2).  When the carrier does not ring or answer
within the trunk's ``setup_timeout``, the attempt ends with 408 so the
controller can try the next trunk.  Records name the trunk, the dialled and
the sent number, and the cost.

:class:`TrunkInboundCall` is the other way: a call from a trunk to a DID's
extension, counted on the trunk and recorded with it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from attrs import evolve

from twisted.internet.defer import Deferred, succeed

from pbx.calls.call import Call
from pbx.calls.dialplan import ToTrunks
from pbx.calls.forks import Fork, Forks, Outcome, Rung
from pbx.calls.media import MediaError
from pbx.media.srtp_policy import SrtpPolicy
from pbx.records import CallRecord
from pbx.sip.dialog import LocalAddress, new_invite
from pbx.sip.message import Request, Response
from pbx.sip.uri import SIPParseError, parse_uri
from pbx.stir.verdict import Status, with_verstat
from pbx.trunks.hooks import OutboundChange, Part
from pbx.trunks.moh import inbound_class, outbound_class
from pbx.trunks.routes import Attempt
from pbx.trunks.trunk import Trunk

__all__ = ["TrunkCall", "TrunkInboundCall", "multipart", "only_codecs"]

#: Static RTP payload types (RFC 3551 §6) by encoding name, for SDP without rtpmap.
_STATIC = {"0": "PCMU", "3": "GSM", "8": "PCMA", "9": "G722", "18": "G729"}
_AUXILIARY = {"TELEPHONE-EVENT", "CN"}


def only_codecs(sdp: bytes, names: tuple[str, ...]) -> bytes:
    """
    ``sdp`` offering only the codecs ``names`` (and telephone-event, CN) on
    its audio lines; unchanged when ``names`` is empty or nothing would be left.
    """
    if not names or not sdp:
        return sdp
    lines = sdp.decode("utf-8", "replace").split("\r\n")
    rtpmap = {}
    for line in lines:
        m = re.match(r"a=rtpmap:(\d+) ([^/\s]+)", line)
        if m:
            rtpmap[m.group(1)] = m.group(2).upper()
    wanted = {n.upper() for n in names} | _AUXILIARY
    out, dropped = [], set()
    for line in lines:
        if line.startswith("m=audio "):
            head = line.split(" ")
            kept = [pt for pt in head[3:] if rtpmap.get(pt, _STATIC.get(pt, "")) in wanted]
            if not any(rtpmap.get(pt, _STATIC.get(pt, "")) not in _AUXILIARY for pt in kept):
                return sdp
            dropped |= set(head[3:]) - set(kept)
            line = " ".join(head[:3] + kept)
        m = re.match(r"a=(?:rtpmap|fmtp):(\d+) ", line)
        if m and m.group(1) in dropped:
            continue
        out.append(line)
    return "\r\n".join(out).encode()


def multipart(sdp: bytes, parts: tuple[Part, ...]) -> tuple[bytes, str]:
    """
    The body and its Content-Type: ``sdp`` alone, or with ``parts`` in
    multipart/mixed (RFC 5621; RFC 2046 §5.1.1: the CRLF before each
    delimiter belongs to it, the last one ends with ``--``).
    """
    if not parts:
        return sdp, "application/sdp"
    boundary = ("pbx-" + secrets.token_hex(8)).encode()
    chunks: list[tuple[str, bytes, tuple[tuple[str, str], ...]]] = [("application/sdp", sdp, ())] if sdp else []
    chunks += [(part[0], part[1], part[2] if len(part) > 2 else ()) for part in parts]
    body = b""
    for kind, data, headers in chunks:
        head = f"Content-Type: {kind}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
        body += b"--" + boundary + b"\r\n" + head.encode() + b"\r\n" + data + b"\r\n"
    return body + b"--" + boundary + b"--\r\n", f"multipart/mixed;boundary={boundary.decode()}"


class TrunkCall(Call):
    """
    A relayed call whose callee is a number beyond a trunk.

    :ivar dialled: the number the caller dialled.
    :ivar attempt: the trunk tried now (the last one tried once over).
    :ivar last_status: the final status of the last attempt (408 when the
        carrier did not answer in time).
    :ivar tried: the names of the trunks tried, in order.
    :ivar route: the dialplan route that sends the call out (None: no route's).
    """

    def __init__(self, *args: Any, dialled: str, route: ToTrunks | None = None,
                 caller_srtp: str = SrtpPolicy.OFFERED, **kwargs: Any) -> None:
        self.route = route
        #: The SRTP policy of the calling extension.
        self.caller_srtp = caller_srtp
        self.attempt: Attempt | None = None
        super().__init__(*args, **kwargs)
        self.dialled = dialled
        self.last_status = 0
        self.tried: list[str] = []
        self._setup_timed_out = False

    def ring_trunk(self, attempt: Attempt, change: OutboundChange, ring_timeout: float) -> Deferred[Rung]:
        """Send the INVITE to ``attempt``'s trunk; fires with how ringing ended."""
        trunk = attempt.trunk
        config = trunk.config
        offer = self.invite.request.body
        self.media.secure("a", self.invite.peer.transport, self.caller_srtp)
        self.media.secure("b", config.transport, config.srtp)
        try:
            b_offer = self.media.offer_from("a", offer) if offer else b""
        except MediaError as e:
            self.fail(488, str(e)[:80])
            return succeed(Rung(Outcome.FAILED, 488))
        body, content_type = multipart(only_codecs(b_offer, config.codecs), change.parts)
        request = self.invite.request
        max_forwards = max(0, (request.max_forwards or 70) - 1)
        domain = config.from_domain or config.host
        identity = f"{self.caller_display}<sip:{attempt.caller_id or 'anonymous'}@{domain}>"
        to = f"<sip:{attempt.sent}@{config.host}>"
        contact_user = config.username or attempt.caller_id.lstrip("+") or "pbx"

        # RFC 3325 §9.1: one identity per URI scheme.  A hook that asserts one
        # (the E911 desk's callback number) speaks for the call instead of ours.
        asserted = any(name.lower() == "p-asserted-identity" for name, _ in change.headers)
        ours = [] if asserted else [("P-Asserted-Identity", identity)]

        def invite(binding: Any, address: LocalAddress) -> Request:
            made = new_invite(
                target=parse_uri(binding.contact), to=to, from_=identity, address=address, body=body,
                max_forwards=max_forwards, contact_user=contact_user,
                extra=[*ours, *change.headers],
            )
            if body and content_type != "application/sdp":
                made.headers.set("Content-Type", content_type)
            return made

        self.attempt = attempt
        self.tried.append(trunk.name)
        self._setup_timed_out = False
        self.forks = Forks(trunk.services, on_provisional=self._provisional, on_answer=self._answer,
                           refusal=self._forks_refusal(), timers=self._timers,
                           on_challenge=trunk.answer_challenge)
        self._timers.start("setup", config.setup_timeout, self._setup_timeout)
        ringing = self.forks.ring([trunk.binding(attempt.sent)], invite, ring_timeout)
        ringing.addCallback(self._trunk_rung)
        return ringing

    def _setup_timeout(self) -> None:
        """The carrier neither rang nor answered in time: give the attempt up as 408."""
        if self.forks is not None and self.forks.ringing:
            self._setup_timed_out = True
            self.forks.cancel(Outcome.UNAVAILABLE, 408)

    def _provisional(self, fork: Fork, response: Response) -> None:
        self._timers.stop("setup")
        super()._provisional(fork, response)

    def _trunk_rung(self, rung: Rung) -> Rung:
        self._timers.stop("setup")
        if self._setup_timed_out:
            self.last_status = 408
        elif self.forks is not None and self.forks.forks and rung.outcome is not Outcome.ANSWERED:
            # The carrier's own status: best_failure would hide a 503 (§16.7).
            self.last_status = self.forks.forks[0].status or rung.status
        else:
            self.last_status = rung.status
        return rung

    def record(self) -> list[CallRecord]:
        """The records of :class:`Call`, with the trunk, the dialled and sent numbers and the cost."""
        rows = super().record()
        attempt = self.attempt
        if attempt is None:
            return [evolve(row, dialled=self.dialled) for row in rows]
        return [evolve(row, trunk=attempt.trunk.name, dialled=self.dialled, sent=attempt.sent,
                       cost=attempt.cost(row.billable)) for row in rows]

    def line(self) -> dict[str, str]:
        """Events name the trunk tried (once one is) and the route (``name:``, else its pattern)."""
        line = {"route": self.route.route_name} if self.route is not None and self.route.route_name else {}
        return line | ({"trunk": self.attempt.trunk.name} if self.attempt is not None else {})

    def line_class(self) -> str:
        """The route's music-on-hold class, else that of the trunk the call went out on."""
        return outbound_class(self.route, self.attempt.trunk.config if self.attempt is not None else None)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the API, with the trunk."""
        view = super().summary()
        view.update(direction="out", dialled=self.dialled,
                    trunk=self.attempt.trunk.name if self.attempt is not None else "",
                    sent=self.attempt.sent if self.attempt is not None else "", tried=list(self.tried))
        return view


class TrunkInboundCall(Call):
    """
    A call from a trunk to one of its DIDs, relayed to the DID's extension:
    it counts against the trunk's ``max_calls`` while it lasts, and its
    records name the trunk and the DID (``dialled``).
    """

    def __init__(self, *args: Any, trunk: Trunk, did: str, on_end: Callable[[Call], None], direct: bool = False,
                 verstat: str = "", **kwargs: Any) -> None:
        self.trunk = trunk
        self.did = did
        #: What STIR/SHAKEN verification said of the caller's number (a
        #: ``verstat`` value, :class:`pbx.stir.verdict.Status`); "" when not verified.
        self.verstat = verstat
        #: Rung past DND, forwards and voicemail (a PSAP's callback): nothing diverts it.
        self.direct = direct
        trunk.take()

        def ended(call: Call) -> None:
            trunk.release()
            on_end(call)

        super().__init__(*args, on_end=ended, **kwargs)
        self.media.secure("a", trunk.config.transport, trunk.config.srtp)

    def line(self) -> dict[str, str]:
        """Events name the trunk and the DID called."""
        return {"trunk": self.trunk.name, "did": self.did}

    def line_class(self) -> str:
        """The DID's music-on-hold class, else the trunk's."""
        return inbound_class(self.trunk.config, self.did)

    def record(self) -> list[CallRecord]:
        """The records of :class:`Call`, with the trunk and the DID called."""
        return [evolve(row, trunk=self.trunk.name, dialled=self.did, verstat=self.verstat)
                for row in super().record()]

    def caller_uri(self, domain: str) -> str:
        """
        The caller's URI, with the verification outcome as ``verstat`` on
        its number (3GPP TS 24.229 §5.7.1.25) when there is one.
        """
        uri = super().caller_uri(domain)
        try:
            status = Status(self.verstat)
        except ValueError:
            return uri
        try:
            return str(with_verstat(parse_uri(uri), status))
        except SIPParseError:
            return uri  # a caller's name no URI can carry: shown as it is

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the API, with the trunk."""
        view = {**super().summary(), "direction": "in", "trunk": self.trunk.name, "dialled": self.did}
        if self.verstat:
            view["verstat"] = self.verstat
        return view
