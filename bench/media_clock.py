"""
What ticking terminated calls costs in timers alone: a Twisted
``LoopingCall`` per call (how every RTP endpoint played out before) against
one :class:`pbx.media.media_clock.MediaClock` ticking them all.

Each of ``--calls`` subscribers does nothing but count its ticks, every
20 ms on the real reactor for ``--seconds``; the CPU time of the process
(``time.process_time``) divided by the ticks delivered is the scheduling
cost per call per tick.

Run from a source checkout::

    PYTHONPATH=src python bench/media_clock.py [--calls 300] [--seconds 5]
"""

from __future__ import annotations

import argparse
import time

from twisted.internet import reactor
from twisted.internet.task import LoopingCall

from pbx.media.media_clock import MediaClock


def main() -> None:
    """Run both ways, one after the other on the same reactor, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    results: list[tuple[str, float]] = []
    ticks = [0]

    def tick(count: int) -> None:
        ticks[0] += count

    def own_timers() -> tuple[object, object]:
        loops = [LoopingCall.withCount(tick) for _ in range(args.calls)]
        for loop in loops:
            loop.start(0.02, now=False)
        return loops, lambda: [loop.stop() for loop in loops]

    def shared_clock() -> tuple[object, object]:
        clock = MediaClock(reactor)
        removers = [clock.add(tick) for _ in range(args.calls)]
        return clock, lambda: [remove() for remove in removers]

    plans = [("a LoopingCall per call", own_timers), ("one MediaClock", shared_clock)]

    def run_next() -> None:
        if not plans:
            reactor.stop()
            return
        name, setup = plans.pop(0)
        ticks[0] = 0
        start = time.process_time()
        _, stop = setup()

        def finish() -> None:
            stop()  # type: ignore[operator]
            used = time.process_time() - start
            results.append((name, used / max(ticks[0], 1) * 1e6))
            reactor.callLater(0.1, run_next)

        reactor.callLater(args.seconds, finish)

    reactor.callWhenRunning(run_next)
    reactor.run()
    print("| timers | µs of CPU per call per 20 ms tick |")
    print("|---|---:|")
    for name, us in results:
        print(f"| {name} | {us:.2f} |")
    print(f"\n{args.calls} calls, {args.seconds:g} s each; command: "
          f"PYTHONPATH=src python bench/media_clock.py --calls {args.calls} --seconds {args.seconds:g}")


if __name__ == "__main__":
    main()
