"""Dropin: the ``attendant`` feature (auto attendant menus, schedules, dial by name)."""

from pbx.features.attendant.feature import attendant

__all__ = ["attendant"]
