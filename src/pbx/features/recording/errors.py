"""What the recording service answers when a live call cannot do what was asked."""

from __future__ import annotations

__all__ = ["NotRecording"]


class NotRecording(Exception):
    """The call asked for is not up (404), or not in the state the action needs (409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
