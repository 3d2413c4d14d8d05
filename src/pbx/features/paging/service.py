"""
The paging service: what the feature runs inside a PBX.

Import-light like the dropin that leads here: the applications are
imported when the service starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.application.service import Service

from pbx.interfaces import IPBX

if TYPE_CHECKING:
    from pbx.features.paging.app import Paging, SocketFactory
    from pbx.features.paging.options import PagingOptions


class PagingService(Service):
    """
    Registers the ``paging`` and ``intercom`` applications when it starts;
    stopping ends every page in progress.

    :param pbx: the running PBX.
    :param options: the groups and the intercom prefix.
    :param sockets: makes multicast sockets (default:
        :func:`~pbx.features.paging.multicast.multicast_socket`).
    """

    def __init__(
        self, pbx: IPBX, options: PagingOptions, sockets: SocketFactory | None = None
    ) -> None:
        self.pbx = pbx
        self.options = options
        self.sockets = sockets
        self.paging: Paging | None = None

    def startService(self) -> None:  # noqa: N802 - twisted API
        """Register both applications."""
        from pbx.features.paging.app import Intercom, Paging
        from pbx.features.paging.multicast import multicast_socket

        super().startService()
        self.paging = Paging(self.pbx, self.options, self.sockets or multicast_socket)
        self.pbx.register_application(self.paging)
        self.pbx.register_application(Intercom(self.pbx, self.options))

    def stopService(self) -> None:  # noqa: N802 - twisted API
        """End every page in progress (its members get BYE, its multicast stream stops)."""
        if self.paging is not None:
            for page in list(self.paging.pages.values()):
                page.end()
        return super().stopService()  # type: ignore[no-any-return]
