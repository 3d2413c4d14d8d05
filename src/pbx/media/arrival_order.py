"""
Incoming RTP in sequence order, as it arrives: what a recording is made of.

The jitter buffer (:mod:`pbx.media.jitter`) serves real-time playout: it
conceals a frame whose packet is not there in time and drops the packet
when it comes, and it stretches and skips frames to follow the network's
jitter.  All of that is right for what a listener hears and wrong for what
is kept: a voicemail message should hold every frame the caller sent,
however late it came.  :class:`ArrivalOrder` puts packets back in sequence
order the moment the missing one arrives, waits for a late packet only
while ``window`` packets are held behind it, and reports a gap (a frame to
conceal) only for a packet that never came within that window.
"""

from __future__ import annotations

from attrs import define, field

from pbx.media.rtp import RTPPacket, seq_delta

__all__ = ["ArrivalOrder", "Gap"]

#: A jump back by more than this restarts the stream (RFC 3550 §A.1).
MAX_DROPOUT = 3000


@define(frozen=True)
class Gap:
    """A packet that never came: conceal one frame in its place."""

    sequence: int


@define(eq=False)
class ArrivalOrder:
    """
    Reorders one RTP stream by sequence number.

    :param window: packets held behind a missing one before it is given up
        (5 at 20 ms: a packet may come up to 100 ms after its successor).
    :param max_gap: the most missing packets filled with gaps; a longer
        jump forward starts the stream afresh (no minute of concealment for
        a sender that skipped its numbers).
    :ivar late: packets that came after their place was given up, or twice.
    """

    window: int = 5
    max_gap: int = 50
    late: int = 0
    _next: int | None = None
    _ssrc: int | None = None
    _held: dict[int, RTPPacket] = field(factory=dict)

    def push(self, packet: RTPPacket) -> list[RTPPacket | Gap]:
        """Take one packet; what can be released now, in order."""
        out: list[RTPPacket | Gap] = []
        delta = 0 if self._next is None else seq_delta(packet.sequence, self._next)
        if self._next is None or packet.ssrc != self._ssrc or not -MAX_DROPOUT <= delta <= self.max_gap:
            # A new stream (or a restart): what is held goes first, as it is.
            out.extend(self.flush())
            self._next, self._ssrc, delta = packet.sequence, packet.ssrc, 0
        if delta < 0 or packet.sequence in self._held:
            self.late += 1
            return out
        self._held[packet.sequence] = packet
        self._release(out)
        while len(self._held) > self.window:
            out.append(Gap(self._next))  # type: ignore[arg-type]
            self._advance()
            self._release(out)
        return out

    def flush(self) -> list[RTPPacket | Gap]:
        """Everything held, in order, gaps included (the recording ends)."""
        out: list[RTPPacket | Gap] = []
        while self._held:
            self._release(out)
            if self._held:
                out.append(Gap(self._next))  # type: ignore[arg-type]
                self._advance()
        return out

    def _release(self, out: list[RTPPacket | Gap]) -> None:
        while self._next in self._held:
            out.append(self._held.pop(self._next))
            self._advance()

    def _advance(self) -> None:
        assert self._next is not None
        self._next = (self._next + 1) & 0xFFFF
