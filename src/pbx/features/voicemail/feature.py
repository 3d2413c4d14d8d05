"""The ``voicemail`` feature object the dropin :mod:`pbx.plugins.voicemail` names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from twisted.plugin import IPlugin

from pbx.interfaces import IPBX, IFeature

if TYPE_CHECKING:
    from pbx.features.voicemail.options import VoicemailOptions
    from pbx.features.voicemail.service import VoicemailService


@implementer(IPlugin, IFeature)
class VoicemailFeature:
    """Voicemail: ``app: voicemail`` (leave a message), ``app: voicemail-main`` (listen)."""

    name = "voicemail"
    description = "Voicemail: mailboxes, greetings, message waiting lights, e-mail and the REST API."

    def parse_options(self, options: dict[str, Any]) -> VoicemailOptions:
        """Validate into :class:`~pbx.features.voicemail.options.VoicemailOptions`."""
        from pbx.features.voicemail.options import parse_voicemail_options

        return parse_voicemail_options(options)

    def make_service(self, pbx: IPBX, options: VoicemailOptions) -> VoicemailService:
        """The service that runs voicemail."""
        from pbx.features.voicemail.service import VoicemailService

        return VoicemailService(pbx, options)


voicemail = VoicemailFeature()
