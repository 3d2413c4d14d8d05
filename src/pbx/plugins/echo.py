"""Dropin: the ``echo`` feature (echo test and digit read-back applications)."""

from pbx.features.echo.feature import echo

__all__ = ["echo"]
