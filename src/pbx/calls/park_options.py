"""
The ``park:`` section of the configuration, validated into a frozen value.

```yaml
park:
  code: "70"          # transfer a call here (or key ##70#) to park it
  slots: "71-79"      # the slots; dialling one retrieves the call parked there
  timeout: 60         # seconds before an unretrieved call rings the parker back
  announce: true      # say the slot in the parker's NOTIFY and call events
  operator: "1000"    # rung when the parker does not answer the recall
```

No ``park:`` section: calls are not parked.  Pure: no Twisted.  Every
problem is a :class:`~pbx.errors.ConfigError` naming the dotted key.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen

from pbx.errors import ConfigError

__all__ = ["MAX_SLOTS", "ParkConfig", "parse_park"]

#: The most slots one range may hold.
MAX_SLOTS = 100
_KEYS = {"code", "slots", "timeout", "announce", "operator"}


@frozen
class ParkConfig:
    """
    Call park.

    :ivar code: the number a call is transferred to to park it.
    :ivar slots: the slot numbers, in the order they are handed out.
    :ivar timeout: seconds a call stays parked before its parker is rung back.
    :ivar announce: whether the slot is given in the parker's final NOTIFY.
    :ivar operator: the extension rung when the parker does not take the
        recall ("" for none: the parked call is then hung up).
    """

    code: str = "70"
    slots: tuple[str, ...] = tuple(str(n) for n in range(71, 80))
    timeout: int = 60
    announce: bool = True
    operator: str = ""


def _text(value: Any, key: str, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(key, "must be a string of digits")
    text = str(value).strip()
    if text and not text.isdigit():
        raise ConfigError(key, f"must be digits, not {text[:20]!r}")
    return text


def parse_slots(value: Any, key: str = "park.slots") -> tuple[str, ...]:
    """
    ``"71-79"`` (a range of numbers of one length) or a list of numbers.

    :raises ConfigError: anything else, or more than :data:`MAX_SLOTS` slots.
    """
    if isinstance(value, list):
        slots = tuple(_text(v, f"{key}[{i}]", "") for i, v in enumerate(value))
        if not all(slots):
            raise ConfigError(key, "a slot may not be empty")
    else:
        text = _text_range(value, key)
        first, _, last = text.partition("-")
        if not last:
            slots = (first,)
        else:
            if len(first) != len(last) or int(last) < int(first):
                raise ConfigError(
                    key, f"{text!r}: the range must go up, with numbers of one length"
                )
            width = len(first)
            slots = tuple(str(n).zfill(width) for n in range(int(first), int(last) + 1))
    if not slots:
        raise ConfigError(key, "needs at least one slot")
    if len(slots) > MAX_SLOTS:
        raise ConfigError(key, f"at most {MAX_SLOTS} slots")
    if len(set(slots)) != len(slots):
        raise ConfigError(key, "a slot is named twice")
    return slots


def _text_range(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(key, 'must be a range like "71-79" or a list of numbers')
    text = str(value).replace(" ", "")
    first, _, last = text.partition("-")
    if not first.isdigit() or (last and not last.isdigit()):
        raise ConfigError(key, f'{text[:20]!r} is not a range like "71-79"')
    return text


def parse_park(raw: Any) -> ParkConfig | None:
    """
    The ``park:`` section, or None when there is none.

    :raises ConfigError: an unknown key or a bad value, naming the key.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("park", "must be a mapping")
    for k in raw:
        if str(k) not in _KEYS:
            raise ConfigError(f"park.{k}", "unknown key")
    code = _text(raw.get("code"), "park.code", "70")
    if not code:
        raise ConfigError("park.code", "may not be empty")
    slots = (
        ParkConfig().slots
        if raw.get("slots") is None
        else parse_slots(raw.get("slots"))
    )
    if code in slots:
        raise ConfigError("park.code", f"{code!r} is also a slot")
    timeout = raw.get("timeout", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise ConfigError("park.timeout", "must be a whole number of seconds")
    if not 5 <= timeout <= 3600:
        raise ConfigError("park.timeout", "must be between 5 and 3600")
    announce = raw.get("announce", True)
    if not isinstance(announce, bool):
        raise ConfigError("park.announce", "must be true or false")
    operator = _text(raw.get("operator"), "park.operator", "")
    return ParkConfig(code, slots, timeout, announce, operator)
