"""Dropin: the ``voicemail`` feature (mailboxes, message waiting, REST API)."""

from __future__ import annotations

import os
from typing import Any

from zope.interface import implementer

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.plugin import IPlugin

from pbx.interfaces import IFeature


class VoicemailService(Service):
    """
    Runs voicemail in a PBX.

    Starting registers everything at once (the dialplan applications
    ``voicemail`` and ``voicemail-main``, the diverter that sends unanswered
    calls to voicemail, the ``message-summary`` event package and the API),
    then, in the background, cleans the spool after a crash and generates a
    PIN for every mailbox that has none.

    :param pbx: the running PBX.
    :param options: a :class:`pbx.apps.voicemail.options.VoicemailOptions`.
    """

    log = Logger()

    def __init__(self, pbx: Any, options: Any) -> None:
        self.pbx = pbx
        self.options = options
        self.voicemail: Any = None
        self.pipeline: Any = None
        self.package: Any = None
        self.ready: Any = None

    def _reactor(self) -> Any:
        return getattr(self.pbx, "reactor", self.pbx.clock)

    def _hasher(self) -> Any:
        hasher = getattr(self.pbx, "hash_secret", None)
        if hasher is not None:
            return hasher
        from twisted.internet.threads import deferToThreadPool

        from pbx.security.passwords import hash_password

        reactor = self._reactor()
        return lambda secret: deferToThreadPool(
            reactor, reactor.getThreadPool(), hash_password, secret
        )

    def _verifier(self) -> Any:
        verifier = getattr(self.pbx, "verify_secret", None)
        if verifier is not None:
            return verifier
        from twisted.internet.threads import deferToThreadPool

        from pbx.security.passwords import verify_password

        reactor = self._reactor()
        return lambda secret, encoded: deferToThreadPool(
            reactor, reactor.getThreadPool(), verify_password, secret, encoded
        )

    def spool(self) -> str:
        """The spool directory: the option, under ``state_dir`` when relative."""
        return os.path.join(
            self.pbx.config.state_dir, os.path.expanduser(self.options.spool)
        )

    def notify(self, mailbox: str) -> None:
        """Tell ``mailbox``'s phones that its message counts changed."""
        from pbx.apps.voicemail.mwi import EVENT

        self.pbx.notify(EVENT, mailbox)

    def divert(self, callee: str, reason: str) -> Any:
        """
        The diverter: a call to an extension with a mailbox that nobody
        will answer goes to its voicemail, whatever the reason.  (The
        callee is an extension already; the ``voicemail`` application says
        so and hangs up if the mailbox turns out not to exist.)
        """
        from pbx.calls.dialplan import ToApplication

        if not self.options.has_mailbox(callee):
            return None
        return ToApplication("voicemail", {"mailbox": callee, "reason": reason})

    def startService(self) -> None:  # noqa: N802 - twisted API
        """Register with the PBX now; recover and provision in the background."""
        from twisted.internet.defer import Deferred

        from pbx.apps.voicemail.api import OPENAPI_PATHS, VoicemailAPI
        from pbx.apps.voicemail.deposit import Deposit
        from pbx.apps.voicemail.mailbox import Voicemail
        from pbx.apps.voicemail.mwi import MessageSummaryPackage, access_number
        from pbx.apps.voicemail.pipeline import AfterDeposit
        from pbx.apps.voicemail.retrieval import Retrieval
        from pbx.security.lockout import Lockout

        super().startService()
        pbx, options, config = self.pbx, self.options, self.pbx.config
        security = config.security
        # One lockout for PINs typed on a phone and PIN logins to the API:
        # a guesser gets no fresh attempts by switching between them.
        lockout = getattr(getattr(pbx, "api", None), "lockout", None) or Lockout(
            pbx.clock,
            max_failures=security.lockout_failures,
            window=security.lockout_window,
            base_delay=security.lockout_delay,
            max_delay=security.lockout_max_delay,
        )
        self.voicemail = Voicemail(
            pbx.store,
            self.spool(),
            self._reactor(),
            lockout=lockout,
            hasher=self._hasher(),
            verifier=self._verifier(),
            pin_min_length=options.pin_min_length,
            on_change=self.notify,
            mailboxes=options.mailboxes,
            on_extension_changed=pbx.extension_changed,
        )
        self.pipeline = AfterDeposit(self.voicemail, options, self._reactor())
        pbx.register_application(
            Deposit(
                voicemail=self.voicemail,
                pbx=pbx,
                options=options,
                on_deposit=self.pipeline,
            )
        )
        pbx.register_application(
            Retrieval(voicemail=self.voicemail, pbx=pbx, options=options)
        )
        pbx.add_diverter(self.divert)
        self.package = MessageSummaryPackage(
            self.voicemail,
            config.sip.domain,
            options.unsolicited_mwi,
            access_number(config.dialplan),
        )
        pbx.register_event_package(self.package)
        api = VoicemailAPI(self.voicemail, pbx.api.authenticate)
        pbx.mount_api("voicemail", api.resource(), OPENAPI_PATHS)
        self.ready = Deferred.fromCoroutine(self._start())
        self.ready.addErrback(
            lambda f: self.log.failure("voicemail: start-up work failed", f)
        )

    def stopService(self) -> Any:  # noqa: N802 - twisted API
        """Stop the transcription worker, if one was started."""
        close = getattr(self.options.transcription, "close", None)
        if close is not None:
            close()
        return super().stopService()

    async def _start(self) -> None:
        adopted = await self.voicemail.recover()
        self.log.info(
            "voicemail spool {spool} ready ({adopted} messages recovered)",
            spool=self.voicemail.spool,
            adopted=adopted,
        )
        await self.generate_pins()

    async def generate_pins(self) -> int:
        """
        Give every mailbox without a PIN a random one, logged once (like
        generated SIP passwords: only its hash is kept).

        :returns: how many PINs were made.
        """
        from attrs import evolve

        from pbx.apps.voicemail.mailbox import generate_pin

        store, made = self.pbx.store, 0
        hasher = self._hasher()
        for record in await store.list_extensions():
            if record.voicemail_pin_hash or not self.options.has_mailbox(record.number):
                continue
            pin = generate_pin(record.number, max(6, self.options.pin_min_length))
            encoded = await hasher(pin)
            current = await store.get_extension(record.number)
            if current is None or current.voicemail_pin_hash:
                continue  # deleted, or given a PIN meanwhile
            await store.put_extension(evolve(current, voicemail_pin_hash=encoded))
            self.pbx.extension_changed(record.number)
            # Shown once, at the start that created it; only a hash is kept.
            self.log.warn(
                "generated voicemail PIN for {number}: {pin} (shown once; change it)",
                number=record.number,
                pin=pin,
            )
            made += 1
        return made


@implementer(IPlugin, IFeature)
class VoicemailFeature:
    """Voicemail: ``app: voicemail`` (leave a message), ``app: voicemail-main`` (listen)."""

    name = "voicemail"
    description = "Voicemail: mailboxes, greetings, message waiting lights, e-mail and the REST API."

    def parse_options(self, options: dict[str, Any]) -> Any:
        """Validate into :class:`~pbx.apps.voicemail.options.VoicemailOptions`."""
        from pbx.apps.voicemail.options import parse_voicemail_options

        return parse_voicemail_options(options)

    def make_service(self, pbx: Any, options: Any) -> Service:
        """The service that runs voicemail."""
        return VoicemailService(pbx, options)


voicemail = VoicemailFeature()
