"""Dropin: the ``conference`` feature (meet-me rooms and their REST API)."""

from pbx.features.conference.feature import conference

__all__ = ["conference"]
