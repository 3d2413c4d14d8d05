"""
The voicemail service: what the feature runs inside a PBX.

Import-light like the dropin that leads here: the mailboxes, applications
and API are imported when the service starts.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.interfaces import IPBX

if TYPE_CHECKING:
    from pbx.calls.dialplan import ToApplication
    from pbx.features.voicemail.mailbox import Voicemail
    from pbx.features.voicemail.mwi import MessageSummaryPackage
    from pbx.features.voicemail.options import VoicemailOptions
    from pbx.features.voicemail.pipeline import AfterDeposit


class VoicemailService(Service):
    """
    Runs voicemail in a PBX.

    Starting registers everything at once (the dialplan applications
    ``voicemail`` and ``voicemail-main``, the diverter that sends unanswered
    calls to voicemail, the ``message-summary`` event package, the API and
    the :class:`~pbx.features.voicemail.interfaces.IGreetings` other features
    look up) and asks the PBX to generate, before it is ready, a PIN for
    every mailbox that has none; then, in the background, it cleans the
    spool after a crash.

    :param pbx: the running PBX.
    :param options: the feature's options.
    """

    log = Logger()

    def __init__(self, pbx: IPBX, options: VoicemailOptions) -> None:
        self.pbx = pbx
        self.options = options
        self.voicemail: Voicemail | None = None
        self.pipeline: AfterDeposit | None = None
        self.package: MessageSummaryPackage | None = None
        self.ready: Deferred[None] | None = None

    def spool(self) -> str:
        """The spool directory: the option, under ``state_dir`` when relative."""
        return os.path.join(
            self.pbx.config.state_dir, os.path.expanduser(self.options.spool)
        )

    def notify(self, mailbox: str) -> None:
        """Tell ``mailbox``'s phones that its message counts changed."""
        from pbx.features.voicemail.mwi import EVENT

        self.pbx.notify(EVENT, mailbox)

    def divert(self, callee: str, reason: str) -> ToApplication | None:
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
        """Register with the PBX now; provision PINs before it is ready; recover in the background."""
        from pbx.features.voicemail.api import OPENAPI_PATHS, VoicemailAPI
        from pbx.features.voicemail.deposit import Deposit
        from pbx.features.voicemail.interfaces import IGreetings
        from pbx.features.voicemail.mailbox import Voicemail
        from pbx.features.voicemail.mwi import MessageSummaryPackage, access_number
        from pbx.features.voicemail.pipeline import AfterDeposit
        from pbx.features.voicemail.retrieval import Retrieval

        super().startService()
        pbx, options, config = self.pbx, self.options, self.pbx.config
        # pbx.lockout is the API's too: a PIN guesser gets no fresh
        # attempts by switching between the phone and PIN logins.
        self.voicemail = Voicemail(
            pbx.store,
            self.spool(),
            pbx.clock,
            in_thread=pbx.run_in_thread,
            lockout=pbx.lockout,
            hasher=pbx.hash_secret,
            verifier=pbx.verify_secret,
            pin_min_length=options.pin_min_length,
            on_change=self.notify,
            mailboxes=options.mailboxes,
            on_extension_changed=self._pin_changed,
        )
        self.pipeline = AfterDeposit(self.voicemail, options, pbx)
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
        api = VoicemailAPI(self.voicemail, pbx.authenticate)
        pbx.mount_api("voicemail", api.resource(), OPENAPI_PATHS)
        pbx.provide(IGreetings, self.voicemail)
        pbx.before_ready(self.generate_pins)
        self.ready = Deferred.fromCoroutine(self._recover())
        self.ready.addErrback(
            lambda f: self.log.failure("voicemail: start-up work failed", f)
        )

    def stopService(self) -> Any:  # noqa: N802 - twisted API
        """Stop the transcription worker, if one was started."""
        transcriber = self.options.transcription
        if transcriber is not None:
            from pbx.features.voicemail.transcribe import WorkerTranscriber

            if isinstance(transcriber, WorkerTranscriber):
                transcriber.close()
        return super().stopService()

    async def _recover(self) -> None:
        assert self.voicemail is not None
        adopted = await self.voicemail.recover()
        self.log.info(
            "voicemail spool {spool} ready ({adopted} messages recovered)",
            spool=self.voicemail.spool,
            adopted=adopted,
        )

    def _pin_changed(self, number: str) -> None:
        """A mailbox's PIN changed: drop cached records and end its API sessions."""
        self.pbx.extension_changed(number)
        self.pbx.credentials_changed(number)

    async def generate_pins(self) -> int:
        """
        Give every mailbox without a PIN a random one, announced to the PBX
        (which shows it once, with the other generated secrets; only its
        hash is kept).

        :returns: how many PINs were made.
        """
        from attrs import evolve

        from pbx.features.voicemail.mailbox import generate_pin

        store, made = self.pbx.store, 0
        for record in await store.list_extensions():
            if record.pin_hash or not self.options.has_mailbox(record.number):
                continue
            pin = generate_pin(record.number, max(6, self.options.pin_min_length))
            current = await store.get_extension(record.number)
            if current is None or current.pin_hash:
                continue  # deleted, or given a PIN meanwhile
            # Hashed off the startup path; the PIN works from now on.
            placeholder = self.pbx.hold_pin(pin)
            await store.put_extension(evolve(current, pin_hash=placeholder))
            self.pbx.hash_pin_later(record.number, placeholder)
            self.pbx.extension_changed(record.number)
            self.pbx.announce_secret("voicemail PIN", record.number, pin)
            made += 1
        return made
