"""
What the recording feature offers other features, through
:meth:`pbx.interfaces.IPBX.provide` and :meth:`~pbx.interfaces.IPBX.lookup`.

A conference records its room's mix with :class:`IRoomRecordings`: the
file is written by the same crash-safe writer as a call's, its metadata
kept in the same store and listed by the same API (``kind: conference``).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = ["IRoomRecorder", "IRoomRecordings"]


class IRoomRecorder(Interface):
    """One running recording of a room's mix."""

    recording_id = Attribute("The recording's id, as the recordings API names it.")
    sample_rate = Attribute(
        "The rate :meth:`write` takes: the rate given to ``start``."
    )

    def write(pcm):  # type: ignore[no-untyped-def]
        """
        Append one frame of the mix.

        :param pcm: mono int16 samples at :attr:`sample_rate`.
        """

    def joined(party):  # type: ignore[no-untyped-def]
        """Note that ``party`` (an extension or caller id) was in the room."""

    def stop():  # type: ignore[no-untyped-def]
        """
        Finish the file (idempotent).

        :returns: a Deferred firing with the recording's final metadata, or
            None if the file could not be written.
        """


class IRoomRecordings(Interface):
    """Starts recordings of conference rooms."""

    def start(room, sample_rate, participants, started_by):  # type: ignore[no-untyped-def]
        """
        Start recording room ``room``.

        :param room: the room's number.
        :param sample_rate: 8000 or 16000: the rate frames will be written at.
        :param participants: who is in the room now (extensions or caller ids).
        :param started_by: ``config``, ``keys:<caller>`` or ``api:<user>``.
        :returns: an :class:`IRoomRecorder`.
        :raises RuntimeError: if recordings cannot be made now (the feature
            has not started).
        """
