"""The ``attendant`` feature object the dropin :mod:`pbx.plugins.attendant` names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from twisted.plugin import IPlugin

from pbx.interfaces import IPBX, IFeature

if TYPE_CHECKING:
    from pbx.features.attendant.options import MenuSet
    from pbx.features.attendant.service import AttendantService


@implementer(IPlugin, IFeature)
class AttendantFeature:
    """The auto attendant: ``{app: attendant, args: {menu: main}}`` or ``{schedule: office}``."""

    name = "attendant"
    description = "Auto attendant: greeting menus, opening hours, dial by name, transfers."

    def parse_options(self, options: dict[str, Any]) -> MenuSet:
        """Validate menus, schedules and every reference between them."""
        from pbx.features.attendant.options import parse_options

        return parse_options(options)

    def make_service(self, pbx: IPBX, options: MenuSet) -> AttendantService:
        """A service that registers the application and the API."""
        from pbx.features.attendant.service import AttendantService, dialplan_routes

        return AttendantService(pbx, options, dialplan_routes(pbx))


attendant = AttendantFeature()
