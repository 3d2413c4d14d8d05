"""
The narrow collaborators a call's legs get: how to send SIP, where a
registered phone is reached, and the dialog table their dialogs go in.
Legs never see the call controller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, frozen

from pbx.records import Binding
from pbx.sip.core import SIPCore
from pbx.sip.dialog import Dialog, LocalAddress
from pbx.sip.dialogs import DialogTable
from pbx.sip.location import peer_for
from pbx.sip.message import Request, Response
from pbx.sip.transaction import ClientTransaction, Peer


def ignore(response: Response) -> None:
    """Responses nobody waits for (to CANCEL, PRACK, BYE of a dying call)."""


@define(eq=False)
class SIPSender:
    """Sends SIP for the legs: outside transactions, in a new client transaction, or within a dialog."""

    core: SIPCore

    def send(self, message: Request | Response, peer: Peer) -> None:
        """Send outside any transaction (ACK of a 2xx, 2xx retransmissions)."""
        self.core.transports.send(message, peer)

    def request(self, request: Request, peer: Peer, on_response: Callable[[Response], None]) -> ClientTransaction:
        """Send a request in a new client transaction."""
        return self.core.transactions.start_client(request, peer, on_response)

    def in_dialog(self, dialog: Dialog, method: str, on_response: Callable[[Response], None] = ignore) -> None:
        """Send a body-less request (BYE, ...) within ``dialog``."""
        self.request(dialog.request(method), dialog.peer, on_response)


@define(eq=False)
class Location:
    """Where an extension's phones are, and how pbx names itself to them."""

    contacts: Callable[[str], list[Binding]]
    local_address: Callable[[str], LocalAddress]
    #: Whether a stream to a peer is open (None: take it as open).
    connected: Callable[[Peer], bool] | None = None
    #: Whether a binding asked for RFC 5626 outbound (None: ``ob`` in its Contact).
    outbound: Callable[[Binding], bool] | None = None

    def peer_for(self, binding: Binding) -> Peer:
        """Where a registered phone is reached (:func:`pbx.sip.location.peer_for`)."""
        return peer_for(binding, self.connected, self.outbound)


@frozen
class LegServices:
    """
    Everything a leg uses of the switch.

    :ivar sip: sends requests and responses.
    :ivar location: finds the callee's phones.
    :ivar clock: the injected ``IReactorTime`` of every timer.
    :ivar dialogs: the dialog table in-dialog requests are matched with.
    :ivar domain: the SIP domain calls are placed in.
    """

    sip: SIPSender
    location: Location
    clock: Any
    dialogs: DialogTable[Any]
    domain: str
