"""
Benchmark of the conference mixer (not a test).

Run: ``PYTHONPATH=src python bench/mixer.py [--sizes 3,10,50,100] [--ticks 2000]``

For each sample rate (8 and 16 kHz) and conference size N it times
:meth:`pbx.media.mixer.Mixer.mix`, one 20 ms tick at a time, on this one
core, and reports:

* µs per tick with every participant at unity gain (the fast path), and with
  a few participants at other gains (the multiply path, the worst case);
* the share of one core that one such conference needs in real time
  (``µs per tick / 20 000 µs``);
* participants per core: how many participants, in conferences of this size,
  one core mixes in real time (``N × 20 000 / µs per tick``, worst case).

Each tick gets fresh-looking input: frames from a pool of random frames, ~10 %
of participants silent (no frame), one muted.  Times are the best of
``--repeats`` runs of ``--ticks`` ticks (the least disturbed by other work on
the machine); the median is printed alongside.  Decoding, encoding and RTP are
not included: this is the mixing alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
)

from pbx.media.mixer import Mixer  # noqa: E402

TICK_US = 20_000


def _inputs(
    mixer: Mixer, ticks: int, rng: np.random.Generator
) -> list[dict[int, np.ndarray | None]]:
    """Per-tick input dicts: random frames, ~10 % of participants missing."""
    pool = rng.integers(-4000, 4000, (64, mixer.samples_per_frame), dtype=np.int16)
    ids = mixer.participants
    out = []
    for _ in range(min(ticks, 200)):
        frames: dict[int, np.ndarray | None] = {}
        for p in ids:
            if rng.random() >= 0.1:
                frames[p] = pool[rng.integers(len(pool))]
        out.append(frames)
    return out


def _time(
    mixer: Mixer, inputs: list[dict[int, np.ndarray | None]], ticks: int
) -> float:
    """Seconds per tick for ``ticks`` ticks."""
    mix = mixer.mix
    n = len(inputs)
    start = time.perf_counter()
    for i in range(ticks):
        mix(inputs[i % n])
    return (time.perf_counter() - start) / ticks


def measure(
    rate: int, n: int, gains: bool, ticks: int, repeats: int
) -> tuple[float, float]:
    """Best and median µs per tick for a conference of ``n``."""
    mixer = Mixer(sample_rate=rate)
    for p in range(n):
        mixer.add(p, gain=(0.7 if p % 5 == 1 else 1.0) if gains else 1.0)
    if n > 2:
        mixer.set_muted(n - 1, True)
    inputs = _inputs(mixer, ticks, np.random.default_rng(n))
    _time(mixer, inputs, max(ticks // 10, 10))  # warm up
    runs = [_time(mixer, inputs, ticks) * 1e6 for _ in range(repeats)]
    return min(runs), statistics.median(runs)


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--sizes", default="3,10,50,100")
    parser.add_argument("--rates", default="8000,16000")
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rates = [int(r) for r in args.rates.split(",")]

    print(
        f"# pbx mixer: Python {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.processor() or platform.machine()}; best (median) of "
        f"{args.repeats} x {args.ticks} ticks"
    )
    header = (
        f"{'rate':>6} {'N':>4} | {'unity µs/tick':>16} | {'gains µs/tick':>16} | "
        f"{'µs/participant':>14} | {'core %':>7} | {'participants/core':>17}"
    )
    print(header)
    print("-" * len(header))
    for rate in rates:
        for n in sizes:
            u_best, u_med = measure(rate, n, False, args.ticks, args.repeats)
            g_best, g_med = measure(rate, n, True, args.ticks, args.repeats)
            worst = max(u_best, g_best)
            print(
                f"{rate:>6} {n:>4} | {u_best:>7.1f} ({u_med:>6.1f}) | "
                f"{g_best:>7.1f} ({g_med:>6.1f}) | {worst / n:>14.2f} | "
                f"{100 * worst / TICK_US:>6.2f}% | {n * TICK_US / worst:>17,.0f}"
            )


if __name__ == "__main__":
    main()
