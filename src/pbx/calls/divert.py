"""
Diverters: where a call to an extension goes when nobody will answer it.

A feature (voicemail) adds a diverter with
:meth:`pbx.interfaces.IPBX.add_diverter`.  When a call to an extension is
about to fail and no forward of the extension applies, the diverters are
asked in the order they were added, with the extension's number and why
the call fails; the first that names an application wins, and the caller is
answered by pbx and handed to that application.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from pbx.calls.dialplan import ToApplication

#: Why a call is about to fail: every phone busy (or declined), the ring
#: timeout passed, the extension is in do-not-disturb, or it has no phone
#: registered (or its phones could not be reached).
REASONS = ("busy", "no_answer", "dnd", "unavailable")

Diverter = Callable[[str, str], Any]

log = Logger()


def ask_diverters(diverters: list[Diverter], callee: str, reason: str) -> ToApplication | None:
    """
    The first answer of ``diverters`` for a call to ``callee`` failing for
    ``reason``, or None.

    A diverter that raises, or answers something other than a
    :class:`~pbx.calls.dialplan.ToApplication` or None, is logged and the
    call fails as it would have without diverters.
    """
    for diverter in diverters:
        try:
            action = diverter(callee, reason)
        except Exception:
            log.failure("diverter {diverter!r} failed for {callee} ({reason})",
                        diverter=diverter, callee=callee, reason=reason)
            return None
        if action is None:
            continue
        if not isinstance(action, ToApplication):
            log.warn("diverter {diverter!r} answered {action!r}, not a ToApplication",
                     diverter=diverter, action=action)
            return None
        return action
    return None
