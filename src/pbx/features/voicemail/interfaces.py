"""
What voicemail offers, and what it is given.

:class:`IGreetings` is voicemail's contract with other features: the
attendant finds it with :meth:`pbx.interfaces.IPBX.lookup` to say a
person's recorded name.  :class:`ITranscriber` is what a speech engine
provides to voicemail.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IGreetings(Interface):
    """The greetings people recorded for their mailboxes."""

    def greeting_path(mailbox, kind):  # type: ignore[no-untyped-def]
        """
        The WAV file of ``mailbox``'s greeting of ``kind`` (``"unavailable"``,
        ``"busy"`` or ``"name"``), or None when none was recorded.
        """


class ITranscriber(Interface):
    """
    Turns a recorded voicemail into text (engines in
    :mod:`pbx.features.voicemail.transcribe`).
    """

    name = Attribute("The engine's name in the configuration: 'pocketsphinx', 'vosk'.")

    def transcribe(path):  # type: ignore[no-untyped-def]
        """
        Transcribe the WAV file at ``path``; returns a
        :class:`pbx.features.voicemail.transcribe.Transcript` (text,
        confidence 0..1, engine).

        Blocking (it reads the file and runs the recogniser): call it in a
        thread.  Safe to call from several threads at once.

        :raises ValueError: if the file is not a WAV the engine reads.
        :raises OSError: if it cannot be read.
        """
