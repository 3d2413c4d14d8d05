"""
The conference service: what the feature runs inside a PBX.

Import-light like the dropin that leads here: the rooms, application and
API are imported when the service starts.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from twisted.application.service import Service
from twisted.logger import Logger

from pbx.interfaces import IPBX

if TYPE_CHECKING:
    from pbx.features.conference.options import ConferenceOptions
    from pbx.features.conference.room import Rooms


class ConferenceService(Service):
    """
    Runs the conference rooms in a PBX.

    Starting registers the ``conference`` application and mounts the API at
    once, and asks the PBX to write the generated sounds (join and leave
    tones, hold music) under ``<state_dir>/conference`` before it is ready.

    :param pbx: the running PBX.
    :param options: the configured rooms.
    """

    log = Logger()

    def __init__(self, pbx: IPBX, options: ConferenceOptions) -> None:
        self.pbx = pbx
        self.options = options
        self.rooms: Rooms | None = None

    def sound_directory(self) -> str:
        """Where the generated sounds go."""
        return os.path.join(self.pbx.config.state_dir, "conference", "sounds")

    def startService(self) -> None:  # noqa: N802 - twisted API
        """Register the application, mount the API, write the sounds before ``pbx ready``."""
        from pbx.features.conference.api import ConferenceAPI, openapi_paths
        from pbx.features.conference.app import Conference
        from pbx.features.conference.room import Rooms
        from pbx.features.conference.sounds import Sounds, write_sounds

        super().startService()
        sounds = Sounds(self.sound_directory())
        self.rooms = Rooms(self.options, sounds, self.pbx.clock)
        self.pbx.register_application(Conference(self.rooms, sounds, self.pbx.lockout))
        self.pbx.mount_api("conference", ConferenceAPI(self.pbx, self.rooms).resource(), openapi_paths())
        self.pbx.before_ready(lambda: self.pbx.run_in_thread(write_sounds, sounds.directory))
