"""
The slot number said to the parker before it leaves: the digit prompts
(``digits/7``, ``digits/1``) played once into the parker's relay leg, in
the codec it uses (G.711), through the relay's feed
(:meth:`RelaySession.feed <pbx.media.relay.RelaySession.feed>`), as music
on hold is: the relay's hot path is untouched and the frames go out from
the port the parker already talks to.

:func:`slot_frames` makes the encoded frames (prompts read off the reactor
thread by the switch's WAV loader); :class:`OneShot` is the feed source
that plays them once and says when it is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pbx.media import g711

__all__ = ["FRAME", "OneShot", "slot_frames"]

#: Samples in one 20 ms frame at 8 kHz.
FRAME = 160
_ENCODERS = {"pcmu": g711.ulaw_encode, "pcma": g711.alaw_encode}
#: Silence after the digits, so the last one is not cut by the BYE.
_TAIL = 0.3


async def slot_frames(
    prompts: Any, load: Any, slot: str, codec: str
) -> list[bytes] | None:
    """
    ``slot`` read out digit by digit, encoded in ``codec`` (PCMU or PCMA)
    in 20 ms frames; None for another codec.

    :param prompts: a :class:`~pbx.media.prompts.PromptLibrary`.
    :param load: reads a WAV file, returning a Deferred of
        :class:`~pbx.media.wav.WavAudio` (off the reactor thread).
    :raises PromptNotFound: a digit prompt is missing.
    :raises ValueError: a prompt is not 8 kHz.
    """
    encode = _ENCODERS.get(codec.lower())
    if encode is None:
        return None
    pieces = []
    for prompt_id in prompts.say_digits(slot):
        audio = await load(prompts.path(prompt_id, 8000))
        if audio.sample_rate != 8000:
            raise ValueError(f"prompt {prompt_id} is not 8 kHz")
        samples = audio.samples
        pieces.append(samples if samples.ndim == 1 else samples[:, 0])
    pieces.append(np.zeros(int(_TAIL * 8000), dtype=np.int16))
    pcm = np.concatenate(pieces).astype(np.int16)
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME, dtype=np.int16)])
    return [encode(pcm[i : i + FRAME]) for i in range(0, len(pcm), FRAME)]


class OneShot:
    """
    A relay feed source that plays ``frames`` once, one every 20 ms, then
    calls ``on_done`` (once; also when it is removed early).

    :param clock: paces the frames.
    """

    #: RTP timestamp units per frame (8 kHz).
    timestamp_step = FRAME
    log = Logger()

    def __init__(
        self, clock: IReactorTime, frames: list[bytes], on_done: Callable[[], None]
    ) -> None:
        self._frames = frames
        self._next = 0
        self._sink: Callable[[bytes], None] | None = None
        self._on_done: Callable[[], None] | None = on_done
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock

    def add(self, sink: Callable[[bytes], None]) -> Callable[[], None]:
        """Start playing into ``sink``; returns what stops it."""
        self._sink = sink
        if not self._loop.running:
            self._loop.start(FRAME / 8000, now=True)
        return self.stop

    def stop(self) -> None:
        """Stop playing; ``on_done`` is called if it was not yet."""
        if self._loop.running:
            self._loop.stop()
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done()

    def _tick(self) -> None:
        if self._next >= len(self._frames) or self._sink is None:
            self.stop()
            return
        frame = self._frames[self._next]
        self._next += 1
        try:
            self._sink(frame)
        except Exception:
            self.log.failure("slot announcement failed")
            self.stop()
