"""Dropin: the ``attendant`` feature (auto attendant menus, schedules, dial by name)."""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.plugin import IPlugin

from pbx.interfaces import IFeature


class AttendantService(Service):
    """
    Runs the auto attendant in a PBX.

    Starting registers the ``attendant`` application and mounts the API at
    once, then writes the config file's menus to the store in the
    background (calls meanwhile use the file's menus).

    :param pbx: the running PBX.
    :param options: the :class:`pbx.apps.attendant.options.MenuSet` of the file.
    :param routes: ``(key, target)`` of every dialplan route into the attendant.
    """

    log = Logger()

    def __init__(self, pbx: Any, options: Any, routes: list[tuple[str, tuple[str, str]]]) -> None:
        from pbx.apps.attendant.catalogue import Catalogue

        self.pbx = pbx
        self.catalogue = Catalogue(pbx.store, options, routes)
        self.seeded: Any = None

    def startService(self) -> None:  # noqa: N802 - twisted API
        """Register the application, mount the API, seed the store."""
        from twisted.internet.defer import Deferred

        from pbx.apps.attendant.api import AttendantAPI, openapi_paths
        from pbx.apps.attendant.app import Attendant

        super().startService()
        self.pbx.register_application(Attendant(self.pbx, self.catalogue.current))
        self.pbx.mount_api("attendant", AttendantAPI(self.pbx, self.catalogue).resource(), openapi_paths())
        self.seeded = Deferred.fromCoroutine(self.catalogue.seed())
        self.seeded.addErrback(lambda f: self.log.failure("attendant: writing menus to the store failed", f))


def _routes(pbx: Any) -> list[tuple[str, tuple[str, str]]]:
    """
    The dialplan routes into the attendant with what they start in.

    :raises pbx.errors.StartupError: for route arguments the attendant
        does not understand.  Whether the menu or schedule named exists is
        checked once the store is read (an API-made menu counts), and a
        missing one is logged as an error.
    """
    from pbx.apps.attendant.options import route_target
    from pbx.errors import ConfigError, StartupError

    routes = []
    for i, route in enumerate(pbx.config.dialplan.routes):
        if getattr(route.action, "name", None) != "attendant":
            continue
        key = f"dialplan[{i}].args"
        try:
            routes.append((key, route_target(route.action.args, key)))
        except ConfigError as e:
            raise StartupError(f"{e.key}: {e.problem}") from None
    return routes


@implementer(IPlugin, IFeature)
class AttendantFeature:
    """The auto attendant: ``{app: attendant, args: {menu: main}}`` or ``{schedule: office}``."""

    name = "attendant"
    description = "Auto attendant: greeting menus, opening hours, dial by name, transfers."

    def parse_options(self, options: dict[str, Any]) -> Any:
        """Validate menus, schedules and every reference between them."""
        from pbx.apps.attendant.options import parse_options

        return parse_options(options)

    def make_service(self, pbx: Any, options: Any) -> Service:
        """A service that registers the application and the API."""
        return AttendantService(pbx, options, _routes(pbx))


attendant = AttendantFeature()
