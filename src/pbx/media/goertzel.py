"""
In-band DTMF detection: key presses found in the audio itself.

:class:`GoertzelDetector` takes 16-bit linear PCM in blocks of any size and
reports one :class:`~pbx.media.dtmf.DigitEvent` (``source="inband"``) per
key press, when the press ends.

Each analysis window is 12.75 ms (102 samples at 8 kHz, 204 at 16 kHz: the
classic block, whose resolution separates the DTMF frequencies), and the
windows overlap by half, so the detector decides every 6.4 ms.  For each
window it computes the Goertzel energy of the eight DTMF frequencies and of
their second harmonics (the squared magnitude of one DFT term at a
non-integer bin, computed for all windows of a block at once as a matrix
product instead of the sample-by-sample recurrence, which numpy cannot
vectorise), and the window holds a key when all of these hold:

* each tone is at least ``min_level_dbm0`` (-30 dBm0);
* the strongest low-group (row) tone is ``relative_peak_db`` (8 dB) above the
  other rows, and the same for the high group (columns);
* the twist (high-group level minus low-group level) is between
  ``-normal_twist_db`` (-8 dB: the low group louder, as after line loss) and
  ``+reverse_twist_db`` (+4 dB), the ITU-T Q.24 ranges.  In a window this
  short each tone leaks into the other's bin, so a window's twist is only
  known to about 1 dB: keys are reliably found within -7..+3 dB;
* the two tones carry at least ``min_tone_fraction`` (70 %) of the window's
  energy: speech, music and noise spread theirs;
* neither tone has a second harmonic stronger than ``harmonic_db`` (10 dB)
  below it: pure tones have none, voiced speech has many.  Some columns lie
  within a bin of a row's harmonic (1336 Hz is 58 Hz from 2 x 697 Hz) and
  leak into it, so what the other tone of the key can leak there (at the
  worst phase, anywhere in Q.24's +-1.5 % tolerance) is allowed on top.

A press starts when ``min_duration_ms`` (40 ms) worth of windows hold the
same key and ends after ``min_pause_ms`` (40 ms) worth of windows without
it.  With the 70 % energy test a window only holds a key if the tone fills
most of it, so at any alignment a 40 ms tone is accepted and a tone of 25 ms
or less is not (Q.24 asks for 40 and about 23 ms), and an interruption of up
to 10 ms does not split a press.  The reported duration is accurate to about
one window step (6.4 ms).

Pure numpy; nothing here knows about Twisted, RTP or codecs.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from attrs import define, field, validators

from pbx.media.dtmf import DigitEvent

__all__ = ["FREQUENCIES", "KEYPAD", "GoertzelDetector"]

ROWS = (697.0, 770.0, 852.0, 941.0)
COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
FREQUENCIES = ROWS + COLUMNS
"""The DTMF frequencies in Hz: four rows (low group), four columns (high)."""
KEYPAD = "123A456B789C*0#D"
"""The key at row ``r`` and column ``c`` is ``KEYPAD[4 * r + c]``."""

WINDOW_SECONDS = 102 / 8000
FULL_SCALE_DBM0 = 3.14
"""A full-scale sine in 16-bit PCM is +3.14 dBm0 (G.711 A-law, ITU-T G.711)."""


def _ratio(db: float) -> float:
    """A power ratio from decibels."""
    return float(10.0 ** (db / 10.0))


@lru_cache(maxsize=8)
def _tables(sample_rate: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """
    The projection basis and the harmonic leakage table for one window.

    The basis has a cosine and a sine column for each DTMF frequency and each
    second harmonic: shape (window, 32).  The leakage table gives, for each
    key, the most energy a tone of the key (anywhere in +-1.5 %, any phase)
    leaks into the bin of the *other* tone's second harmonic, relative to
    what it puts in its own bin: shape (16, 2), [row harmonic, column
    harmonic].  Both are shared by every detector of that rate, read-only.
    """
    times = np.arange(window) / sample_rate
    frequencies = np.array(FREQUENCIES + tuple(2 * f for f in FREQUENCIES))
    phase = 2 * np.pi * np.outer(times, frequencies)
    basis = np.hstack([np.cos(phase), np.sin(phase)])
    detune = np.linspace(0.985, 1.015, 31)
    phases = np.linspace(0, np.pi, 8, endpoint=False)
    own = (window / 2) ** 2
    leak = np.zeros((16, 2))
    for key in range(16):
        row, column = divmod(key, 4)
        sources = ((COLUMNS[column], 8 + row), (ROWS[row], 12 + column))
        for slot, (source, harmonic) in enumerate(sources):
            frequency = np.multiply.outer(detune * source, times)
            tones = np.cos(2 * np.pi * frequency[:, None, :] + phases[:, None])
            projection = tones @ basis[:, [harmonic, harmonic + 16]]
            leak[key, slot] = (projection**2).sum(axis=-1).max() / own
    basis.flags.writeable = False
    leak.flags.writeable = False
    return basis, leak


@define(eq=False)
class GoertzelDetector:
    """
    Finds DTMF key presses in 16-bit linear PCM audio.

    :param sample_rate: samples per second, at least 8000.
    :param min_level_dbm0: the weakest tone accepted, per tone.
    :param relative_peak_db: how far each tone must stand above the other
        frequencies of its group.
    :param normal_twist_db: how much louder the low group may be.
    :param reverse_twist_db: how much louder the high group may be.
    :param min_tone_fraction: the share of a window's energy the two tones
        must carry.
    :param harmonic_db: how far below each tone its second harmonic must be.
    :param min_duration_ms: the shortest press reported.
    :param min_pause_ms: the silence that ends a press.
    """

    sample_rate: int = field(default=8000, validator=validators.ge(8000))
    min_level_dbm0: float = -30.0
    relative_peak_db: float = 8.0
    normal_twist_db: float = 8.0
    reverse_twist_db: float = 4.0
    min_tone_fraction: float = field(
        default=0.7, validator=[validators.gt(0.0), validators.le(1.0)]
    )
    harmonic_db: float = 10.0
    min_duration_ms: float = 40.0
    min_pause_ms: float = 40.0

    window: int = field(init=False)
    step: int = field(init=False)
    _basis: np.ndarray = field(init=False)
    _threshold: float = field(init=False)
    _quiet: float = field(init=False)
    _leak_list: list[list[float]] = field(init=False)
    _reverse_twist: float = field(init=False)
    _normal_twist: float = field(init=False)
    _fraction: float = field(init=False)
    _peak: float = field(init=False)
    _harmonic: float = field(init=False)
    _min_hits: int = field(init=False)
    _max_misses: int = field(init=False)
    _buffer: np.ndarray = field(init=False)
    _position: int = field(init=False, default=0)
    # The key being tracked (-1: none), the first and last windows that held
    # it, how many did, and how many windows since the last did not.
    _key: int = field(init=False, default=-1)
    _first: int = field(init=False, default=0)
    _last: int = field(init=False, default=0)
    _hits: int = field(init=False, default=0)
    _misses: int = field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self.window = round(WINDOW_SECONDS * self.sample_rate)
        self.step = self.window // 2
        self._basis, leak = _tables(self.sample_rate, self.window)
        self._leak_list = leak.tolist()
        self._reverse_twist = _ratio(self.reverse_twist_db)
        self._normal_twist = _ratio(self.normal_twist_db)
        self._fraction = self.min_tone_fraction * self.window
        self._peak = _ratio(self.relative_peak_db)
        self._harmonic = _ratio(self.harmonic_db)
        amplitude = 32768.0 * 10.0 ** ((self.min_level_dbm0 - FULL_SCALE_DBM0) / 20)
        self._threshold = (amplitude * self.window / 2) ** 2
        # Cauchy-Schwarz: a window w puts at most |w|^2 * (|cos|^2 + |sin|^2)
        # into a bin.  Below this energy no window of a block can reach the
        # threshold in any row or column bin, so the block holds no key.
        gains = (self._basis[:, :16] ** 2).sum(axis=0) + (self._basis[:, 16:] ** 2).sum(axis=0)
        self._quiet = self._threshold / float(gains[:8].max())
        # Windows wholly inside the shortest press (or pause), at the worst
        # alignment; partly covered windows fail the energy-fraction test.
        self._min_hits = max(2, self._windows_within(self.min_duration_ms))
        self._max_misses = max(2, self._windows_within(self.min_pause_ms) + 1)
        self._buffer = np.zeros(0)

    def _windows_within(self, ms: float) -> int:
        """How many window positions always fit inside ``ms`` milliseconds."""
        samples = ms * self.sample_rate / 1000
        return max(0, math.floor((samples - self.window) / self.step))

    def feed(self, samples: np.ndarray) -> list[DigitEvent]:
        """
        Take the next block of audio.

        :param samples: 16-bit linear PCM samples (any length, any integer or
            float dtype holding int16-range values).
        :returns: the presses that ended in this block, in order.
        """
        data = np.asarray(samples, dtype=np.float64).ravel()
        if self._buffer.size:
            data = np.concatenate((self._buffer, data))
        count = (
            (data.size - self.window) // self.step + 1
            if data.size >= self.window
            else 0
        )
        if count <= 0:
            self._buffer = data
            return []
        # Most audio is quieter than any tone: skip the projections then.
        if float(data @ data) < self._quiet:
            keys = [-1] * count
        else:
            windows = np.lib.stride_tricks.as_strided(
                data,
                shape=(count, self.window),
                strides=(data.strides[0] * self.step, data.strides[0]),
                writeable=False,
            )
            keys = self._classify(windows)
        self._buffer = data[count * self.step :].copy()
        return self._track(keys)

    def flush(self) -> list[DigitEvent]:
        """
        End the audio: report a press still in progress, forget the rest.

        :returns: the press in progress, if it was long enough.
        """
        done = []
        if self._key >= 0 and self._hits >= self._min_hits:
            done.append(self._event())
        self._key = -1
        self._buffer = np.zeros(0)
        return done

    def _classify(self, windows: np.ndarray) -> list[int]:
        """The key each window holds, as a KEYPAD index, or -1."""
        projections = windows @ self._basis
        energy = projections[:, :16] ** 2 + projections[:, 16:] ** 2
        totals = np.einsum("ij,ij->i", windows, windows)
        # A handful of windows per call: plain floats beat more numpy calls.
        return [
            self._window_key(bins, total)
            for bins, total in zip(energy.tolist(), totals.tolist(), strict=True)
        ]

    def _window_key(self, bins: list[float], total: float) -> int:
        """The key one window holds (energies of the 16 bins), or -1."""
        rows, columns = bins[0:4], bins[4:8]
        row_energy, column_energy = max(rows), max(columns)
        threshold = self._threshold
        if row_energy < threshold or column_energy < threshold:
            return -1
        if (
            column_energy > row_energy * self._reverse_twist
            or row_energy > column_energy * self._normal_twist
            # For pure tones 2 * (row + column) == window * total.
            or 2 * (row_energy + column_energy) < self._fraction * total
            or sorted(rows)[2] * self._peak > row_energy
            or sorted(columns)[2] * self._peak > column_energy
        ):
            return -1
        row, column = rows.index(row_energy), columns.index(column_energy)
        key = 4 * row + column
        # Second harmonics, less what the key's other tone leaks there.
        row_leak, column_leak = self._leak_list[key]
        harmonic = self._harmonic
        if math.sqrt(bins[8 + row]) > math.sqrt(row_energy / harmonic) + math.sqrt(
            column_energy * row_leak
        ) or math.sqrt(bins[12 + column]) > math.sqrt(
            column_energy / harmonic
        ) + math.sqrt(row_energy * column_leak):
            return -1
        return key

    def _track(self, keys: list[int]) -> list[DigitEvent]:
        """Run the per-window key decisions through the press state machine."""
        done: list[DigitEvent] = []
        for key in keys:
            position = self._position
            self._position += 1
            if self._key < 0:
                if key >= 0:
                    self._start(key, position)
            elif key == self._key:
                self._hits += 1
                self._last = position
                self._misses = 0
            else:
                self._misses += 1
                if self._hits < self._min_hits:
                    # Not yet a press: another key restarts, two gaps drop it.
                    if key >= 0:
                        self._start(key, position)
                    elif self._misses >= 2:
                        self._key = -1
                elif self._misses >= self._max_misses:
                    done.append(self._event())
                    self._key = -1
                    if key >= 0:
                        self._start(key, position)
        return done

    def _start(self, key: int, position: int) -> None:
        """Begin tracking a key first held at window ``position``."""
        self._key = key
        self._first = self._last = position
        self._hits = 1
        self._misses = 0

    def _event(self) -> DigitEvent:
        """The press being tracked, as a digit event."""
        # A window holds the key once the tone fills min_tone_fraction of it,
        # so the holding windows start (1 - f) * window before the tone and
        # the last one starts f * window before its end; their starts span
        # the tone's length plus (1 - 2f) * window, less one step on average.
        span = (self._last - self._first + 1) * self.step + (
            2 * self.min_tone_fraction - 1
        ) * self.window
        milliseconds = round(span * 1000 / self.sample_rate)
        return DigitEvent(KEYPAD[self._key], milliseconds, "inband")
