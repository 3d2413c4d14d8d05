"""
How many terminated channels (IVR/voicemail style) one core keeps in real
time: every 20 ms each channel decodes the caller's frame, runs in-band DTMF
detection on it (a call without telephone-event; with it, keys come as
RFC 4733 events and the audio is not searched: both are measured), and
encodes and sends one frame of a playing prompt.

Run from a source checkout::

    PYTHONPATH=src python bench/channels.py [--codecs pcmu,...] [--seconds 5]

This measures the media work of :class:`pbx.media.channel.Channel` per
tick, not the sockets (the RTP relay benchmark measures those): the
endpoint is a stand-in that only counts what it is asked to send.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from pbx.media.channel import Channel
from pbx.media.dtmf import call_digits
from pbx.media.jitter import Frame
from pbx.media.prompts import PromptLibrary
from pbx.media.wav import load_wav
from pbx.plugin_loader import discover_codecs


class CountingEndpoint:
    """Stands in for the RTP endpoint: counts frames, sends nothing."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, payload: bytes, samples: int | None = None, **kwargs: Any) -> bool:
        self.sent += 1
        return True

    def advance(self, samples: int) -> None:
        pass


def speech_like(rate: int, seconds: float) -> np.ndarray:
    """Harmonics of a varying pitch with an envelope: something to decode and analyse."""
    t = np.arange(int(rate * seconds)) / rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (wave * envelope * 6000).astype(np.int16)


def run(codec_name: str, channels: int, seconds: float, telephone_event: bool = False) -> float:
    """Microseconds of CPU per channel per 20 ms tick (``telephone_event``: the call negotiated it)."""
    codec = discover_codecs()[codec_name]
    prompts = PromptLibrary()
    clock = Clock()
    rate = int(codec.sample_rate)
    n = rate // 50
    encoder = codec.new_encoder()
    pcm = speech_like(rate, 1.0)
    payloads = [encoder.encode(pcm[i : i + n]) for i in range(0, len(pcm) - n + 1, n)]
    chans = []
    for _ in range(channels):
        channel = Channel(clock, codec, prompts, lambda path: succeed(load_wav(path)))
        channel.endpoint = CountingEndpoint()
        channel.digits = call_digits(telephone_event)
        chans.append(channel)
    ticks = int(seconds * 50)
    for channel in chans:
        channel.play(["vm/main-menu"] * 20)  # long enough to play throughout
    start = time.process_time()
    for tick in range(ticks):
        frame = Frame(payloads[tick % len(payloads)], tick * n, tick, 0)
        for channel in chans:
            channel.tick(frame)
        clock.advance(0.02)
    used = time.process_time() - start
    assert all(c.endpoint.sent == ticks for c in chans)
    return used / ticks / channels * 1e6


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codecs", default="pcmu,pcma,g722")
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print("| codec | keys | µs per channel per 20 ms tick | channels per core in real time |")
    print("|---|---|---:|---:|")
    for name in args.codecs.split(","):
        for telephone_event, keys in ((False, "in-band detected"), (True, "RFC 4733 events")):
            us = run(name, args.channels, args.seconds, telephone_event)
            print(f"| {name.upper()} | {keys} | {us:.0f} | {int(20_000 / us)} |")
    print(f"\n{args.channels} channels, {args.seconds:.0f} s of media each; command: "
          f"PYTHONPATH=src python bench/channels.py --codecs {args.codecs} "
          f"--channels {args.channels} --seconds {args.seconds:g}")


if __name__ == "__main__":
    main()
