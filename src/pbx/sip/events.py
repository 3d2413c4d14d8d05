"""
SIP event subscriptions, notifier side (RFC 6665): SUBSCRIBE creates,
refreshes and ends subscriptions to the event packages features register
(message waiting, RFC 3842; later dialog state and presence), and every
state change of a resource is sent to its subscribers in NOTIFY.

Subscriptions live in memory only.  Stopping ends them with a NOTIFY that
asks subscribers to subscribe again at once; a phone that missed it gets 481
on its next refresh and subscribes again (RFC 6665 §4.1.2.2).  Packages that
ask for it also reach registered phones without a subscription, with
unsolicited NOTIFY.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from attrs import define, field

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.records import Binding
from pbx.sip.authn import RequestAuthenticator
from pbx.sip.core import SIPCore
from pbx.sip.dialog import Dialog, LocalAddress
from pbx.sip.headers import parse_params
from pbx.sip.ids import new_call_id, new_tag
from pbx.sip.message import Headers, Request, Response, SIPParseError, make_response
from pbx.sip.transaction import Peer, ServerTransaction
from pbx.sip.uri import URI, parse_uri

#: Subscription duration when SUBSCRIBE has no Expires (RFC 6665 §4.2.1.1
#: leaves it to the package; RFC 3842 and the common packages use an hour).
DEFAULT_EXPIRES = 3600
#: Shorter requests get 423 Interval Too Brief (RFC 6665 §4.2.1.1).
MIN_EXPIRES = 60
#: Longer requests are shortened to this (the 200 says how long, §4.2.1.1).
MAX_EXPIRES = 3600
#: Bounds on subscriptions held, so memory stays bounded (503 beyond).
MAX_PER_SUBSCRIBER = 200
MAX_TOTAL = 20_000

# Subscription states: "active" (in the indexes), "terminated" (out of the
# indexes, its final NOTIFY still to go out), "gone" (nothing more to send).
ACTIVE, TERMINATED, GONE = "active", "terminated", "gone"

SubscriptionKey = tuple[str, str, str, str]


@define(eq=False)
class Subscription:
    """
    One subscription: a dialog usage of ours (RFC 6665 §4.4.1).

    :ivar event: the Event header value NOTIFYs carry (type and ``id``).
    :ivar key: (Call-ID, our tag, event type, id) — what a refresh matches.
    :ivar sending: a NOTIFY of this subscription is in flight.
    :ivar pending: the state changed while it was; send again after.
    :ivar body_at_end: the final NOTIFY carries the state (not on shutdown).
    """

    package: Any
    subscriber: str
    resource: str
    event: str
    key: SubscriptionKey
    dialog: Dialog
    expires_at: float
    state: str = ACTIVE
    reason: str = ""
    sending: bool = False
    pending: bool = False
    body_at_end: bool = True
    timer: IDelayedCall | None = None


@define(eq=False)
class EventServer:
    """
    The notifier for every registered event package; the SUBSCRIBE handler.

    :ivar authn: digest-authenticates SUBSCRIBE (401, RFC 6665 §4.2.1.3).
    :ivar domain: our SIP domain (From/To of unsolicited NOTIFY).
    :ivar local_address: our Via/Contact address on a transport.
    :ivar contacts: an extension's live registrations (the registrar's).
    :ivar peer_for: where a registered phone is reached.
    """

    core: SIPCore
    clock: IReactorTime
    authn: RequestAuthenticator
    domain: str
    local_address: Callable[[str], LocalAddress]
    contacts: Callable[[str], list[Binding]]
    peer_for: Callable[[Binding], Peer]
    default_expires: int = DEFAULT_EXPIRES
    min_expires: int = MIN_EXPIRES
    max_expires: int = MAX_EXPIRES
    max_per_subscriber: int = MAX_PER_SUBSCRIBER
    max_total: int = MAX_TOTAL
    packages: dict[str, Any] = field(factory=dict)
    _subscriptions: dict[SubscriptionKey, Subscription] = field(factory=dict)
    _watchers: dict[tuple[str, str], set[Subscription]] = field(factory=dict)
    _per_subscriber: dict[str, int] = field(factory=dict)
    log = Logger()

    # -- packages and state changes ----------------------------------------

    def register(self, package: Any) -> None:
        """
        Serve SUBSCRIBE for ``package`` (an IEventPackage).

        :raises ValueError: if another package has its event.
        """
        if package.event in self.packages:
            raise ValueError(f"event package {package.event!r} is registered twice")
        self.packages[package.event] = package
        # RFC 6665 §4.4.4: OPTIONS answers list the events we accept.
        self.core.allow_events.append(package.event)

    def subscriptions(self, event: str | None = None, resource: str | None = None) -> list[Subscription]:
        """The active subscriptions, optionally of one event and resource."""
        return [
            s for s in self._subscriptions.values()
            if (event is None or s.package.event == event) and (resource is None or s.resource == resource)
        ]

    def notify(self, event: str, resource: str) -> None:
        """
        The state of ``resource`` changed for ``event``: NOTIFY every
        subscriber, and registered phones that did not subscribe when the
        package asks for unsolicited NOTIFY.
        """
        package = self.packages.get(event)
        if package is None:
            self.log.warn("notify for unknown event package {event}", event=event)
            return
        watchers = list(self._watchers.get((event, resource), ()))
        targets: list[Binding] = []
        if package.unsolicited:
            targets = [b for b in self.contacts(resource) if not any(self._covers(s, b) for s in watchers)]
        if not watchers and not targets:
            return

        def send(body: bytes) -> None:
            for subscription in watchers:
                self._push(subscription, body)
            for binding in targets:
                self._unsolicited(package, resource, binding, body)

        d = maybeDeferred(package.state, resource)
        d.addCallback(send)
        d.addErrback(lambda f: self.log.failure("{event} state of {resource} failed", f,
                                                event=event, resource=resource))

    def stop(self) -> None:
        """
        End every subscription: cancel its timer and tell the subscriber
        (``terminated;reason=deactivated``: RFC 6665 §4.1.3, subscribe again
        at once, which reaches us again after a restart).
        """
        for subscription in list(self._subscriptions.values()):
            subscription.body_at_end = False
            self._terminate(subscription, "deactivated")

    # -- SUBSCRIBE -----------------------------------------------------------

    def __call__(self, transaction: ServerTransaction) -> Deferred[None]:
        """Handle one SUBSCRIBE transaction."""
        d = Deferred.fromCoroutine(self._subscribe(transaction))

        def failed(failure: Failure) -> None:
            self.log.failure("SUBSCRIBE failed", failure)
            transaction.respond(make_response(transaction.request, 500, to_tag=new_tag()))

        d.addErrback(failed)
        return d

    async def _subscribe(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        try:
            event_type, event_id = parse_event(request.headers.get("Event"))
        except SIPParseError as e:
            transaction.respond(make_response(request, 400, e.reason, to_tag=new_tag()))
            return
        package = self.packages.get(event_type)
        if package is None:
            # RFC 6665 §4.2.1.1: 489 Bad Event, listing the events we serve (§8.3.2).
            response = make_response(request, 489, to_tag=new_tag())
            if self.packages:
                response.headers.add("Allow-Events", ", ".join(self.packages))
            transaction.respond(response)
            return
        try:
            requested = request.expires
        except SIPParseError:
            transaction.respond(make_response(request, 400, "Malformed Expires header", to_tag=new_tag()))
            return
        expires = self.default_expires if requested is None else requested
        if 0 < expires < self.min_expires:
            # RFC 6665 §4.2.1.1: too short a subscription gets 423 with Min-Expires.
            response = make_response(request, 423, to_tag=new_tag())
            response.headers.add("Min-Expires", str(self.min_expires))
            transaction.respond(response)
            return
        # §4.2.1.1: the notifier may shorten the duration, never lengthen it.
        expires = min(expires, self.max_expires)
        if not accepts(request.headers.get_all("Accept"), package.content_type):
            # RFC 3261 §21.4.7: we cannot send a body the subscriber accepts.
            response = make_response(request, 406, to_tag=new_tag())
            response.headers.add("Accept", package.content_type)
            transaction.respond(response)
            return
        # RFC 6665 §4.2.1.3: a notifier authenticates as a UAS, with 401.
        record = await self.authn.authenticate(transaction)
        if record is None:
            return
        key = (request.call_id, request.to.tag or "", event_type, event_id)
        if request.to.tag:
            self._refresh(transaction, key, record.number, expires)
        else:
            self._create(transaction, package, key, record.number, expires)

    def _create(self, transaction: ServerTransaction, package: Any, key: SubscriptionKey,
                subscriber: str, expires: int) -> None:
        """RFC 6665 §4.2.1.1: a new subscription (or a fetch, with Expires 0)."""
        request = transaction.request
        resource = unquote(request.uri.user or "")
        if not resource:
            transaction.respond(make_response(request, 404, to_tag=new_tag()))
            return
        if not package.authorize(subscriber, resource):
            # §4.2.1.3: the subscriber may not watch this resource.
            transaction.respond(make_response(request, 403, to_tag=new_tag()))
            return
        if expires and (len(self._subscriptions) >= self.max_total
                        or self._per_subscriber.get(subscriber, 0) >= self.max_per_subscriber):
            self.log.warn("SUBSCRIBE {event} from {subscriber} refused: subscription limit",
                          event=package.event, subscriber=subscriber)
            transaction.respond(make_response(request, 503, "Too Many Subscriptions", to_tag=new_tag()))
            return
        peer = transaction.peer
        dialog = Dialog.as_uas(request, peer, self.local_address(peer.transport), new_tag())
        event = package.event + (f";id={key[3]}" if key[3] else "")
        key = (key[0], dialog.local_tag, key[2], key[3])
        subscription = Subscription(package, subscriber, resource, event, key, dialog,
                                    self.clock.seconds() + expires)
        transaction.respond(self._ok(request, dialog, expires))
        if expires == 0:
            # RFC 6665 §4.4.3: a fetch; one NOTIFY with the state ends it.
            subscription.state, subscription.reason = TERMINATED, "timeout"
        else:
            self._add(subscription)
            self._start_timer(subscription, expires)
            self.log.info("SUBSCRIBE {event} to {resource} from {subscriber} for {expires}s",
                          event=package.event, resource=resource, subscriber=subscriber, expires=expires)
        # §4.2.1.2: NOTIFY the current state at once.
        self._push(subscription)

    def _refresh(self, transaction: ServerTransaction, key: SubscriptionKey, subscriber: str, expires: int) -> None:
        """RFC 6665 §4.2.1.4 (refresh) and §4.1.2.3 (Expires 0: unsubscribe)."""
        request = transaction.request
        subscription = self._subscriptions.get(key)
        if subscription is None or subscription.dialog.remote_tag != (request.from_.tag or ""):
            # No such subscription (RFC 3261 §12.2.2; RFC 6665 §4.2.1.4).
            transaction.respond(make_response(request, 481))
            return
        if subscription.subscriber != subscriber:
            transaction.respond(make_response(request, 403))
            return
        dialog = subscription.dialog
        if not dialog.check_remote_seq(request):
            transaction.respond(make_response(request, 500, "CSeq out of order"))  # RFC 3261 §12.2.2
            return
        dialog.update_target(request)  # RFC 3261 §12.2.2: a refresh may move the target
        transaction.respond(self._ok(request, dialog, expires))
        if expires == 0:
            # The final NOTIFY of an unsubscribe says terminated, reason
            # timeout: the (now zero) duration ran out (§4.1.2.3, §4.1.3).
            self._terminate(subscription, "timeout")
            return
        subscription.expires_at = self.clock.seconds() + expires
        self._start_timer(subscription, expires)
        self._push(subscription)

    def _ok(self, request: Request, dialog: Dialog, expires: int) -> Response:
        """The 200 to SUBSCRIBE: our tag, the granted duration and Contact (§4.2.1.1)."""
        response = make_response(request, 200, to_tag=dialog.local_tag)
        response.headers.add("Expires", str(expires))
        response.headers.add("Contact", dialog.contact())
        response.headers.add("Allow-Events", ", ".join(self.packages))  # §4.4.4
        return response

    # -- subscription bookkeeping ---------------------------------------------

    def _add(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.key] = subscription
        self._watchers.setdefault((subscription.package.event, subscription.resource), set()).add(subscription)
        subscriber = subscription.subscriber
        self._per_subscriber[subscriber] = self._per_subscriber.get(subscriber, 0) + 1

    def _remove(self, subscription: Subscription) -> None:
        if self._subscriptions.pop(subscription.key, None) is None:
            return
        watch = (subscription.package.event, subscription.resource)
        watchers = self._watchers.get(watch)
        if watchers is not None:
            watchers.discard(subscription)
            if not watchers:
                del self._watchers[watch]
        left = self._per_subscriber.get(subscription.subscriber, 1) - 1
        if left > 0:
            self._per_subscriber[subscription.subscriber] = left
        else:
            self._per_subscriber.pop(subscription.subscriber, None)
        if subscription.timer is not None and subscription.timer.active():
            subscription.timer.cancel()
        subscription.timer = None

    def _start_timer(self, subscription: Subscription, expires: int) -> None:
        if subscription.timer is not None and subscription.timer.active():
            subscription.timer.cancel()
        subscription.timer = self.clock.callLater(expires, self._expired, subscription)

    def _expired(self, subscription: Subscription) -> None:
        subscription.timer = None
        self.log.info("subscription {event} to {resource} from {subscriber} expired",
                      event=subscription.package.event, resource=subscription.resource,
                      subscriber=subscription.subscriber)
        # RFC 6665 §4.2.2: a final NOTIFY, terminated with reason timeout.
        self._terminate(subscription, "timeout")

    def _terminate(self, subscription: Subscription, reason: str) -> None:
        """End a subscription with a final NOTIFY."""
        self._remove(subscription)
        if subscription.state != ACTIVE:
            return
        subscription.state, subscription.reason = TERMINATED, reason
        self._push(subscription)

    def _drop(self, subscription: Subscription) -> None:
        """End a subscription without any NOTIFY (the subscriber is gone)."""
        self._remove(subscription)
        subscription.state = GONE

    # -- NOTIFY in the dialog ------------------------------------------------

    def _push(self, subscription: Subscription, body: bytes | None = None) -> None:
        """
        Send the subscription's state, or note that it must be sent again.

        One NOTIFY per subscription is in flight at a time, and the next one
        fetches the newest state: a later NOTIFY overtaking an earlier one
        on UDP would get the earlier one a 500 (RFC 3261 §12.2.2), which
        ends the subscription (RFC 6665 §4.2.2).
        """
        if subscription.state == GONE:
            return
        if subscription.sending:
            subscription.pending = True
            return
        subscription.sending = True
        if subscription.state == TERMINATED and not subscription.body_at_end:
            self._send(subscription, None)
            return
        d: Deferred[bytes] = (
            succeed(body) if body is not None else maybeDeferred(subscription.package.state, subscription.resource)
        )
        d.addCallbacks(lambda b: self._send(subscription, b), lambda f: self._state_failed(subscription, f))

    def _state_failed(self, subscription: Subscription, failure: Failure) -> None:
        self.log.failure("{event} state of {resource} failed", failure,
                         event=subscription.package.event, resource=subscription.resource)
        if subscription.state == TERMINATED:
            self._send(subscription, None)  # the final NOTIFY goes out without state
            return
        subscription.sending = False
        if subscription.pending:
            subscription.pending = False
            self._push(subscription)

    def _send(self, subscription: Subscription, body: bytes | None) -> None:
        if subscription.state == GONE:
            subscription.sending = False
            return
        package = subscription.package
        final = subscription.state == TERMINATED
        request = subscription.dialog.request(
            "NOTIFY", body=body or b"", content_type=package.content_type if body is not None else None)
        # RFC 6665 §4.2.2: the subscription's Event (with its id) and state.
        request.headers.add("Event", subscription.event)
        if final:
            state = f"terminated;reason={subscription.reason}"
        else:
            remaining = max(0, round(subscription.expires_at - self.clock.seconds()))
            state = f"active;expires={remaining}"
        request.headers.add("Subscription-State", state)
        self.core.transactions.start_client(
            request, subscription.dialog.peer, lambda r: self._answered(subscription, r, final))

    def _answered(self, subscription: Subscription, response: Response, final: bool) -> None:
        if response.status < 200:
            return
        subscription.sending = False
        if final:
            subscription.state = GONE
            return
        if response.status >= 300:
            # RFC 6665 §4.2.2: a failed NOTIFY (481, a timeout's 408, any
            # error) ends the subscription; there is no one left to tell.
            self.log.info("NOTIFY {event} to {subscriber} answered {status}: subscription ended",
                          event=subscription.package.event, subscriber=subscription.subscriber,
                          status=response.status)
            self._drop(subscription)
            return
        if subscription.pending:
            subscription.pending = False
            self._push(subscription)

    # -- unsolicited NOTIFY ----------------------------------------------------

    def _covers(self, subscription: Subscription, binding: Binding) -> bool:
        """Whether ``subscription`` comes from the phone of ``binding``."""
        if subscription.subscriber != binding.aor:
            return False
        if subscription.dialog.peer == self._peer(binding):
            return True
        try:
            contact = parse_uri(binding.contact)
        except SIPParseError:
            return False
        return _same_address(subscription.dialog.remote_target, contact)

    def _peer(self, binding: Binding) -> Peer | None:
        """Where ``binding``'s phone is reached; None for a binding we cannot read."""
        try:
            return self.peer_for(binding)
        except (SIPParseError, ValueError):
            return None

    def _unsolicited(self, package: Any, resource: str, binding: Binding, body: bytes) -> None:
        """
        An out-of-dialog NOTIFY to a registered phone.  Not RFC 6665
        behaviour (a NOTIFY belongs to a subscription), but many phones
        light their message-waiting lamp only this way (as RFC 3842 §3
        notes, MWI is often configured rather than subscribed).
        """
        peer = self._peer(binding)
        try:
            target = parse_uri(binding.contact)
        except SIPParseError:
            return
        if peer is None:
            return
        address = self.local_address(peer.transport)
        aor = f"<sip:{resource}@{self.domain}>"
        headers = Headers()
        headers.add("Via", address.via())
        headers.add("Max-Forwards", "70")
        headers.add("From", f"{aor};tag={new_tag()}")
        headers.add("To", aor)
        headers.add("Call-ID", new_call_id(address.host))
        headers.add("CSeq", "1 NOTIFY")
        headers.add("Contact", address.contact(sips=target.scheme == "sips"))
        headers.add("Event", package.event)
        headers.add("Subscription-State", "active")
        headers.add("Content-Type", package.content_type)
        request = Request("NOTIFY", target, headers, body)

        def answered(response: Response) -> None:
            if response.status >= 300:
                self.log.debug("unsolicited NOTIFY {event} to {contact} answered {status}",
                               event=package.event, contact=binding.contact, status=response.status)

        self.core.transactions.start_client(request, peer, answered)


def parse_event(value: str | None) -> tuple[str, str]:
    """
    The event type and ``id`` of an Event header (RFC 6665 §8.2.1); both are
    compared byte by byte.  No header gives an empty type (489 follows).

    :raises SIPParseError: on malformed parameters.
    """
    if value is None:
        return "", ""
    event_type, semi, rest = value.partition(";")
    params = parse_params(semi + rest) if semi else {}
    return event_type.strip(), params.get("id") or ""


def accepts(values: list[str], content_type: str) -> bool:
    """
    Whether Accept ``values`` allow ``content_type``: no Accept header means
    the package's default (RFC 6665 §4.1.2.1), ``*/*`` and ``type/*`` match.
    """
    if not values:
        return True
    main, _, sub = content_type.lower().partition("/")
    for value in values:
        media = value.split(";", 1)[0].strip().lower()
        if media in ("*/*", f"{main}/*", f"{main}/{sub}"):
            return True
    return False


def _same_address(a: URI, b: URI) -> bool:
    """Same user, host and port (the default port when absent)."""
    return (a.user, a.host.lower(), a.port or 5060) == (b.user, b.host.lower(), b.port or 5060)
