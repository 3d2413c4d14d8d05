"""
The ``pickup_groups:`` section of the configuration: who may pick up whose
ringing calls with the group pickup code (:mod:`pbx.calls.pickup`).

```yaml
pickup_groups:
  sales: ["1001", "1002"]
```

Pure: no Twisted.  Every problem is a :class:`~pbx.errors.ConfigError`
naming the dotted key.
"""

from __future__ import annotations

from typing import Any

from pbx.errors import ConfigError

__all__ = ["parse_pickup_groups"]


def parse_pickup_groups(raw: Any) -> dict[str, tuple[str, ...]]:
    """
    The ``pickup_groups:`` section: group name -> member extensions.

    :raises ConfigError: not a mapping of lists of extension numbers.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("pickup_groups", "must be a mapping of group names to lists")
    groups = {}
    for name, members in raw.items():
        key = f"pickup_groups.{name}"
        if not isinstance(members, list) or not members:
            raise ConfigError(key, "must be a non-empty list of extensions")
        numbers = []
        for i, member in enumerate(members):
            text = str(member) if isinstance(member, str | int) else ""
            if isinstance(member, bool) or not text.isdigit():
                raise ConfigError(f"{key}[{i}]", "must be an extension number")
            numbers.append(text)
        groups[str(name)] = tuple(numbers)
    return groups
