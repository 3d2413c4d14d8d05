"""
The emergency desk: everything pbx does when someone dials 911, in one place.

- :meth:`EmergencyDesk.dialled` is told of every emergency call (the call
  events' ``created`` for a call to an emergency number, and at merge the
  outbound trunk route too; a call told twice counts once).  It finds the
  caller's location, writes the audit record, publishes the ``emergency``
  event and e-mails ``emergency.notify.email`` at once;
- :meth:`EmergencyDesk.trunk_change` is the one call the trunk's
  outbound-INVITE hook makes: for an emergency call, the headers and the
  PIDF-LO part to send beside the SDP (:meth:`EmergencyDesk.outbound_invite`
  makes the whole multipart body for a sender that wants it); either opens
  the PSAP callback window;
- :meth:`EmergencyDesk.callback_target` is what an inbound call from the
  emergency trunk asks: the extension a PSAP callback reaches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.emergency.callback import CallbackRegistry
from pbx.emergency.event import EmergencyEvent
from pbx.emergency.interfaces import IEmergencyEvents
from pbx.emergency.invite import EmergencyInvite, emergency_invite
from pbx.emergency.locations import Locator
from pbx.emergency.mail import build_alert
from pbx.emergency.numbers import is_emergency
from pbx.emergency.options import EmergencyConfig
from pbx.features.voicemail.mailer import EmailConfig, send_voicemail_email
from pbx.interfaces import IStore
from pbx.records import AuditEvent

__all__ = ["EmergencyDesk", "Sender"]

#: Sends one message: ``(reactor, config, to, bytes) -> Deferred`` (the voicemail mailer's sender).
Sender = Callable[[Any, EmailConfig, str, bytes], Deferred[None]]
#: How long a call id is remembered, so a call told twice alerts once.
SEEN_SECONDS = 3600.0


@implementer(IEmergencyEvents)
@define(eq=False)
class EmergencyDesk:
    """
    :param config: the ``emergency:`` section.
    :param store: the audit trail and the emergency items.
    :param reactor: the clock, and TCP for SMTP.
    :param locator: finds callers' locations.
    :param callbacks: the PSAP callback windows.
    :param names: an extension's display name (for the alert), or "".
    :param send: sends one e-mail (default: the voicemail mailer's sender).
    """

    config: EmergencyConfig
    store: IStore
    reactor: Any
    locator: Locator
    callbacks: CallbackRegistry
    names: Callable[[str], Deferred[str]] | None = None
    send: Sender = send_voicemail_email
    _subscribers: list[Callable[[EmergencyEvent], object]] = field(factory=list)
    _seen: dict[str, float] = field(factory=dict)
    log = Logger()

    # -- numbers and subscribers -------------------------------------------

    def is_emergency(self, dialled: str) -> str | None:
        """The emergency number ``dialled`` stands for under this configuration, or None."""
        return is_emergency(dialled, self.config.dial, self.config.prefixes)

    def subscribe(
        self, subscriber: Callable[[EmergencyEvent], object]
    ) -> Callable[[], None]:
        """Hand ``subscriber`` every emergency event from now on (see IEmergencyEvents)."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def _publish(self, event: EmergencyEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                self.log.failure(
                    "emergency event subscriber {subscriber!r} failed",
                    subscriber=subscriber,
                )

    # -- an emergency call -------------------------------------------------

    def on_call_event(self, event: Any) -> None:
        """A call event (``created``): a call to an emergency number is told to :meth:`dialled`."""
        if (
            event.kind != "created"
            or not event.caller
            or self.is_emergency(event.callee) is None
        ):
            return
        d = Deferred.fromCoroutine(
            self.dialled(event.caller, event.callee, call_id=event.call_id)
        )
        d.addErrback(
            lambda f: self.log.failure(
                "emergency call {call_id} handling failed", f, call_id=event.call_id
            )
        )

    async def dialled(
        self,
        extension: str,
        dialled: str,
        *,
        call_id: str = "",
        callback_number: str = "",
        source: str = "",
    ) -> EmergencyEvent | None:
        """
        ``extension`` dialled ``dialled``: if it is an emergency number, audit,
        publish and alert (once per ``call_id``).

        :param source: the caller's address (``host:port``), if known.
        :returns: the event, or None when ``dialled`` is no emergency number
            or the call was told before.
        """
        number = self.is_emergency(dialled)
        if number is None:
            return None
        now = self.reactor.seconds()
        self._seen = {k: t for k, t in self._seen.items() if t > now - SEEN_SECONDS}
        if call_id:
            if call_id in self._seen:
                return None
            self._seen[call_id] = now
        located = await self.locator.locate(extension, source)
        name = await self.names(extension) if self.names is not None else ""
        event = EmergencyEvent(
            now,
            number,
            dialled,
            extension,
            name,
            located,
            call_id,
            callback_number,
            test=number in self.config.test_numbers,
        )
        self.log.warn(
            "EMERGENCY {number} dialled by {extension} ({where})",
            number=number,
            extension=extension,
            where=located.address.describe()
            if located is not None
            else "no known location",
        )
        if callback_number and not event.test:
            self.callbacks.record_emergency(extension, callback_number, now)
        self._publish(event)
        await self.store.add_audit(event.audit(source))
        if not event.test:
            await self._alert(event)
        return event

    async def _alert(self, event: EmergencyEvent) -> None:
        """E-mail every designated person; a failure is logged and audited, never raised."""
        smtp = self.config.smtp
        if smtp is None:
            return
        for to in self.config.notify_email:
            try:
                await self.send(self.reactor, smtp, to, build_alert(smtp, to, event))
            except Exception as e:
                self.log.error("emergency alert to {to} failed: {e}", to=to, e=e)
                await self.store.add_audit(
                    AuditEvent(
                        self.reactor.seconds(),
                        "emergency.alert.failure",
                        event.extension,
                        "",
                        f"{to}: {e}"[:500],
                    )
                )
            else:
                self.log.info("emergency alert sent to {to}", to=to)

    # -- what the trunk side calls ------------------------------------------

    async def outbound_invite(
        self,
        extension: str,
        callback_number: str,
        sdp: bytes,
        domain: str,
        *,
        source: str = "",
        sdp_type: str = "application/sdp",
    ) -> EmergencyInvite:
        """
        The headers and body to put on the INVITE of ``extension``'s
        emergency call to a trunk, and open the PSAP callback window for
        ``callback_number``.

        :param callback_number: the caller ID the trunk presents for this call.
        :param sdp: the INVITE's SDP offer.
        :param domain: our SIP domain.
        :param source: the caller's address, if known (a nomadic phone's subnet).
        """
        located = await self.locator.locate(extension, source)
        now = self.reactor.seconds()
        if callback_number:
            self.callbacks.record_emergency(extension, callback_number, now)
        if located is None:
            self.log.warn(
                "emergency call of {extension}: no dispatchable location known",
                extension=extension,
            )
        return emergency_invite(
            extension=extension,
            callback_number=callback_number or extension,
            sdp=sdp,
            domain=domain,
            now=now,
            address=located.address if located is not None else None,
            method=located.method if located is not None else "Manual",
            element=self.config.pidf_element,
            sdp_type=sdp_type,
        )

    async def trunk_change(
        self,
        extension: str,
        dialled: str,
        callback_number: str,
        domain: str,
        *,
        call_id: str = "",
        source: str = "",
    ) -> EmergencyInvite | None:
        """
        What the trunk's outbound hook asks for each INVITE to a trunk: None
        for a call to any other number; for an emergency call, it is told
        to :meth:`dialled` (once per call) and gets the headers and the
        PIDF-LO part (``location``, ``content_id``) to send beside the SDP.
        """
        if self.is_emergency(dialled) is None:
            return None
        await self.dialled(
            extension,
            dialled,
            call_id=call_id,
            callback_number=callback_number,
            source=source,
        )
        return await self.outbound_invite(
            extension, callback_number, b"", domain, source=source
        )

    def callback_target(self, number: str) -> str | None:
        """The extension an inbound call from the emergency trunk to ``number`` reaches now, or None."""
        return self.callbacks.callback_target(number)


def make_desk(
    config: EmergencyConfig | None,
    store: IStore,
    reactor: Any,
    contacts: Callable[[str], list[Any]],
) -> EmergencyDesk:
    """
    The desk ``config`` describes (None: the defaults, 911 and 933 recognised, nobody alerted).

    :param contacts: an extension's live registrations (``Registrar.contacts``).
    """
    config = EmergencyConfig() if config is None else config

    def name_of(number: str) -> Deferred[str]:
        return store.get_extension(number).addCallback(
            lambda record: record.name if record is not None else ""
        )

    return EmergencyDesk(
        config,
        store,
        reactor,
        Locator(config, store, contacts),
        CallbackRegistry(reactor, config.callback_minutes, store),
        names=name_of,
    )
