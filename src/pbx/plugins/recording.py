"""Dropin: the ``recording`` feature (call recording and its REST API)."""

from pbx.features.recording.feature import recording

__all__ = ["recording"]
