"""
The blocking half of the recordings' storage: file work that runs in pool
threads only (through :meth:`pbx.interfaces.IPBX.run_in_thread`).

A recording is written by :class:`pbx.media.wav.WavWriter` under a hidden
``.part`` name beside its final one and renamed into place, fsynced, only
when complete.  A ``.part`` file left by a crash (kill -9, power loss) is
repaired here: its RIFF and data sizes are set from the file's length (the
header was written with zero sizes) and it is placed under its final name,
so the audio up to the crash is kept.
"""

from __future__ import annotations

import os
import re
import struct

from pbx.media.wav import fsync_directory

__all__ = [
    "RECORDING_ID",
    "read_file",
    "remove_stale_parts",
    "repair_part",
    "unlink",
    "wav_bytes",
]

RECORDING_ID = re.compile(r"[0-9]{13}-[0-9a-f]{8}")
"""A recording id: milliseconds started, a dash, 8 hex digits; also its file name."""

_HEADER = 44  # RIFF, fmt and data chunk headers of a canonical PCM WAV file


def repair_part(part: str, final: str) -> int:
    """
    Turn an interrupted recording's ``.part`` file into a valid WAV at
    ``final``: sizes from the file's length, fsync, atomic rename.

    :returns: the bytes of audio kept (0 when there was none: the part is removed).
    :raises FileNotFoundError: there is no such part file.
    """
    size = os.path.getsize(part)
    if size <= _HEADER:
        unlink(part)
        return 0
    with open(part, "r+b") as f:
        header = f.read(_HEADER)
        if header[:4] != b"RIFF" or header[36:40] != b"data":
            raise ValueError(f"{part}: not a PCM WAV file written by pbx")
        block = struct.unpack_from("<H", header, 32)[0] or 1
        data = (size - _HEADER) // block * block
        f.truncate(_HEADER + data)
        f.seek(4)
        f.write(struct.pack("<I", 36 + data))
        f.seek(40)
        f.write(struct.pack("<I", data))
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, final)
    fsync_directory(os.path.dirname(final) or ".")
    return data


def wav_bytes(path: str) -> int:
    """The audio bytes of a finished recording (its size less the header); 0 if missing."""
    try:
        return max(0, os.path.getsize(path) - _HEADER)
    except OSError:
        return 0


def read_file(path: str) -> bytes | None:
    """The bytes of ``path``, or None if it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def unlink(path: str) -> bool:
    """Remove ``path``; False if it was not there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def remove_stale_parts(directory: str, before: float, keep: set[str]) -> int:
    """
    Remove temporary files no recording owns: ``.part`` files not named in
    ``keep`` and last written before ``before`` (a live recording's file is
    written every half second).  Such a file is left when pbx died between
    creating a recording's file and storing its metadata.

    :returns: how many were removed.
    """
    removed = 0
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if not (name.startswith(".") and name.endswith(".part")) or name in keep:
            continue
        try:
            if os.path.getmtime(path) < before:
                removed += unlink(path)
        except FileNotFoundError:
            continue
    return removed
