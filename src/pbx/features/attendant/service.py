"""
The attendant service: what the feature runs inside a PBX.

Import-light like the dropin that leads here: the application and API are
imported when the service starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.interfaces import IPBX

if TYPE_CHECKING:
    from pbx.features.attendant.options import MenuSet


class AttendantService(Service):
    """
    Runs the auto attendant in a PBX.

    Starting registers the ``attendant`` application and mounts the API at
    once, then writes the config file's menus to the store in the
    background (calls meanwhile use the file's menus).

    :param pbx: the running PBX.
    :param options: the :class:`~pbx.features.attendant.options.MenuSet` of the file.
    :param routes: ``(key, target)`` of every dialplan route into the attendant.
    """

    log = Logger()

    def __init__(self, pbx: IPBX, options: MenuSet, routes: list[tuple[str, tuple[str, str]]]) -> None:
        from pbx.features.attendant.catalogue import Catalogue

        self.pbx = pbx
        self.catalogue = Catalogue(pbx.store, options, routes)
        self.seeded: Deferred[None] | None = None

    def startService(self) -> None:  # noqa: N802 - twisted API
        """Register the application, mount the API, seed the store."""
        from pbx.features.attendant.api import AttendantAPI, openapi_paths
        from pbx.features.attendant.app import Attendant

        super().startService()
        self.pbx.register_application(Attendant(self.pbx, self.catalogue.current))
        self.pbx.mount_api("attendant", AttendantAPI(self.pbx, self.catalogue).resource(), openapi_paths())
        self.seeded = Deferred.fromCoroutine(self.catalogue.seed())
        self.seeded.addErrback(lambda f: self.log.failure("attendant: writing menus to the store failed", f))


def dialplan_routes(pbx: IPBX) -> list[tuple[str, tuple[str, str]]]:
    """
    The dialplan routes into the attendant with what they start in.

    :raises pbx.service.StartupError: for route arguments the attendant
        does not understand.  Whether the menu or schedule named exists is
        checked once the store is read (an API-made menu counts), and a
        missing one is logged as an error.
    """
    from pbx.calls.dialplan import ToApplication
    from pbx.errors import ConfigError, StartupError
    from pbx.features.attendant.options import route_target

    routes = []
    for i, route in enumerate(pbx.config.dialplan.routes):
        if not isinstance(route.action, ToApplication) or route.action.name != "attendant":
            continue
        key = f"dialplan[{i}].args"
        try:
            routes.append((key, route_target(route.action.args, key)))
        except ConfigError as e:
            raise StartupError(f"{e.key}: {e.problem}") from None
    return routes
