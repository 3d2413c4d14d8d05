"""Tests for :mod:`pbx.sip.dialogs`: finding a dialog by its ID and forgetting one."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.dialog import Dialog, LocalAddress
from pbx.sip.dialogs import DialogTable
from pbx.sip.headers import parse_name_addr
from pbx.sip.transaction import Peer
from pbx.sip.uri import parse_uri


def dialog(call_id: str, ours: str, theirs: str) -> Dialog:
    """A dialog with these IDs."""
    return Dialog(
        call_id=call_id,
        local=parse_name_addr(f"<sip:pbx@pbx.test>;tag={ours}"),
        remote=parse_name_addr(f"<sip:1002@pbx.test>;tag={theirs}"),
        remote_target=parse_uri("sip:1002@192.0.2.12"),
        peer=Peer("udp", "192.0.2.12", 5060),
        address=LocalAddress("udp", "127.0.0.1", 5060),
    )


class FindDiscardTests(SynchronousTestCase):
    """RFC 3891 §3: a Replaces header names a dialog by Call-ID and both tags."""

    def test_find(self) -> None:
        """The owner and dialog are found by all three IDs; a wrong remote tag finds nothing."""
        table: DialogTable[str] = DialogTable()
        d = dialog("c", "us", "them")
        table.add("call", d)
        self.assertEqual(table.find("c", "us", "them"), ("call", d))
        self.assertIsNone(table.find("c", "us", "other"))
        self.assertIsNone(table.find("c", "them", "us"))

    def test_discard(self) -> None:
        """A discarded dialog is gone; its owner's other dialogs stay until the owner is dropped."""
        table: DialogTable[str] = DialogTable()
        a, b = dialog("c", "us", "them"), dialog("d", "us2", "them2")
        table.add("call", a)
        table.add("call", b)
        table.discard(a)
        table.discard(a)
        self.assertIsNone(table.find("c", "us", "them"))
        self.assertEqual(len(table), 1)
        table.drop("call")
        self.assertEqual(len(table), 0)

    def test_discard_only_that_dialog(self) -> None:
        """Discarding a dialog object that is not the one stored under its key leaves the stored one."""
        table: DialogTable[str] = DialogTable()
        stored, twin = dialog("c", "us", "them"), dialog("c", "us", "them")
        table.add("call", stored)
        table.discard(twin)
        self.assertEqual(table.find("c", "us", "them"), ("call", stored))
