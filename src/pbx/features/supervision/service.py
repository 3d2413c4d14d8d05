"""
The supervision service: what the feature runs inside a PBX.

Import-light like the dropin that leads here: the application and the API
are imported when the service starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.application.service import Service

from pbx.interfaces import IPBX

if TYPE_CHECKING:
    from pbx.features.supervision.desk import Supervision
    from pbx.features.supervision.options import SupervisionOptions


class SupervisionService(Service):
    """
    Registers the ``supervise`` application and mounts the API when it
    starts; stopping ends every monitor (the calls are relayed as before).

    :param pbx: the running PBX.
    :param options: who may supervise whom, and the codes.
    """

    def __init__(self, pbx: IPBX, options: SupervisionOptions) -> None:
        self.pbx = pbx
        self.options = options
        self.supervision: Supervision | None = None

    def startService(self) -> None:  # noqa: N802 - twisted API
        """Register the application and mount ``/api/v1/supervision/``."""
        from pbx.features.supervision.api import SupervisionAPI, openapi_paths
        from pbx.features.supervision.app import Supervise
        from pbx.features.supervision.desk import Supervision
        from pbx.media.media_clock import MediaClock

        super().startService()
        self.supervision = Supervision(
            self.pbx, self.options, MediaClock(self.pbx.clock)
        )
        self.pbx.register_application(Supervise(self.pbx, self.supervision))
        self.pbx.mount_api(
            "supervision",
            SupervisionAPI(self.pbx, self.supervision).resource(),
            openapi_paths(),
        )

    def stopService(self) -> Any:  # noqa: N802 - twisted API
        """Stop every monitor."""
        if self.supervision is not None:
            self.supervision.stop_all()
        return super().stopService()
