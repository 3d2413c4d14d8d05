"""Tests for :mod:`pbx.calls.party`: a confirmed dialog in a call's seat."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.party import Party
from pbx.sip.dialog import Dialog, LocalAddress
from pbx.sip.headers import parse_name_addr
from pbx.sip.transaction import Peer
from pbx.sip.uri import parse_uri


class Sender:
    """Keeps the in-dialog requests a party sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[Dialog, str]] = []

    def in_dialog(self, dialog: Dialog, method: str) -> None:
        """Keep ``method`` in ``dialog``."""
        self.sent.append((dialog, method))


def dialog() -> Dialog:
    """A dialog with 1003, our tag ``us``."""
    return Dialog(
        call_id="c1",
        local=parse_name_addr("<sip:1001@pbx.test>;tag=us"),
        remote=parse_name_addr("<sip:1003@pbx.test>;tag=them"),
        remote_target=parse_uri("sip:1003@192.0.2.13"),
        peer=Peer("udp", "192.0.2.13", 5060),
        address=LocalAddress("udp", "127.0.0.1", 5060),
    )


class PartyTests(SynchronousTestCase):
    """A party answers the caller's-side inputs of a call."""

    def test_bye_once(self) -> None:
        """Hanging up sends one BYE in its dialog and reports the end once; later inputs do nothing."""
        sender, ended = Sender(), []
        d = dialog()
        party = Party(sender, d, lambda: ended.append(1))
        self.assertEqual(
            (party.state, party.tag, party.waiting), ("confirmed", "us", False)
        )
        party.provisional(180)
        party.answer(b"")
        party.refuse(486)
        party.acked(None)
        self.assertEqual(sender.sent, [])
        party.bye_now()
        party.hang_up()
        party.remote_bye()
        self.assertEqual(sender.sent, [(d, "BYE")])
        self.assertEqual((party.state, ended), ("ended", [1]))

    def test_remote_bye(self) -> None:
        """A BYE from the party ends it with nothing sent."""
        sender, ended = Sender(), []
        party = Party(sender, dialog(), lambda: ended.append(1))
        party.remote_bye()
        self.assertEqual((sender.sent, ended), ([], [1]))

    def test_empty_seat(self) -> None:
        """A seat kept for a ringing target has no dialog: hanging it up sends nothing but ends it."""
        sender, ended = Sender(), []
        party = Party(sender, None, lambda: ended.append(1))
        self.assertEqual(party.tag, "")
        party.bye_now()
        self.assertEqual((sender.sent, ended), ([], [1]))
