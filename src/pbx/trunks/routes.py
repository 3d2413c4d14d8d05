"""
Outbound routes: which trunks a dialled number goes out through, in which
order, as which number and with which caller ID.

A ``trunk:`` route names its trunks in order.  When the rate table prices
the number on some of them, the cheapest go first (least-cost routing; the
longest prefix of each trunk's table wins, unpriced trunks keep their place
after the priced ones).  With ``share: weighted``, trunks of the same price
are ordered at random by their ``weight`` instead (load sharing).
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from attrs import frozen

from pbx.calls.dialplan import ToTrunks
from pbx.trunks.config import RateTable
from pbx.trunks.numbers import E164, sent_number
from pbx.trunks.trunk import Trunk

__all__ = ["Attempt", "caller_number", "fails_over", "plan"]


@frozen
class Attempt:
    """
    One try of a call on one trunk.

    :ivar price: per minute, from the rate table; None when it has none.
    """

    trunk: Trunk
    dialled: str
    sent: str
    caller_id: str
    price: float | None = None

    def cost(self, seconds: float) -> float:
        """What ``seconds`` of talk cost on this attempt (per started second, rounded to 1/10000)."""
        if self.price is None or seconds <= 0:
            return 0.0
        return round(self.price * seconds / 60.0, 4)


def caller_number(extension_caller_id: str) -> str:
    """An extension's ``caller_id`` when it is a number (E.164) to present outside; else ""."""
    text = extension_caller_id.strip()
    return text if E164.fullmatch(text) else ""


def plan(action: ToTrunks, dialled: str, trunks: Mapping[str, Trunk], rates: RateTable, *,
         extension_caller_id: str = "", rng: random.Random | None = None) -> list[Attempt]:
    """
    The attempts for ``dialled``, in the order they are tried.

    Caller ID: the extension's number if it has one, else the route's, else the trunk's.
    """
    sent = sent_number(dialled, action.strip, action.prepend)
    own = caller_number(extension_caller_id)
    rows = []
    for index, name in enumerate(action.trunks):
        trunk = trunks[name]
        price = rates.price(name, sent)
        rows.append((price, index, trunk))
    if any(price is not None for price, _, _ in rows):
        rows.sort(key=lambda row: (row[0] is None, row[0] or 0.0, row[1]))
    if action.weighted:
        rows = _weighted(rows, rng or random.Random())
    return [
        Attempt(trunk, dialled, sent, own or action.caller_id or trunk.config.caller_id, price)
        for price, _, trunk in rows
    ]


def _weighted(rows: list[tuple[float | None, int, Trunk]], rng: random.Random) -> list[tuple[float | None, int, Trunk]]:
    """Within each run of equal price, order trunks at random, each drawn with odds of its weight."""
    out: list[tuple[float | None, int, Trunk]] = []
    i = 0
    while i < len(rows):
        j = i
        while j < len(rows) and rows[j][0] == rows[i][0]:
            j += 1
        group = rows[i:j]
        while group:
            weights = [max(row[2].config.weight, 0) for row in group]
            if not any(weights):
                out += group
                break
            pick = rng.choices(range(len(group)), weights=weights)[0]
            out.append(group.pop(pick))
        i = j
    return out


def fails_over(status: int) -> bool:
    """
    Whether a call that got ``status`` from a trunk goes on to the next one
    (RFC 3261 §21): no answer from the carrier (408), a server failure
    (5xx, 503 among them), or a challenge the trunk's credentials could not
    answer (401, 407: the trunk, not the callee, is refused).  The callee's
    own answers (404, 486, 603 ...) are final.
    """
    return status in (401, 407, 408) or 500 <= status <= 599
