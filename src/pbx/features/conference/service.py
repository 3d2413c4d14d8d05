"""
The conference service: what the feature runs inside a PBX.

Import-light like the dropin that leads here: the rooms, application and
API are imported when the service starts.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from pbx.errors import ConfigError
from pbx.interfaces import IPBX

if TYPE_CHECKING:
    from pbx.features.conference.options import ConferenceOptions
    from pbx.features.conference.room import Rooms


class ConferenceService(Service):
    """
    Runs the conference rooms in a PBX.

    Starting registers the ``conference`` application and mounts the API at
    once, and asks the PBX to write the generated sounds (join, leave and
    recording tones, hold music) and the music-on-hold classes rooms name
    under ``<state_dir>/conference`` before it is ready.  Rooms find the
    recording feature, when it is enabled, with :meth:`IPBX.lookup`.

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
        from pbx.features.conference.sounds import Sounds, write_music, write_sounds
        from pbx.features.recording.interfaces import IRoomRecordings

        super().startService()
        classes = self._music_classes()
        sounds = Sounds(self.sound_directory())
        pbx = self.pbx
        self.rooms = Rooms(self.options, sounds, pbx.clock, recordings=lambda: pbx.lookup(IRoomRecordings))
        self.pbx.register_application(Conference(self.rooms, sounds, self.pbx.lockout))
        self.pbx.mount_api("conference", ConferenceAPI(self.pbx, self.rooms).resource(), openapi_paths())
        self.pbx.before_ready(lambda: self.pbx.run_in_thread(write_sounds, sounds.directory))
        for name, music in classes.items():
            self.pbx.before_ready(
                lambda name=name, music=music: self.pbx.run_in_thread(write_music, sounds.directory, name, music.pcm))

    def _music_classes(self) -> dict[str, Any]:
        """
        The music-on-hold classes rooms name (``music_class``), by name.

        :raises ConfigError: naming the room's key when ``moh:`` has no such class.
        """
        moh = self.pbx.config.moh
        known = moh.classes if moh is not None and moh.enabled else {}
        wanted = {}
        for number, room in sorted(self.options.rooms.items()):
            if not room.music_class:
                continue
            if room.music_class not in known:
                raise ConfigError(f"features.conference.rooms.{number}.music_class",
                                  f"no class {room.music_class!r} in moh.classes")
            wanted[room.music_class] = known[room.music_class]
        return wanted

    def stopService(self) -> Deferred[Any]:  # noqa: N802 - twisted API
        """Finish the rooms' running recordings."""
        super().stopService()
        finishing = [room.stop_recording() for room in self.rooms.recorded()] if self.rooms else []
        return DeferredList(finishing, consumeErrors=True)
