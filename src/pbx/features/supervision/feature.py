"""The ``supervision`` feature object the dropin :mod:`pbx.plugins.supervision` names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from twisted.plugin import IPlugin

from pbx.interfaces import IPBX, IFeature

if TYPE_CHECKING:
    from pbx.features.supervision.options import SupervisionOptions
    from pbx.features.supervision.service import SupervisionService


@implementer(IPlugin, IFeature)
class SupervisionFeature:
    """Supervisors listen, whisper and barge: ``{match: "_*33X!", app: supervise}`` and the REST API."""

    name = "supervision"
    description = "Call supervision: listen, whisper and barge by feature code or API."

    def parse_options(self, options: dict[str, Any]) -> SupervisionOptions:
        """Validate the supervisors and the codes."""
        from pbx.features.supervision.options import parse_options

        return parse_options(options)

    def make_service(
        self, pbx: IPBX, options: SupervisionOptions
    ) -> SupervisionService:
        """The service that registers the application and the API."""
        from pbx.features.supervision.service import SupervisionService

        return SupervisionService(pbx, options)


supervision = SupervisionFeature()
