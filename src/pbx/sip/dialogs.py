"""
The dialog table: which dialog, and whose, an in-dialog request belongs to
(RFC 3261 §12.2).

A dialog is identified by its Call-ID, local tag and remote tag (§12).  A
request arriving in a dialog names our tag in To and the peer's in From;
one with our To tag but another From tag is in no dialog of ours (§12.2.2:
481).  Owners (the calls of :mod:`pbx.calls`) add their dialogs as they
form and drop them all at once when they end.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from attrs import define, field

from pbx.sip.dialog import Dialog
from pbx.sip.message import Request

Owner = TypeVar("Owner")


@define(eq=False)
class DialogTable(Generic[Owner]):
    """Dialogs by (Call-ID, local tag), each with the owner its requests go to."""

    _dialogs: dict[tuple[str, str], tuple[Owner, Dialog]] = field(factory=dict)
    _owned: dict[int, list[tuple[str, str]]] = field(factory=dict)

    def add(self, owner: Owner, dialog: Dialog) -> None:
        """Send future requests of ``dialog`` to ``owner``."""
        key = (dialog.call_id, dialog.local_tag)
        self._dialogs[key] = (owner, dialog)
        self._owned.setdefault(id(owner), []).append(key)

    def match(self, request: Request) -> tuple[Owner, Dialog] | None:
        """The owner and dialog of an in-dialog request (or an ACK), or None (§12.2.2)."""
        entry = self._dialogs.get((request.call_id, request.to.tag or ""))
        if entry is not None and entry[1].remote_tag != (request.from_.tag or ""):
            return None
        return entry

    def find(self, call_id: str, local_tag: str, remote_tag: str) -> tuple[Owner, Dialog] | None:
        """The owner and dialog with this dialog ID (RFC 3891 §3: what a Replaces header names), or None."""
        entry = self._dialogs.get((call_id, local_tag))
        if entry is None or entry[1].remote_tag != remote_tag:
            return None
        return entry

    def discard(self, dialog: Dialog) -> None:
        """Forget one dialog (its party left the call: a transfer)."""
        key = (dialog.call_id, dialog.local_tag)
        entry = self._dialogs.get(key)
        if entry is None or entry[1] is not dialog:
            return
        del self._dialogs[key]
        keys = self._owned.get(id(entry[0]))
        if keys is not None and key in keys:
            keys.remove(key)

    def drop(self, owner: Owner) -> None:
        """Forget every dialog of ``owner``."""
        for key in self._owned.pop(id(owner), []):
            self._dialogs.pop(key, None)

    def __len__(self) -> int:
        return len(self._dialogs)
