"""Dropin: the ``echo`` feature (echo test and digit read-back applications)."""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from twisted.application.service import Service
from twisted.plugin import IPlugin

from pbx.errors import ConfigError
from pbx.interfaces import IFeature


class _Registering(Service):
    """Registers the applications with the PBX when it starts."""

    def __init__(self, pbx: Any) -> None:
        self.pbx = pbx

    def startService(self) -> None:  # noqa: N802 - twisted API
        from pbx.apps.echo import DigitReadback, EchoTest

        super().startService()
        for application in (EchoTest(), DigitReadback()):
            self.pbx.register_application(application)


@implementer(IPlugin, IFeature)
class EchoFeature:
    """The echo test (route a number to ``app: echo``) and ``app: readback``."""

    name = "echo"
    description = "Echo test and DTMF read-back: prove audio and digits end to end."

    def parse_options(self, options: dict[str, Any]) -> None:
        """No options."""
        if options:
            raise ConfigError(sorted(options)[0], "unknown key")

    def make_service(self, pbx: Any, options: None) -> Service:
        """A service that registers the applications."""
        return _Registering(pbx)


echo = EchoFeature()
