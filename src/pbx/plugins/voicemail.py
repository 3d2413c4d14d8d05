"""Dropin: the ``voicemail`` feature (mailboxes, message waiting, REST API)."""

from pbx.features.voicemail.feature import voicemail

__all__ = ["voicemail"]
