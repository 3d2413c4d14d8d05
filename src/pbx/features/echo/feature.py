"""The ``echo`` feature object the dropin :mod:`pbx.plugins.echo` names."""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from twisted.plugin import IPlugin

from pbx.errors import ConfigError
from pbx.features.echo.service import EchoService
from pbx.interfaces import IPBX, IFeature


@implementer(IPlugin, IFeature)
class EchoFeature:
    """The echo test (route a number to ``app: echo``) and ``app: readback``."""

    name = "echo"
    description = "Echo test and DTMF read-back: prove audio and digits end to end."

    def parse_options(self, options: dict[str, Any]) -> None:
        """No options."""
        if options:
            raise ConfigError(sorted(options)[0], "unknown key")

    def make_service(self, pbx: IPBX, options: None) -> EchoService:
        """A service that registers the applications."""
        return EchoService(pbx)


echo = EchoFeature()
