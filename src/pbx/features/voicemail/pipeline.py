"""
What happens after a message is left: transcription, then e-mail.

Message waiting indication is not here: :meth:`Voicemail.deliver` already
announced the new message.  Each step that fails is logged and the next one
still runs; none of them can lose the message (it is deleted only after an
e-mail was accepted, and only when the configuration says so).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import evolve

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.features.voicemail.mailbox import Message, Voicemail
from pbx.features.voicemail.options import VoicemailOptions
from pbx.interfaces import IPBX

__all__ = ["AfterDeposit"]


def _default_transcribe(pbx: IPBX, transcriber: Any, path: str) -> Deferred[Any]:
    from pbx.features.voicemail.transcribe import transcribe_in_thread

    return transcribe_in_thread(pbx.run_in_thread, transcriber, path)


def _default_send(pbx: IPBX, config: Any, to: str, **message: Any) -> Deferred[None]:
    from pbx.features.voicemail.mailer import deliver

    return Deferred.fromCoroutine(
        deliver(pbx.run_in_thread, pbx.tcp, config, to, **message)
    )


class AfterDeposit:
    """
    The work done for each new message, in the background.

    Call it with the :class:`Message` just delivered; it returns at once
    with a Deferred that fires (never fails) when the work is done.

    :param voicemail: the mailboxes.
    :param options: whether to transcribe, e-mail and delete.
    :param pbx: the running PBX (threads and SMTP connections).
    :param transcribe: ``(pbx, transcriber, path) -> Deferred`` firing
        with a ``Transcript``, or None when transcription failed.
    :param send: ``(pbx, email_config, to, **fields) -> Deferred[None]``,
        the fields being those of :func:`pbx.features.voicemail.mailer.deliver`.
    """

    log = Logger()

    def __init__(
        self,
        voicemail: Voicemail,
        options: VoicemailOptions,
        pbx: IPBX,
        *,
        transcribe: Callable[[Any, Any, str], Deferred[Any]] = _default_transcribe,
        send: Callable[..., Deferred[None]] = _default_send,
    ) -> None:
        self.voicemail = voicemail
        self.options = options
        self.pbx = pbx
        self._transcribe = transcribe
        self._send = send
        self.pending: set[Deferred[None]] = set()

    @property
    def deletes(self) -> bool:
        """Whether messages are deleted once e-mailed."""
        email = self.options.email
        return self.options.delete_after_email or bool(
            getattr(email, "delete_after_send", False)
        )

    def __call__(self, message: Message) -> Deferred[None]:
        """Start the work for ``message``."""
        d = Deferred.fromCoroutine(self.run(message))
        d.addErrback(
            lambda f: self.log.failure(
                "voicemail {id}: after-deposit work failed", f, id=message.id
            )
        )
        if not d.called:
            self.pending.add(d)
            d.addBoth(lambda _: self.pending.discard(d))
        return d

    async def run(self, message: Message) -> None:
        """Transcribe, then e-mail (then delete) ``message``, as configured."""
        if self.options.transcription is not None:
            message = await self._transcribed(message)
        if self.options.email is not None:
            await self._email(message)

    async def _transcribed(self, message: Message) -> Message:
        try:
            result = await self._transcribe(
                self.pbx, self.options.transcription, message.path
            )
        except Exception:
            self.log.failure("voicemail {id}: transcription failed", id=message.id)
            return message
        if result is None:
            return message  # the transcriber failed and said why
        text, confidence = str(result.text), result.confidence
        try:
            await self.voicemail.set_transcript(
                message.mailbox, message.id, text, confidence
            )
        except Exception:
            self.log.failure(
                "voicemail {id}: storing the transcript failed", id=message.id
            )
        self.log.info(
            "voicemail {id}: transcribed ({chars} characters)",
            id=message.id,
            chars=len(text),
        )
        return evolve(message, transcript=text, confidence=confidence)

    async def _email(self, message: Message) -> None:
        try:
            record = await self.voicemail.store.get_extension(message.mailbox)
            if record is None or not record.email:
                self.log.info(
                    "voicemail {id}: no e-mail address for {mailbox}",
                    id=message.id,
                    mailbox=message.mailbox,
                )
                return
            if await self.voicemail.get(message.mailbox, message.id) is None:
                return  # deleted meanwhile
            await self._send(
                self.pbx,
                self.options.email,
                record.email,
                mailbox=message.mailbox,
                caller=message.caller,
                caller_name=message.caller_name,
                received=message.received,
                duration=message.duration,
                transcript=message.transcript or None,
                confidence=message.confidence,
                wav_path=message.path,
            )
        except Exception:
            self.log.failure(
                "voicemail {id}: e-mail to the owner of {mailbox} failed",
                id=message.id,
                mailbox=message.mailbox,
            )
            return
        self.log.info(
            "voicemail {id}: e-mailed to the owner of {mailbox}",
            id=message.id,
            mailbox=message.mailbox,
        )
        try:
            await self.voicemail.set_emailed(message.mailbox, message.id)
            if self.deletes:
                await self.voicemail.delete(message.mailbox, message.id)
        except Exception:
            self.log.failure(
                "voicemail {id}: updating after e-mail failed", id=message.id
            )
