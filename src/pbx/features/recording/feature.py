"""The ``recording`` feature object the dropin :mod:`pbx.plugins.recording` names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from twisted.plugin import IPlugin

from pbx.interfaces import IPBX, IFeature

if TYPE_CHECKING:
    from pbx.features.recording.options import RecordingOptions
    from pbx.features.recording.service import RecordingService


@implementer(IPlugin, IFeature)
class RecordingFeature:
    """Call recording: relayed two-party calls to stereo or mixed WAV, by policy, keys or the API."""

    name = "recording"
    description = "Call recording: always-on per extension, trunk or route, on demand by keys or API, pause, retention, REST API."

    def parse_options(self, options: dict[str, Any]) -> RecordingOptions:
        """Validate into :class:`~pbx.features.recording.options.RecordingOptions`."""
        from pbx.features.recording.options import parse_recording_options

        return parse_recording_options(options)

    def make_service(self, pbx: IPBX, options: RecordingOptions) -> RecordingService:
        """The service that records calls."""
        from pbx.features.recording.service import RecordingService

        return RecordingService(pbx, options)


recording = RecordingFeature()
