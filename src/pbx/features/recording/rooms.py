"""
Recordings of conference rooms: the provider of
:class:`~pbx.features.recording.interfaces.IRoomRecordings`.

A room's recording is one mono WAV file of the room's mix (everyone), at
the rate the conference gives.  It is kept exactly like a call's: written
by :class:`~pbx.media.wav.WavWriter` to a temporary file renamed into place
when complete, its metadata stored when it starts (``status: recording``,
so :meth:`~pbx.features.recording.library.Library.recover` repairs it after
a crash) and again when it ends, and listed by the recordings API with
``kind: conference``, the room, and every participant who was in it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from attrs import define, field

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.features.recording.interfaces import IRoomRecorder, IRoomRecordings
from pbx.features.recording.library import Library
from pbx.media.wav import WavWriter

__all__ = ["RoomRecorder", "RoomRecordings"]

#: Stands for a thread pool: file work goes through ``IPBX.run_in_thread``.
_NO_POOL: Any = object()


@implementer(IRoomRecorder)
@define(eq=False)
class RoomRecorder:
    """
    One room's running recording.

    :param library: where the metadata and the file go.
    :param writer: the file.
    :param meta: the metadata, kept up to date.
    :param stored: the first write of the metadata.
    """

    log = Logger()

    library: Library
    writer: WavWriter
    meta: dict[str, Any]
    stored: Deferred[None]
    _done: Deferred[dict[str, Any] | None] | None = field(default=None)

    @property
    def recording_id(self) -> str:
        """The recording's id."""
        return str(self.meta["id"])

    @property
    def sample_rate(self) -> int:
        """The rate frames are written at."""
        return self.writer.sample_rate

    def write(self, pcm: np.ndarray) -> None:
        """Append a frame of the mix (dropped once stopped)."""
        if self._done is None:
            self.writer.write(pcm)

    def joined(self, party: str) -> None:
        """Add ``party`` to the participants (once)."""
        if party and party not in self.meta["participants"]:
            self.meta["participants"].append(party)

    def stop(self) -> Deferred[dict[str, Any] | None]:
        """Finish the file and store the final metadata; a second call gets the same result."""
        if self._done is None:
            self.meta["ended"] = self.library.clock.seconds()
            self._done = Deferred.fromCoroutine(self._finish())
        done: Deferred[dict[str, Any] | None] = Deferred()
        self._done.addBoth(_pass_on, done)
        return done

    async def _finish(self) -> dict[str, Any] | None:
        meta = self.meta
        try:
            await self.stored  # the first write of the metadata lands first
            await self.writer.close()
        except Exception:
            self.log.failure(
                "recording {id} of room {room} failed", id=meta["id"], room=meta["room"]
            )
            await self.library.store.delete_item("recording", "", meta["id"])
            return None
        await self.library.finished(meta)
        self.log.info(
            "recording {id} of room {room} complete: {duration}s",
            id=meta["id"],
            room=meta["room"],
            duration=meta["duration"],
        )
        return meta


def _pass_on(result: Any, done: Deferred[Any]) -> Any:
    """Fire ``done`` with ``result`` too, and keep it."""
    done.callback(result)
    return result


@implementer(IRoomRecordings)
@define(eq=False)
class RoomRecordings:
    """
    Starts room recordings in the recording feature's library.

    :param library: the recordings kept (None until the service has started).
    :param in_thread: :meth:`pbx.interfaces.IPBX.run_in_thread`.
    """

    log = Logger()

    library: Callable[[], Library | None]
    in_thread: Callable[..., Deferred[Any]]

    def start(
        self, room: str, sample_rate: int, participants: list[str], started_by: str
    ) -> RoomRecorder:
        """
        Start recording ``room``'s mix.

        :raises RuntimeError: if the recording feature has not started.
        :raises ValueError: if ``sample_rate`` is not 8000 or 16000.
        """
        library = self.library()
        if library is None:
            raise RuntimeError("the recording feature is not running")
        recording_id = library.new_id()
        in_thread = self.in_thread
        reactor: Any = library.clock  # file work goes to in_thread, not its threads
        writer = WavWriter(
            library.path(recording_id),
            reactor,
            threadpool=_NO_POOL,
            sample_rate=sample_rate,
            channels=1,
            defer_to_thread_pool=lambda reactor, pool, f, *args: in_thread(f, *args),
        )
        meta: dict[str, Any] = {
            "id": recording_id,
            "kind": "conference",
            "room": room,
            "participants": [p for p in dict.fromkeys(participants) if p],
            "call_id": "",
            "caller": "",
            "callee": room,
            "started": library.clock.seconds(),
            "ended": None,
            "duration": 0.0,
            "format": "mixed",
            "rate": sample_rate,
            "channels": 1,
            "codec": "",
            "status": "recording",
            "started_by": started_by,
            "pauses": [],
            "part": os.path.basename(writer.temp_path),
        }
        stored = Deferred.fromCoroutine(
            library.put(dict(meta, participants=list(meta["participants"])))
        )
        stored.addErrback(
            lambda f: self.log.failure(
                "storing recording {id} failed", f, id=recording_id
            )
        )
        self.log.info(
            "recording {id} of room {room} started by {who}",
            id=recording_id,
            room=room,
            who=started_by,
        )
        return RoomRecorder(library, writer, meta, stored)
