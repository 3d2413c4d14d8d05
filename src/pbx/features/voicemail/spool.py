"""
The blocking half of the voicemail spool: file work that runs in pool
threads only, never on the reactor thread.

Files reach their final names only complete and durable: written (or
copied) under a temporary name, fsynced, renamed atomically, and the
directory fsynced.  See :mod:`pbx.features.voicemail.mailbox` for the layout.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import wave

from pbx.media.wav import fsync_directory

MAILBOX = re.compile(r"[0-9]{2,10}")
"""A mailbox number (an extension number): also a safe directory name."""
MESSAGE_ID = re.compile(r"[0-9]{13}-[0-9a-f]{6}")
"""A message id: milliseconds received, a dash, 6 hex digits."""


def fsync_file(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def place(source: str, target: str, keep_source: bool = False) -> None:
    """
    Put ``source`` at ``target`` durably: fsync, atomic rename, fsync the
    directory.  A copy (to a hidden temporary name, then renamed) is made
    when asked to keep the source or when the two are on different
    filesystems.
    """
    directory = os.path.dirname(target)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if not keep_source:
        fsync_file(source)
        try:
            os.replace(source, target)
        except OSError as e:
            if e.errno != errno.EXDEV:  # another filesystem: copy instead
                raise
        else:
            fsync_directory(directory)
            fsync_directory(os.path.dirname(source))
            return
    temp = os.path.join(
        directory, f".{os.path.basename(target)}.{secrets.token_hex(4)}.part"
    )
    try:
        shutil.copyfile(source, temp)
        fsync_file(temp)
        os.replace(temp, target)
    except BaseException:
        unlink(temp)
        raise
    fsync_directory(directory)
    if not keep_source:
        unlink(source)


def unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def wav_seconds(path: str) -> float:
    """Length of a WAV file from its header; 0 if it cannot be read."""
    try:
        with wave.open(path, "rb") as w:
            return w.getnframes() / w.getframerate()
    except (OSError, wave.Error, EOFError, ZeroDivisionError):
        return 0.0


def sweep(spool: str) -> tuple[int, dict[str, dict[str, float]]]:
    """
    Remove temporary files; list the message files.

    :returns: how many temporary files were removed, and for each mailbox
        directory its WAV files as ``{id: seconds}``.
    """
    removed = 0
    temp = os.path.join(spool, "tmp")
    os.makedirs(temp, mode=0o700, exist_ok=True)
    for name in os.listdir(temp):
        removed += unlink(os.path.join(temp, name))
    found: dict[str, dict[str, float]] = {}
    for mailbox in sorted(os.listdir(spool)):
        directory = os.path.join(spool, mailbox)
        if not MAILBOX.fullmatch(mailbox) or not os.path.isdir(directory):
            continue
        files: dict[str, float] = {}
        for sub in (directory, os.path.join(directory, "greetings")):
            if not os.path.isdir(sub):
                continue
            for name in os.listdir(sub):
                path = os.path.join(sub, name)
                if name.startswith(".") and name.endswith(".part"):
                    removed += unlink(path)
                elif (
                    sub == directory
                    and name.endswith(".wav")
                    and MESSAGE_ID.fullmatch(name[:-4])
                ):
                    files[name[:-4]] = wav_seconds(path)
        found[mailbox] = files
    return removed, found


def read_file(path: str) -> bytes | None:
    """The bytes of ``path``, or None if it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_new_file(path: str, data: bytes) -> None:
    """Write ``data`` to a new file (its directory made if missing)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "xb") as f:
        f.write(data)
