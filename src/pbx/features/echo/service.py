"""The echo service: registers the echo test and the digit read-back."""

from __future__ import annotations

from twisted.application.service import Service

from pbx.interfaces import IPBX


class EchoService(Service):
    """
    Registers the ``echo`` and ``readback`` applications when the PBX starts.

    :param pbx: the running PBX.
    """

    def __init__(self, pbx: IPBX) -> None:
        self.pbx = pbx

    def startService(self) -> None:  # noqa: N802 - twisted API
        """Register both applications."""
        from pbx.features.echo.apps import DigitReadback, EchoTest

        super().startService()
        for application in (EchoTest(), DigitReadback()):
            self.pbx.register_application(application)
