"""
What a conference costs per participant: rooms of N G.711 channels joined
to one :class:`pbx.media.mix.Mix` at 8 kHz, every channel ticked once per
20 ms as the media clock ticks them.

Run from a source checkout::

    PYTHONPATH=src python bench/mix.py [--sizes 3,10,50] [--ticks 500] [--repeats 5]

Per participant and tick a joined channel decodes the caller's frame, puts
it into the mix, takes what it hears and encodes and sends it; once per
tick the room computes one :meth:`pbx.media.mixer.Mixer.mix`.  Keys come as
RFC 4733 events (no in-band detection), as a conference phone would send
them.  For comparison the same channels are timed alone, echoing (decode
and encode, no mix): the difference is what the mix adds.  The endpoint is
a stand-in that only counts frames, so sockets and RTP are not included.
Times are CPU time, the best of ``--repeats`` runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from pbx.media.channel import Channel
from pbx.media.codecs import PCMU
from pbx.media.dtmf import call_digits
from pbx.media.jitter import Frame
from pbx.media.mix import Mix
from pbx.media.prompts import PromptLibrary
from pbx.media.wav import load_wav

TICK_US = 20_000


class CountingEndpoint:
    """Stands in for the RTP endpoint: counts frames, sends nothing."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, payload: bytes, samples: int | None = None, **kwargs: Any) -> bool:
        """Count one frame."""
        self.sent += 1
        return True

    def advance(self, samples: int) -> None:
        """Nothing to count: a joined channel always sends."""


def speech_like(rate: int, seconds: float, pitch: float) -> np.ndarray:
    """Harmonics of a varying pitch with an envelope: something to decode and mix."""
    t = np.arange(int(rate * seconds)) / rate
    hz = pitch + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(hz) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return np.asarray(wave * envelope * 3000, dtype=np.int16)


def room(n: int, joined: bool) -> tuple[list[Channel], list[list[Frame]]]:
    """``n`` PCMU channels, in one mix when ``joined`` (else echoing), and each caller's frames."""
    codec = PCMU()
    clock = Clock()
    prompts = PromptLibrary()
    mix = Mix(8000)
    encoder = codec.new_encoder()
    channels, voices = [], []
    for i in range(n):
        channel = Channel(clock, codec, prompts, lambda path: succeed(load_wav(path)))
        channel.endpoint = CountingEndpoint()
        channel.digits = call_digits(True)
        if joined:
            channel.join(mix)
        else:
            channel.echo(True)
        pcm = speech_like(8000, 1.0, 100 + 7 * i)
        voices.append([Frame(encoder.encode(pcm[j : j + 160]), j, j // 160, 0)
                       for j in range(0, len(pcm), 160)])
        channels.append(channel)
    return channels, voices


def measure(n: int, joined: bool, ticks: int, repeats: int) -> float:
    """Best µs of CPU per participant per 20 ms tick."""
    best = float("inf")
    for _ in range(repeats):
        channels, voices = room(n, joined)
        pairs = list(zip(channels, voices, strict=True))
        start = time.process_time()
        for tick in range(ticks):
            for channel, voice in pairs:
                channel.tick(voice[tick % len(voice)])
        best = min(best, time.process_time() - start)
        assert all(c.endpoint.sent == ticks for c in channels)
    return best / ticks / n * 1e6


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="3,10,50")
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| participants | µs per participant per tick | alone (echo) | the mix adds | participants per core |")
    print("|---:|---:|---:|---:|---:|")
    for n in (int(s) for s in args.sizes.split(",")):
        joined = measure(n, True, args.ticks, args.repeats)
        alone = measure(n, False, args.ticks, args.repeats)
        print(f"| {n} | {joined:.1f} | {alone:.1f} | {joined - alone:.1f} | {int(TICK_US / joined):,} |")
    print(f"\nG.711 (PCMU) at 8 kHz, {args.ticks} ticks, best of {args.repeats}; command: "
          f"PYTHONPATH=src python bench/mix.py --sizes {args.sizes} --ticks {args.ticks} "
          f"--repeats {args.repeats}")


if __name__ == "__main__":
    main()
