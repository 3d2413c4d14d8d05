"""
A room's recording on the conference side: a listener on the room's
:class:`~pbx.media.mix.Mix` that hands each round's whole mix to the
recording feature's :class:`~pbx.features.recording.interfaces.IRoomRecorder`.

The conference knows the recording feature only through that interface
(looked up with :meth:`pbx.interfaces.IPBX.lookup`).  When the room moves
to a mix at another rate (a wideband participant comes or goes) the tape
follows it, resampling to the rate the recording started at, so one file
keeps one rate.
"""

from __future__ import annotations

import numpy as np
from attrs import define, field

from pbx.features.recording.interfaces import IRoomRecorder
from pbx.media.mix import Mix
from pbx.media.resample import Resampler

__all__ = ["AlreadyRecording", "NoRecorder", "NotRecording", "RoomTape"]


class NoRecorder(Exception):
    """Rooms cannot be recorded: the recording feature is not enabled."""


class AlreadyRecording(Exception):
    """The room is being recorded already."""


class NotRecording(Exception):
    """The room is not being recorded."""


@define(eq=False)
class RoomTape:
    """
    One recording of a room.

    :param recorder: the recording feature's recorder.
    :param started_by: ``config``, ``keys:<caller>`` or ``api:<user>``.
    """

    recorder: IRoomRecorder
    started_by: str
    frames: int = field(default=0, init=False)
    """Frames handed to the recorder so far."""
    _mix: Mix | None = field(default=None, init=False)
    _resample: Resampler | None = field(default=None, init=False)

    @property
    def recording_id(self) -> str:
        """The recording's id in the recordings API."""
        return str(self.recorder.recording_id)

    def attach(self, mix: Mix) -> None:
        """Listen to ``mix`` (and no longer to the one before)."""
        self.detach()
        rate = self.recorder.sample_rate
        self._resample = (
            None if mix.sample_rate == rate else Resampler(mix.sample_rate, rate)
        )
        self._mix = mix
        mix.listen(self, self._hear)

    def detach(self) -> None:
        """Stop listening."""
        if self._mix is not None:
            self._mix.unlisten(self)
            self._mix = None

    def _hear(self, pcm: np.ndarray) -> None:
        if self._resample is not None:
            pcm = self._resample(pcm)
        self.recorder.write(pcm)
        self.frames += 1
