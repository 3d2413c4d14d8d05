"""
Micro-benchmark of the audio codecs: microseconds per 20 ms frame to encode,
decode and conceal with each codec, to resample between their rates, and to
transcode between every pair of them.

Run: ``PYTHONPATH=src python bench/codecs.py [--repeat 7] [--number 2000]``

Each figure is the best of ``--repeat`` runs of ``--number`` calls
(:func:`timeit.repeat`) on one stream, fed the same 20 ms frame of a
speech-like signal (harmonics of 250 Hz under a syllable envelope) each time.
A transcoding call is decode + resample + encode of one payload.  One core;
the machine is shared, so small differences are noise.
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pbx.interfaces import ICodec  # noqa: E402
from pbx.media.resample import Resampler, transcoder  # noqa: E402
from pbx.plugin_loader import discover_codecs  # noqa: E402


def speech_frame(rate: int) -> np.ndarray:
    """20 ms of a speech-like signal at ``rate``, taken near its loudest."""
    t = np.arange(rate // 50) / rate + 0.15
    phase = 2 * np.pi * 250 * t
    k = np.arange(1, 13)[:, np.newaxis]
    voice = (np.sin(k * phase) / np.sqrt(k)).sum(axis=0)
    return (voice / np.abs(voice).max() * 16000).astype(np.int16)


def microseconds(function: Callable[[], object], number: int, repeat: int) -> float:
    """Best of ``repeat`` runs, in microseconds per call."""
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6


def codec_rows(
    codecs: dict[str, ICodec], number: int, repeat: int
) -> list[tuple[str, float, float, float, int]]:
    """(codec, encode µs, decode µs, conceal µs, payload octets) per codec."""
    rows = []
    for codec in codecs.values():
        pcm = speech_frame(codec.sample_rate)
        encoder, decoder = codec.new_encoder(), codec.new_decoder()
        payload = encoder.encode(pcm)
        decoder.decode(payload)
        size = len(pcm)

        def lose_one(decoder=decoder, payload=payload, size=size) -> None:
            decoder.decode(payload)
            decoder.conceal(size)

        # Concealment right after a good frame (later ones may be silence):
        # timed with a decode in front, which is then taken off.
        decode = microseconds(partial(decoder.decode, payload), number, repeat)
        conceal = microseconds(lose_one, number, repeat) - decode
        encode = microseconds(partial(encoder.encode, pcm), number, repeat)
        rows.append((codec.name, encode, decode, conceal, len(payload)))
    return rows


def resample_rows(number: int, repeat: int) -> list[tuple[str, float]]:
    """(rates, µs) for every pair of codec sample rates."""
    rows = []
    for source in (8000, 16000, 48000):
        for target in (8000, 16000, 48000):
            if source == target:
                continue
            resampler, pcm = Resampler(source, target), speech_frame(source)
            resampler(pcm)
            us = microseconds(partial(resampler, pcm), number, repeat)
            rows.append((f"{source // 1000} -> {target // 1000} kHz", us))
    return rows


def transcode_rows(
    codecs: dict[str, ICodec], number: int, repeat: int
) -> list[tuple[str, str, float]]:
    """(from, to, µs) for every ordered pair of different codecs."""
    rows = []
    for source in codecs.values():
        payload = source.new_encoder().encode(speech_frame(source.sample_rate))
        for target in codecs.values():
            if target is source:
                continue
            convert = transcoder(source, target)
            convert(payload)
            us = microseconds(partial(convert, payload), number, repeat)
            rows.append((source.name, target.name, us))
    return rows


def main() -> None:
    """Print the tables (Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=2000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=7, help="runs; the best is kept")
    options = parser.parse_args()
    number, repeat = options.number, options.repeat
    codecs = discover_codecs()

    print(f"Python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.machine()}; best of {repeat} x {number} calls, "
          "µs per 20 ms frame\n")  # fmt: skip
    print("| codec | encode | decode | conceal | payload octets |")
    print("|---|---:|---:|---:|---:|")
    for name, encode, decode, conceal, octets in codec_rows(codecs, number, repeat):
        print(f"| {name} | {encode:.1f} | {decode:.1f} | {conceal:.1f} | {octets} |")

    print("\n| resample | µs |")
    print("|---|---:|")
    for rates, us in resample_rows(number, repeat):
        print(f"| {rates} | {us:.1f} |")

    rows = transcode_rows(codecs, number, repeat)
    names = [codec.name for codec in codecs.values()]
    cells = {(source, target): us for source, target, us in rows}
    print("\n| transcode from \\ to | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for source in names:
        line = [f"{cells[source, t]:.1f}" if t != source else "–" for t in names]
        print(f"| {source} | " + " | ".join(line) + " |")


if __name__ == "__main__":
    main()
