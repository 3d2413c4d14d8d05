"""What the voicemail e-mail tests share: a fixed time and recording, and reading a message back."""

from __future__ import annotations

import email
from email.message import EmailMessage, Message
from email.policy import default as default_policy

RECEIVED = 1_714_566_896.0  # 2024-05-01 12:34:56 UTC
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4  # any bytes will do


def parse(raw: bytes) -> EmailMessage:
    """Parse message bytes back into a message, as a mail reader would."""
    message = email.message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def attachments(message: EmailMessage) -> list[Message]:
    """The attached parts of ``message``."""
    return list(message.iter_attachments())
