"""Paging and intercom: page groups with auto-answer and multicast, and intercom calls."""
