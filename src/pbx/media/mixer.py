"""
The audio mixer of a conference: N participants in, N mixes out, every tick.

Each 20 ms tick the conference hands :meth:`Mixer.mix` the frame each
participant sent (16-bit linear PCM, already decoded and at the mixer's
sample rate) and gets back, for every participant, what that participant
hears: the sum of everyone else.

The work is O(N), not O(N²): the frames are stacked into one ``(N, samples)``
int32 array, the total is summed once, and each participant's own
contribution is subtracted from it (``total - contribution``, one vectorised
subtraction for all rows).  Per participant:

* gain scales what the participant *contributes* (an input gain, applied
  before summing), in Q12 fixed point so that unity gain is exact;
* a muted participant contributes nothing but still hears the others;
* a participant with no frame this tick (packet loss, DTX, not yet started)
  contributes silence.

The sums are int32 and saturate to int16 by clipping.  Clipping is the
simplest limiter and exact below full scale; a soft limiter would colour
every loud mix and is left for when someone asks for it.

Pure numpy: nothing here knows about Twisted, RTP or codecs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np
from attrs import define, field

ParticipantId: TypeAlias = Any
"""Any hashable value that names a participant (a call id, a leg...)."""

GAIN_SHIFT = 12
"""Gains are Q12 fixed point: ``sample * round(gain * 4096) >> 12``."""
UNITY = 1 << GAIN_SHIFT
MAX_GAIN = 8.0
"""The largest input gain (+18 dB): keeps ``sample * gain`` inside int32."""
MAX_PARTICIPANTS = 8192
"""Most participants one mixer carries: ``N * 32768 * MAX_GAIN`` fits int32."""
SAMPLE_RATES = (8000, 16000, 32000, 48000)
INT16_MIN = -32768
INT16_MAX = 32767


def _gain_q(gain: float) -> int:
    """A gain as a Q12 integer.

    :raises ValueError: if the gain is negative, above :data:`MAX_GAIN` or NaN.
    """
    if not 0.0 <= gain <= MAX_GAIN:
        raise ValueError(f"gain must be between 0 and {MAX_GAIN}, not {gain!r}")
    return round(gain * UNITY)


@define(eq=False)
class Mixer:
    """
    An N-way mixer that removes each participant's own voice from its mix.

    :param sample_rate: samples per second of every frame in and out.
    :param frame_ms: length of one tick's frame, in milliseconds.
    """

    sample_rate: int = 8000
    frame_ms: int = 20
    samples_per_frame: int = field(init=False)
    _ids: list[ParticipantId] = field(init=False, factory=list)
    _index: dict[ParticipantId, int] = field(init=False, factory=dict)
    _gains: dict[ParticipantId, int] = field(init=False, factory=dict)
    _muted: set[ParticipantId] = field(init=False, factory=set)
    # Rebuilt by _layout() whenever membership, gain or mute changes, never per tick.
    _q: np.ndarray = field(init=False)
    _unity: bool = field(init=False, default=True)
    _buffer: np.ndarray = field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.sample_rate not in SAMPLE_RATES:
            raise ValueError(
                f"sample_rate must be one of {SAMPLE_RATES}, not {self.sample_rate!r}"
            )
        if self.frame_ms <= 0 or self.sample_rate * self.frame_ms % 1000:
            raise ValueError(
                f"frame_ms {self.frame_ms!r} is not a whole number of samples"
            )
        self.samples_per_frame = self.sample_rate * self.frame_ms // 1000
        self._layout()

    # -- membership ---------------------------------------------------------

    @property
    def participants(self) -> tuple[ParticipantId, ...]:
        """The participants, in the order they joined."""
        return tuple(self._ids)

    def __len__(self) -> int:
        """The number of participants."""
        return len(self._ids)

    def __contains__(self, participant: object) -> bool:
        """Whether ``participant`` is in the conference."""
        return participant in self._index

    def add(
        self, participant: ParticipantId, gain: float = 1.0, muted: bool = False
    ) -> None:
        """Add a participant; it is mixed from the next tick on.

        :param participant: any hashable id, unique within this mixer.
        :param gain: input gain, 0 to :data:`MAX_GAIN` (1.0 leaves it unchanged).
        :param muted: whether it joins muted (it still hears the others).
        :raises ValueError: if it is already present, the gain is out of range
            or the mixer is full.
        """
        if participant in self._index:
            raise ValueError(f"participant {participant!r} is already in the mixer")
        if len(self._ids) >= MAX_PARTICIPANTS:
            raise ValueError(f"a mixer carries at most {MAX_PARTICIPANTS} participants")
        q = _gain_q(gain)
        self._ids.append(participant)
        self._gains[participant] = q
        if muted:
            self._muted.add(participant)
        self._layout()

    def remove(self, participant: ParticipantId) -> None:
        """Remove a participant; it is neither mixed nor given a mix from now on.

        :raises KeyError: if it is not in the mixer.
        """
        if participant not in self._index:
            raise KeyError(participant)
        self._ids.remove(participant)
        del self._gains[participant]
        self._muted.discard(participant)
        self._layout()

    def set_gain(self, participant: ParticipantId, gain: float) -> None:
        """Change a participant's input gain.

        :raises KeyError: if it is not in the mixer.
        :raises ValueError: if the gain is out of range.
        """
        if participant not in self._index:
            raise KeyError(participant)
        self._gains[participant] = _gain_q(gain)
        self._layout()

    def gain(self, participant: ParticipantId) -> float:
        """A participant's input gain (as stored: rounded to 1/4096).

        :raises KeyError: if it is not in the mixer.
        """
        return self._gains[participant] / UNITY

    def set_muted(self, participant: ParticipantId, muted: bool) -> None:
        """Mute or unmute a participant; its gain is kept for when it unmutes.

        :raises KeyError: if it is not in the mixer.
        """
        if participant not in self._index:
            raise KeyError(participant)
        if muted:
            self._muted.add(participant)
        else:
            self._muted.discard(participant)
        self._layout()

    def is_muted(self, participant: ParticipantId) -> bool:
        """Whether a participant is muted.

        :raises KeyError: if it is not in the mixer.
        """
        if participant not in self._index:
            raise KeyError(participant)
        return participant in self._muted

    def _layout(self) -> None:
        """Rebuild the per-row arrays after a membership, gain or mute change."""
        ids = self._ids
        self._index = {p: i for i, p in enumerate(ids)}
        muted = self._muted
        q = [0 if p in muted else self._gains[p] for p in ids]
        self._q = np.array(q, dtype=np.int32).reshape(-1, 1)
        # Muted rows are zeroed in mix(), so only the others' gains matter here.
        self._unity = all(self._gains[p] == UNITY for p in ids if p not in muted)
        self._buffer = np.zeros((len(ids), self.samples_per_frame), dtype=np.int32)

    # -- the tick -----------------------------------------------------------

    def mix(
        self, frames: Mapping[ParticipantId, np.ndarray | None]
    ) -> dict[ParticipantId, np.ndarray]:
        """Mix one tick.

        :param frames: each participant's frame for this tick, a 1-D int16
            array of :attr:`samples_per_frame` samples.  A participant that is
            absent or maps to ``None`` contributes silence; ids that are not
            participants (one just removed, say) are ignored.
        :returns: for every participant, the int16 frame it hears: the sum of
            every other participant's contribution, clipped to int16.  The
            arrays are new each tick; the caller may keep them.
        :raises ValueError: if a frame is not int16 or has the wrong length.
        """
        ids = self._ids
        if not ids:
            return {}
        buffer = self._buffer
        muted = self._muted
        n = self.samples_per_frame
        get = frames.get
        for row, participant in enumerate(ids):
            frame = get(participant)
            if frame is None or participant in muted:
                buffer[row] = 0
            elif frame.dtype != np.int16 or frame.shape != (n,):
                raise ValueError(
                    f"frame of {participant!r} must be int16 of shape ({n},), "
                    f"not {frame.dtype} {frame.shape}"
                )
            else:
                buffer[row] = frame
        if self._unity:
            contributions = buffer
        else:
            contributions = buffer * self._q
            contributions >>= GAIN_SHIFT
        total = contributions.sum(axis=0, dtype=np.int32)
        heard = np.subtract(total, contributions)  # row i: everyone but i
        np.clip(heard, INT16_MIN, INT16_MAX, out=heard)
        return dict(zip(ids, heard.astype(np.int16), strict=True))
