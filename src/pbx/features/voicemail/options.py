"""
The options of the ``voicemail`` feature (``features: voicemail:`` in the
configuration), validated into one frozen :class:`VoicemailOptions`.

Errors name the key relative to the feature's section (``max_seconds``,
``email.sender``); the plugin loader puts ``features.voicemail.`` in front.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from pbx.errors import ConfigError

__all__ = ["VoicemailOptions", "parse_voicemail_options"]

_NUMBER = re.compile(r"[0-9]{2,10}")
_KEYS = frozenset(
    {
        "spool",
        "mailboxes",
        "max_seconds",
        "min_seconds",
        "silence_seconds",
        "operator",
        "pin_min_length",
        "pin_attempts",
        "unsolicited_mwi",
        "email",
        "transcription",
        "delete_after_email",
    }
)


@frozen
class VoicemailOptions:
    """What the voicemail feature was configured with."""

    spool: str = "voicemail"
    """Where the audio lives; a relative path is under the PBX's ``state_dir``."""
    mailboxes: frozenset[str] | None = None
    """The extensions that have a mailbox; None for every extension."""
    max_seconds: float = 180.0
    """Longest message recorded."""
    min_seconds: float = 1.0
    """Shorter recordings are discarded (a caller who hung up at the beep)."""
    silence_seconds: float = 5.0
    """Silence that ends a recording."""
    operator: str = ""
    """The extension a caller reaches by pressing 0 during the greeting; "" for none."""
    pin_min_length: int = 4
    pin_attempts: int = 3
    """Wrong PINs one call may enter before it is hung up."""
    unsolicited_mwi: bool = True
    """Also NOTIFY registered phones that did not subscribe to message-summary."""
    email: Any = None
    """A :class:`pbx.features.voicemail.mailer.EmailConfig`, or None for no e-mail."""
    transcription: Any = None
    """An ``ITranscriber``, or None for no transcription."""
    delete_after_email: bool = False
    """Delete a message once it was e-mailed."""

    def has_mailbox(self, number: str) -> bool:
        """Whether extension ``number`` has a mailbox."""
        return self.mailboxes is None or number in self.mailboxes


def _number(value: Any, key: str, low: float, high: float, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, "must be a number")
    if not low <= value <= high:
        raise ConfigError(key, f"must be from {low:g} to {high:g}")
    return float(value)


def _whole(value: Any, key: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, "must be a whole number")
    if not low <= value <= high:
        raise ConfigError(key, f"must be from {low} to {high}")
    return value


def _mailboxes(value: Any) -> frozenset[str] | None:
    if value is None or value == "all":
        return None
    if not isinstance(value, list):
        raise ConfigError("mailboxes", 'must be "all" or a list of extension numbers')
    numbers = []
    for i, item in enumerate(value):
        if (
            isinstance(item, bool)
            or not isinstance(item, str | int)
            or not _NUMBER.fullmatch(str(item))
        ):
            raise ConfigError(f"mailboxes[{i}]", "an extension number is 2-10 digits")
        numbers.append(str(item))
    return frozenset(numbers)


def parse_voicemail_options(raw: Mapping[str, Any]) -> VoicemailOptions:
    """
    Validate the feature's options.

    :param raw: the mapping under ``features: voicemail:`` (without
        ``enabled``).
    :raises ConfigError: naming the first bad key and its problem.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("voicemail", "must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise ConfigError(unknown[0], "unknown key")
    spool = raw.get("spool", "voicemail")
    if not isinstance(spool, str) or not spool.strip():
        raise ConfigError("spool", "must be a directory path")
    operator = raw.get("operator", "")
    if isinstance(operator, int) and not isinstance(operator, bool):
        operator = str(operator)
    if not isinstance(operator, str) or (operator and not _NUMBER.fullmatch(operator)):
        raise ConfigError("operator", 'must be an extension number (2-10 digits) or ""')
    unsolicited = raw.get("unsolicited_mwi", True)
    if not isinstance(unsolicited, bool):
        raise ConfigError("unsolicited_mwi", "must be true or false")
    delete_after_email = raw.get("delete_after_email", False)
    if not isinstance(delete_after_email, bool):
        raise ConfigError("delete_after_email", "must be true or false")
    max_seconds = _number(raw.get("max_seconds"), "max_seconds", 5, 3600, 180.0)
    min_seconds = _number(raw.get("min_seconds"), "min_seconds", 0, 60, 1.0)
    if min_seconds >= max_seconds:
        raise ConfigError("min_seconds", "must be less than max_seconds")
    email = None
    if raw.get("email") is not None:
        from pbx.features.voicemail.mailer import parse_email_options

        email = parse_email_options(raw["email"], "email")
    if delete_after_email and email is None:
        raise ConfigError(
            "delete_after_email", "needs email: messages would only be deleted"
        )
    transcription = None
    if raw.get("transcription") is not None:
        from pbx.features.voicemail.transcribe import make_transcriber

        transcription = make_transcriber(raw["transcription"], "transcription")
    return VoicemailOptions(
        spool=spool,
        mailboxes=_mailboxes(raw.get("mailboxes")),
        max_seconds=max_seconds,
        min_seconds=min_seconds,
        silence_seconds=_number(
            raw.get("silence_seconds"), "silence_seconds", 0, 60, 5.0
        ),
        operator=operator,
        pin_min_length=_whole(raw.get("pin_min_length"), "pin_min_length", 4, 12, 4),
        pin_attempts=_whole(raw.get("pin_attempts"), "pin_attempts", 1, 10, 3),
        unsolicited_mwi=unsolicited,
        email=email,
        transcription=transcription,
        delete_after_email=delete_after_email,
    )
