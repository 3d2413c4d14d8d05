"""Dropin: the ``supervision`` feature (listen, whisper and barge)."""

from pbx.features.supervision.feature import supervision

__all__ = ["supervision"]
