"""
Voicemail mailboxes: the audio under a spool directory, the metadata in the
store's feature documents.

Layout of the spool::

    <spool>/tmp/<mailbox>.<random>.wav          recordings in progress
    <spool>/<mailbox>/<id>.wav                  one message
    <spool>/<mailbox>/greetings/<kind>.wav      unavailable, busy, name

Each message has one document of kind ``voicemail.message`` (owner: the
mailbox, key: the message id) holding the :class:`Message` fields.

The crash rule: a crash never leaves a half-written message visible and never
loses a completed one.  Recordings are written to ``tmp/`` and renamed into
place only once complete (the WAV writer does that); :meth:`Voicemail.deliver`
fsyncs the file, renames it into the mailbox directory, fsyncs the directory
and only then writes the metadata.  A crash in between leaves a WAV without
metadata, which :meth:`Voicemail.recover` adopts at the next start as a new
message; what is left in ``tmp/`` at start belongs to no call any more and is
removed.  Deleting removes the metadata, then the file (a crash in between
brings the message back rather than losing one).

Every file operation runs in a thread (:meth:`pbx.interfaces.IPBX.run_in_thread`),
never on the reactor thread.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any

from attrs import asdict, evolve, frozen

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.features.voicemail.interfaces import IGreetings
from pbx.features.voicemail.spool import MAILBOX as _MAILBOX
from pbx.features.voicemail.spool import MESSAGE_ID as _ID
from pbx.features.voicemail.spool import place, sweep, unlink
from pbx.interfaces import IStore
from pbx.records import AuditEvent
from pbx.security.lockout import Lockout
from pbx.security.passwords import generate_pin, pin_problem

__all__ = ["FOLDERS", "GREETINGS", "KIND", "Message", "Voicemail", "generate_pin", "pin_problem"]

KIND = "voicemail.message"
"""The store document kind of message metadata."""
FOLDERS = ("new", "old")
GREETINGS = ("unavailable", "busy", "name")


Hasher = Callable[[str], "Deferred[str]"]
Verifier = Callable[[str, str], "Deferred[bool]"]
#: ``(f, *args) -> Deferred``: runs blocking ``f`` off the reactor thread
#: (:meth:`pbx.interfaces.IPBX.run_in_thread`).
InThread = Callable[..., "Deferred[Any]"]


@frozen
class Message:
    """One voicemail message."""

    id: str
    """Sortable and unique: milliseconds received, a dash, 6 hex digits."""
    mailbox: str
    folder: str
    """``"new"`` or ``"old"`` (heard)."""
    caller: str
    """The caller's number, or "" if unknown."""
    caller_name: str
    received: float
    """POSIX seconds, from the injected clock."""
    duration: float
    """Seconds of audio."""
    path: str
    """Absolute path of the WAV file in the spool."""
    transcript: str = ""
    confidence: float | None = None
    emailed: bool = False
    forwarded_by: str = ""
    """The mailbox that forwarded this copy here, or ""."""

    def to_json(self) -> dict[str, Any]:
        """The metadata document stored for this message."""
        return asdict(self)


def _message(data: dict[str, Any], path: str) -> Message:
    """A :class:`Message` from its stored document; the path is recomputed."""
    known = {
        "id",
        "mailbox",
        "folder",
        "caller",
        "caller_name",
        "received",
        "duration",
        "transcript",
        "confidence",
        "emailed",
        "forwarded_by",
    }
    fields = {k: v for k, v in data.items() if k in known}
    return Message(path=path, **fields)


@implementer(IGreetings)
class Voicemail:
    """
    All mailboxes: audio under a spool directory, metadata in the store.

    :param store: where message metadata and extensions live.
    :param spool: the spool directory (made when needed).
    :param clock: the time of messages and audit events.
    :param in_thread: runs file work off the reactor thread.
    :param lockout: counts wrong PINs by mailbox and by source.
    :param hasher: PBKDF2-hashes a new PIN (off the reactor thread).
    :param verifier: checks a PIN against a stored hash (off the reactor thread).
    :param pin_min_length: the shortest PIN :meth:`set_pin` accepts.
    :param on_change: called with a mailbox whose message counts may have
        changed (message waiting indication).
    :param mailboxes: the extensions that have a mailbox; None for all.
    :param on_extension_changed: called with an extension number after its
        stored record changed (a new PIN).
    """

    log = Logger()

    def __init__(
        self,
        store: IStore,
        spool: str,
        clock: IReactorTime,
        *,
        in_thread: InThread,
        lockout: Lockout,
        hasher: Hasher,
        verifier: Verifier,
        pin_min_length: int = 4,
        on_change: Callable[[str], None] | None = None,
        mailboxes: frozenset[str] | None = None,
        on_extension_changed: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.spool = os.path.abspath(spool)
        self.clock = clock
        self.lockout = lockout
        self.pin_min_length = pin_min_length
        self.mailboxes = mailboxes
        self._hash = hasher
        self._verify = verifier
        self._on_change = on_change
        self._on_extension_changed = on_extension_changed
        self._in_thread = in_thread
        self._dummy_hash: str | None = None

    # -- plumbing ----------------------------------------------------------

    def in_thread(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run blocking ``f(*args)`` off the reactor thread; a Deferred of its result."""
        return self._in_thread(f, *args)

    def _changed(self, mailbox: str) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(mailbox)
        except Exception:
            self.log.failure(
                "voicemail change notification for {mailbox} failed", mailbox=mailbox
            )

    @staticmethod
    def _check_mailbox(mailbox: str) -> str:
        if not isinstance(mailbox, str) or not _MAILBOX.fullmatch(mailbox):
            raise ValueError(f"{mailbox!r} is not a mailbox number")
        return mailbox

    def _audio_path(self, mailbox: str, message_id: str) -> str:
        return os.path.join(self.spool, mailbox, f"{message_id}.wav")

    def _new_id(self) -> str:
        return f"{int(self.clock.seconds() * 1000):013d}-{secrets.token_hex(3)}"

    async def _load(self, mailbox: str, message_id: str) -> Message | None:
        if not _MAILBOX.fullmatch(mailbox) or not _ID.fullmatch(message_id):
            return None
        data = await self.store.get_item(KIND, mailbox, message_id)
        if data is None:
            return None
        return _message(data, self._audio_path(mailbox, message_id))

    async def _save(self, message: Message) -> None:
        await self.store.put_item(KIND, message.mailbox, message.id, message.to_json())

    # -- mailboxes and messages --------------------------------------------

    def recording_path(self, mailbox: str) -> str:
        """
        A fresh path to record into, under ``<spool>/tmp`` (made if missing).
        """
        self._check_mailbox(mailbox)
        temp = os.path.join(self.spool, "tmp")
        os.makedirs(temp, mode=0o700, exist_ok=True)  # one quick syscall when it exists
        return os.path.join(temp, f"{mailbox}.{secrets.token_hex(8)}.wav")

    def has_mailbox(self, mailbox: str) -> bool:
        """Whether the configuration gives extension ``mailbox`` a mailbox."""
        return self.mailboxes is None or mailbox in self.mailboxes

    async def exists(self, mailbox: str) -> bool:
        """Whether ``mailbox`` is an enabled extension with a mailbox."""
        if (
            not isinstance(mailbox, str)
            or not _MAILBOX.fullmatch(mailbox)
            or not self.has_mailbox(mailbox)
        ):
            return False
        record = await self.store.get_extension(mailbox)
        return record is not None and record.enabled

    async def deliver(
        self,
        mailbox: str,
        recorded_path: str,
        *,
        caller: str,
        caller_name: str,
        duration: float,
    ) -> Message:
        """
        Move a finished recording into ``mailbox`` as a new message.

        The file is made durable in the mailbox directory before the metadata
        is written.

        :returns: the message.
        """
        self._check_mailbox(mailbox)
        message_id = self._new_id()
        path = self._audio_path(mailbox, message_id)
        await self.in_thread(place, recorded_path, path)
        message = Message(
            message_id,
            mailbox,
            "new",
            caller or "",
            caller_name or "",
            self.clock.seconds(),
            round(float(duration), 3),
            path,
        )
        await self._save(message)
        self.log.info(
            "voicemail {id} for {mailbox} from {caller} ({duration} s)",
            id=message_id,
            mailbox=mailbox,
            caller=caller or "unknown",
            duration=message.duration,
        )
        self._changed(mailbox)
        return message

    async def messages(self, mailbox: str, folder: str | None = None) -> list[Message]:
        """
        The messages of ``mailbox``: new ones first, then old ones; oldest
        first within each folder.

        :param folder: only this folder (``"new"`` or ``"old"``).
        """
        if not _MAILBOX.fullmatch(mailbox):
            return []
        items = await self.store.list_items(KIND, mailbox)
        found = [
            _message(data, self._audio_path(mailbox, key)) for _, key, data in items
        ]
        if folder is not None:
            found = [m for m in found if m.folder == folder]
        return sorted(found, key=lambda m: (m.folder != "new", m.id))

    async def counts(self, mailbox: str) -> tuple[int, int]:
        """``(new, old)`` message counts of ``mailbox``."""
        found = await self.messages(mailbox)
        new = sum(1 for m in found if m.folder == "new")
        return new, len(found) - new

    async def get(self, mailbox: str, id: str) -> Message | None:
        """One message, or None."""
        return await self._load(mailbox, id)

    async def mark(self, mailbox: str, id: str, folder: str) -> bool:
        """
        Move a message to ``folder`` (``"old"`` once heard).

        :returns: whether the message exists.
        :raises ValueError: for an unknown folder.
        """
        if folder not in FOLDERS:
            raise ValueError(f"no folder {folder!r}")
        message = await self._load(mailbox, id)
        if message is None:
            return False
        if message.folder != folder:
            await self._save(evolve(message, folder=folder))
            self._changed(mailbox)
        return True

    async def delete(self, mailbox: str, id: str) -> bool:
        """
        Delete a message: its metadata, then its file.

        :returns: whether it existed.
        """
        message = await self._load(mailbox, id)
        if message is None:
            return False
        await self.store.delete_item(KIND, mailbox, id)
        try:
            await self.in_thread(unlink, message.path)
        except OSError:
            self.log.failure(
                "voicemail {id}: removing {path} failed", id=id, path=message.path
            )
        self._changed(mailbox)
        return True

    async def forward(
        self, mailbox: str, id: str, to_mailbox: str, *, by: str
    ) -> Message | None:
        """
        Copy a message into another mailbox, as new there.

        :param by: who forwarded it (kept in :attr:`Message.forwarded_by`).
        :returns: the copy, or None if the message or the target mailbox
            does not exist.
        """
        message = await self._load(mailbox, id)
        if message is None or not await self.exists(to_mailbox):
            return None
        copy_id = self._new_id()
        path = self._audio_path(to_mailbox, copy_id)
        await self.in_thread(place, message.path, path, True)
        copy = evolve(
            message,
            id=copy_id,
            mailbox=to_mailbox,
            folder="new",
            path=path,
            emailed=False,
            forwarded_by=by,
        )
        await self._save(copy)
        self._changed(to_mailbox)
        return copy

    async def set_transcript(
        self, mailbox: str, id: str, text: str, confidence: float | None
    ) -> None:
        """Record the transcript of a message (nothing if it is gone)."""
        message = await self._load(mailbox, id)
        if message is not None:
            await self._save(evolve(message, transcript=text, confidence=confidence))

    async def set_emailed(self, mailbox: str, id: str) -> None:
        """Record that a message was e-mailed (nothing if it is gone)."""
        message = await self._load(mailbox, id)
        if message is not None:
            await self._save(evolve(message, emailed=True))

    async def search(self, text: str, mailbox: str | None = None) -> list[Message]:
        """
        Messages whose transcript, caller number or caller name contains
        ``text`` (case-insensitive), newest first.

        :param mailbox: only this mailbox; all when None.
        """
        needle = text.casefold().strip()
        if not needle or (mailbox is not None and not _MAILBOX.fullmatch(mailbox)):
            return []
        items = await self.store.list_items(KIND, mailbox, search=text.strip())
        found = []
        for owner, key, data in items:
            message = _message(data, self._audio_path(owner, key))
            haystack = " ".join(
                (message.transcript, message.caller, message.caller_name)
            )
            if needle in haystack.casefold():
                found.append(message)
        return sorted(found, key=lambda m: m.id, reverse=True)

    # -- greetings ---------------------------------------------------------

    def _greeting_file(self, mailbox: str, kind: str) -> str:
        self._check_mailbox(mailbox)
        if kind not in GREETINGS:
            raise ValueError(f"no greeting {kind!r}")
        return os.path.join(self.spool, mailbox, "greetings", f"{kind}.wav")

    def greeting_path(self, mailbox: str, kind: str) -> str | None:
        """
        The recorded greeting of ``kind`` (``unavailable``, ``busy``,
        ``name``), or None if there is none.
        """
        path = self._greeting_file(mailbox, kind)
        return path if os.path.isfile(path) else None

    async def save_greeting(self, mailbox: str, kind: str, recorded_path: str) -> None:
        """Make a finished recording the greeting of ``kind`` (replacing any)."""
        await self.in_thread(place, recorded_path, self._greeting_file(mailbox, kind))
        self.log.info(
            "voicemail {mailbox}: new {kind} greeting", mailbox=mailbox, kind=kind
        )

    async def delete_greeting(self, mailbox: str, kind: str) -> bool:
        """Remove a greeting; whether there was one."""
        return bool(await self.in_thread(unlink, self._greeting_file(mailbox, kind)))

    # -- PINs --------------------------------------------------------------

    async def check_pin(self, mailbox: str, pin: str, source: str) -> str:
        """
        Check the PIN entered for ``mailbox`` from ``source`` (an address).

        Wrong PINs count against both the mailbox and the source; either one
        locked refuses without checking.  An unknown mailbox costs as much
        time as a known one and answers the same.

        :returns: ``"ok"``, ``"wrong"``, or ``"locked"`` (also when this
            failure just caused a lockout).
        """
        # ("user", mailbox) is the key the API counts an extension's PIN
        # logins under: with the API's Lockout (the plugin passes it), the
        # phone and the API share one budget of guesses per mailbox.
        keys = (("user", mailbox), ("vm-source", source))
        if any(self.lockout.is_locked(k) for k in keys):
            return "locked"
        encoded = ""
        if (
            isinstance(mailbox, str)
            and _MAILBOX.fullmatch(mailbox)
            and self.has_mailbox(mailbox)
        ):
            record = await self.store.get_extension(mailbox)
            if record is not None and record.enabled:
                encoded = record.pin_hash
        if not encoded and self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(24))
        ok = await self._verify(pin, encoded or self._dummy_hash or "")
        if ok and encoded:
            for key in keys:
                self.lockout.record_success(key)
            return "ok"
        locked = max(self.lockout.record_failure(k) for k in keys)
        await self._audit("voicemail.pin.failure", mailbox, source)
        if locked:
            self.log.warn(
                "voicemail {mailbox}: PIN locked for {delay:.0f} s after failures from {source}",
                mailbox=mailbox,
                delay=locked,
                source=source,
            )
            await self._audit("voicemail.lockout", mailbox, source, f"{locked:.0f}s")
            return "locked"
        return "wrong"

    async def _audit(
        self, kind: str, subject: str, source: str, detail: str = ""
    ) -> None:
        try:
            await self.store.add_audit(
                AuditEvent(self.clock.seconds(), kind, subject, source, detail)
            )
        except Exception:
            self.log.failure(
                "audit event {kind} for {subject} not stored",
                kind=kind,
                subject=subject,
            )

    async def set_pin(self, mailbox: str, pin: str) -> str | None:
        """
        Change the PIN of ``mailbox``.

        :returns: None when changed, else what is wrong with it (a phrase).
        """
        problem = pin_problem(pin, mailbox, self.pin_min_length)
        if problem is not None:
            return problem
        if not await self.exists(mailbox):
            return "no such mailbox"
        encoded = await self._hash(pin)
        record = await self.store.get_extension(mailbox)
        if record is None:
            return "no such mailbox"
        await self.store.put_extension(evolve(record, pin_hash=encoded))
        await self._audit("voicemail.pin.change", mailbox, "")
        if self._on_extension_changed is not None:
            self._on_extension_changed(mailbox)
        return None

    # -- start-up ----------------------------------------------------------

    async def recover(self) -> int:
        """
        Clean the spool after a crash: remove temporary files, and adopt
        every message file without metadata as a new message (its caller
        unknown).

        :returns: how many messages were adopted.
        """
        removed, found = await self.in_thread(sweep, self.spool)
        if removed:
            self.log.info(
                "voicemail: removed {count} unfinished temporary files", count=removed
            )
        adopted = 0
        for mailbox, files in found.items():
            items = await self.store.list_items(KIND, mailbox)
            known = {key for _, key, _ in items}
            orphans = sorted(set(files) - known)
            for key in orphans:
                received = int(key[:13]) / 1000
                message = Message(
                    key,
                    mailbox,
                    "new",
                    "",
                    "",
                    received,
                    round(files[key], 3),
                    self._audio_path(mailbox, key),
                )
                await self._save(message)
                adopted += 1
                self.log.warn(
                    "voicemail {mailbox}: adopted {id} (its metadata was lost)",
                    mailbox=mailbox,
                    id=key,
                )
            for key in sorted(known - set(files)):
                self.log.warn(
                    "voicemail {mailbox}: message {id} has no audio file",
                    mailbox=mailbox,
                    id=key,
                )
            if orphans:
                self._changed(mailbox)
        return adopted
