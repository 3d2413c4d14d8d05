"""Dropin: the ``paging`` feature (page groups, multicast paging and intercom)."""

from pbx.features.paging.feature import paging

__all__ = ["paging"]
