"""Tests for :mod:`pbx.media.arrival_order`: RTP back in sequence order for recordings."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.arrival_order import ArrivalOrder, Gap
from pbx.media.rtp import RTPPacket


def packet(seq: int, ssrc: int = 0x1234) -> RTPPacket:
    """A PCMU packet numbered ``seq`` (timestamp 160 per packet)."""
    return RTPPacket(0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc, bytes([seq & 0xFF]) * 160)


def numbers(items: list[RTPPacket | Gap]) -> list[int | str]:
    """Sequence numbers released, "gap N" for a gap."""
    return [f"gap {i.sequence}" if isinstance(i, Gap) else i.sequence for i in items]


class ArrivalOrderTests(SynchronousTestCase):
    """Packets come out in sequence order, late ones included; gaps only for packets that never came."""

    def push_all(self, order: ArrivalOrder, seqs: list[int]) -> list[int | str]:
        out: list[RTPPacket | Gap] = []
        for seq in seqs:
            out.extend(order.push(packet(seq)))
        return numbers(out)

    def test_in_order(self) -> None:
        """Packets in order are released at once."""
        order = ArrivalOrder()
        self.assertEqual(self.push_all(order, [7, 8, 9]), [7, 8, 9])
        self.assertEqual(order.flush(), [])

    def test_reordered(self) -> None:
        """A packet that comes after its successors is put back in its place."""
        order = ArrivalOrder()
        self.assertEqual(self.push_all(order, [1, 3, 4]), [1])
        self.assertEqual(numbers(order.push(packet(2))), [2, 3, 4])
        self.assertEqual(order.late, 0)

    def test_late_within_window(self) -> None:
        """However late in time, a packet that comes within ``window`` successors is kept (what playout would drop)."""
        order = ArrivalOrder(window=5)
        self.assertEqual(self.push_all(order, [1, 3, 4, 5, 6, 7]), [1])
        self.assertEqual(numbers(order.push(packet(2))), [2, 3, 4, 5, 6, 7])

    def test_lost(self) -> None:
        """A packet missing while more than ``window`` wait behind it becomes a gap; if it comes later it is dropped."""
        order = ArrivalOrder(window=3)
        self.assertEqual(self.push_all(order, [1, 3, 4, 5]), [1])
        self.assertEqual(numbers(order.push(packet(6))), ["gap 2", 3, 4, 5, 6])
        self.assertEqual(order.push(packet(2)), [])
        self.assertEqual(order.late, 1)

    def test_duplicate(self) -> None:
        """A packet twice (held or released) is counted late and kept once."""
        order = ArrivalOrder()
        self.assertEqual(self.push_all(order, [1, 1, 3, 3, 2]), [1, 2, 3])
        self.assertEqual(order.late, 2)

    def test_wraparound(self) -> None:
        """Sequence numbers wrap from 65535 to 0."""
        order = ArrivalOrder()
        self.assertEqual(self.push_all(order, [65534, 0, 65535, 1]), [65534, 65535, 0, 1])

    def test_flush(self) -> None:
        """At the end, what is held comes out in order with its gaps."""
        order = ArrivalOrder()
        self.assertEqual(self.push_all(order, [1, 3, 5]), [1])
        self.assertEqual(numbers(order.flush()), ["gap 2", 3, "gap 4", 5])
        self.assertEqual(order.flush(), [])

    def test_long_jump_restarts(self) -> None:
        """A jump beyond ``max_gap`` starts afresh rather than filling it with gaps."""
        order = ArrivalOrder(max_gap=50)
        self.assertEqual(self.push_all(order, [1, 2, 400, 401]), [1, 2, 400, 401])
        self.assertEqual(self.push_all(order, [420]), [])
        self.assertEqual(numbers(order.flush())[:2], ["gap 402", "gap 403"])

    def test_new_source_restarts(self) -> None:
        """A new SSRC releases what the old one left and starts at its own first packet."""
        order = ArrivalOrder()
        self.assertEqual(self.push_all(order, [10, 12]), [10])
        out = numbers(order.push(packet(500, ssrc=0x9999)))
        self.assertEqual(out, ["gap 11", 12, 500])
