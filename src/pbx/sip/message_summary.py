"""
``application/simple-message-summary`` bodies (RFC 3842 §5): what a
``message-summary`` NOTIFY tells a phone about its mailbox.

Pure code: building the body the PBX sends, and parsing one back (for tests
and for anything that reads what a phone was told).
"""

from __future__ import annotations

from attrs import field, frozen

__all__ = [
    "CONTENT_TYPE",
    "MessageSummary",
    "MessageSummaryError",
    "message_summary_body",
    "parse_message_summary",
]

CONTENT_TYPE = "application/simple-message-summary"

#: RFC 3842 §5.2 message-context-class values (from RFC 3458 §3.2), lower case.
MESSAGE_CLASSES = frozenset(
    {"voice-message", "fax-message", "pager-message", "multimedia-message", "text-message", "none"}
)


def message_summary_body(waiting: bool, new: int, old: int, account: str | None = None) -> bytes:
    """
    A message summary for voice messages (RFC 3842 §5.2).

    :param waiting: ``Messages-Waiting: yes`` when true (new messages wait).
    :param new: new voice messages.
    :param old: old (heard) voice messages.
    :param account: the ``Message-Account`` URI (where the phone calls to
        hear them); left out when None.
    :raises ValueError: on a negative count, or an account that would break
        the body's lines.
    """
    if new < 0 or old < 0:
        raise ValueError("message counts cannot be negative")
    lines = [f"Messages-Waiting: {'yes' if waiting else 'no'}"]
    if account is not None:
        if "\r" in account or "\n" in account or not account.strip():
            raise ValueError("Message-Account must be one non-empty line")
        lines.append(f"Message-Account: {account}")
    # §5.2: new/old, then (urgent new/urgent old); we have no urgent messages.
    lines.append(f"Voice-Message: {new}/{old} (0/0)")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


@frozen
class MessageSummary:
    """
    A parsed message summary.

    :ivar waiting: the ``Messages-Waiting`` status.
    :ivar account: the ``Message-Account`` URI, or None.
    :ivar counts: message class (lower case, e.g. ``voice-message``) ->
        ``(new, old, urgent_new, urgent_old)``.
    """

    waiting: bool
    account: str | None = None
    counts: dict[str, tuple[int, int, int, int]] = field(factory=dict)

    @property
    def voice(self) -> tuple[int, int]:
        """(new, old) voice messages; (0, 0) when the body has no Voice-Message line."""
        new, old, _, _ = self.counts.get("voice-message", (0, 0, 0, 0))
        return new, old


class MessageSummaryError(ValueError):
    """A body that is not a valid simple message summary."""


def parse_message_summary(body: bytes) -> MessageSummary:
    """
    Parse an ``application/simple-message-summary`` body (RFC 3842 §5.2).

    Names are matched case-insensitively (ABNF literals); the optional
    message headers after an empty line, and unknown lines, are ignored.

    :raises MessageSummaryError: without a valid ``Messages-Waiting`` line
        first, or on a malformed count line.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageSummaryError("not UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    waiting: bool | None = None
    account: str | None = None
    counts: dict[str, tuple[int, int, int, int]] = {}
    for number, line in enumerate(lines):
        if not line.strip():
            if waiting is None:
                continue
            break  # §5.2: opt-msg-headers follow an empty line
        name, colon, value = line.partition(":")
        if not colon:
            raise MessageSummaryError(f"line {number + 1}: no colon")
        name, value = name.strip().lower(), value.strip()
        if waiting is None:
            if name != "messages-waiting" or value.lower() not in ("yes", "no"):
                raise MessageSummaryError("the first line must be Messages-Waiting: yes|no")
            waiting = value.lower() == "yes"
        elif name == "message-account":
            account = value
        elif name in MESSAGE_CLASSES:
            counts[name] = _counts(value)
    if waiting is None:
        raise MessageSummaryError("empty body")
    return MessageSummary(waiting, account, counts)


def _counts(value: str) -> tuple[int, int, int, int]:
    """``new/old [(urgent_new/urgent_old)]`` (RFC 3842 §5.2 msg-summary-line)."""
    main, paren, rest = value.partition("(")
    new, old = _pair(main)
    urgent = (0, 0)
    if paren:
        if not rest.rstrip().endswith(")"):
            raise MessageSummaryError(f"unbalanced parenthesis in {value!r}")
        urgent = _pair(rest.rstrip()[:-1])
    return new, old, urgent[0], urgent[1]


def _pair(text: str) -> tuple[int, int]:
    left, slash, right = text.partition("/")
    left, right = left.strip(), right.strip()
    if not slash or not _digits(left) or not _digits(right):
        raise MessageSummaryError(f"bad message counts {text.strip()!r}")
    return int(left), int(right)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()
