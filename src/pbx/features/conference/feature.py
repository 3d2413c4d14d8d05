"""The ``conference`` feature object the dropin :mod:`pbx.plugins.conference` names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from twisted.plugin import IPlugin

from pbx.interfaces import IPBX, IFeature

if TYPE_CHECKING:
    from pbx.features.conference.options import ConferenceOptions
    from pbx.features.conference.service import ConferenceService


@implementer(IPlugin, IFeature)
class ConferenceFeature:
    """Meet-me rooms: ``{app: conference, args: {room: "800"}}``, or the number dialled is the room."""

    name = "conference"
    description = "Conference rooms: PINs, moderators, mute, lock, hold music and the REST API."

    def parse_options(self, options: dict[str, Any]) -> ConferenceOptions:
        """Validate the rooms."""
        from pbx.features.conference.options import parse_options

        return parse_options(options)

    def make_service(self, pbx: IPBX, options: ConferenceOptions) -> ConferenceService:
        """The service that runs the rooms."""
        from pbx.features.conference.service import ConferenceService

        return ConferenceService(pbx, options)


conference = ConferenceFeature()
