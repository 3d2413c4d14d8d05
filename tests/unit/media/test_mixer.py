"""Tests for :mod:`pbx.media.mixer`."""

from __future__ import annotations

import numpy as np

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.mixer import MAX_GAIN, Mixer

N = 160  # samples in 20 ms at 8 kHz


def tone(value: int, samples: int = N) -> np.ndarray:
    """A constant int16 frame (easy to reason about in sums)."""
    return np.full(samples, value, dtype=np.int16)


def noise(seed: int, samples: int = N, scale: int = 2000) -> np.ndarray:
    """A reproducible random int16 frame well below full scale."""
    rng = np.random.default_rng(seed)
    return rng.integers(-scale, scale, samples, dtype=np.int16)


def mixer_of(*ids: str, **kwargs: int) -> Mixer:
    """A mixer with ``ids`` added at unity gain."""
    mixer = Mixer(**kwargs)
    for participant in ids:
        mixer.add(participant)
    return mixer


class MixTests(SynchronousTestCase):
    """What each participant hears."""

    def test_own_voice_removed(self) -> None:
        """Each participant hears exactly the sum of the others, not itself."""
        mixer = mixer_of("a", "b", "c")
        frames = {p: noise(i) for i, p in enumerate("abc")}
        out = mixer.mix(frames)
        a, b, c = (frames[p].astype(np.int32) for p in "abc")
        np.testing.assert_array_equal(out["a"], b + c)
        np.testing.assert_array_equal(out["b"], a + c)
        np.testing.assert_array_equal(out["c"], a + b)

    def test_output_is_int16_frames(self) -> None:
        """Every participant gets an int16 frame of one tick's length."""
        mixer = mixer_of("a", "b", sample_rate=16000)
        out = mixer.mix({"a": noise(1, 320), "b": noise(2, 320)})
        self.assertEqual(sorted(out), ["a", "b"])
        for frame in out.values():
            self.assertEqual((frame.dtype, frame.shape), (np.dtype(np.int16), (320,)))

    def test_two_participants_hear_each_other(self) -> None:
        """With two participants each hears exactly the other."""
        mixer = mixer_of("a", "b")
        a, b = noise(1), noise(2)
        out = mixer.mix({"a": a, "b": b})
        np.testing.assert_array_equal(out["a"], b)
        np.testing.assert_array_equal(out["b"], a)

    def test_fifty_participants(self) -> None:
        """With 50 participants each hears the total minus its own frame."""
        ids = [f"p{i}" for i in range(50)]
        mixer = mixer_of(*ids)
        frames = {p: noise(i, scale=500) for i, p in enumerate(ids)}
        out = mixer.mix(frames)
        total = sum(f.astype(np.int32) for f in frames.values())
        for p in ids:
            expected = np.clip(total - frames[p], -32768, 32767)
            np.testing.assert_array_equal(out[p], expected)

    def test_alone(self) -> None:
        """A participant alone in the conference hears silence."""
        mixer = mixer_of("a")
        out = mixer.mix({"a": noise(1)})
        np.testing.assert_array_equal(out["a"], tone(0))

    def test_empty(self) -> None:
        """A mixer without participants returns no frames."""
        self.assertEqual(Mixer().mix({}), {})

    def test_outputs_are_independent(self) -> None:
        """Frames returned by one tick are not overwritten by the next."""
        mixer = mixer_of("a", "b")
        first = mixer.mix({"a": tone(1), "b": tone(2)})
        mixer.mix({"a": tone(5), "b": tone(7)})
        np.testing.assert_array_equal(first["a"], tone(2))

    def test_input_not_modified(self) -> None:
        """The mixer does not write into the frames it is given."""
        mixer = mixer_of("a", "b")
        mixer.set_gain("a", 2.0)
        a = noise(1)
        kept = a.copy()
        mixer.mix({"a": a, "b": noise(2)})
        np.testing.assert_array_equal(a, kept)


class GainTests(SynchronousTestCase):
    """Per-participant input gain."""

    def test_gain_scales_contribution(self) -> None:
        """A participant's gain scales what the others hear of it, not what it hears."""
        mixer = mixer_of("a", "b", "c")
        mixer.set_gain("a", 0.5)
        out = mixer.mix({"a": tone(1000), "b": tone(100), "c": tone(10)})
        np.testing.assert_array_equal(out["b"], tone(500 + 10))
        np.testing.assert_array_equal(out["c"], tone(500 + 100))
        np.testing.assert_array_equal(out["a"], tone(110))

    def test_gain_on_add(self) -> None:
        """A gain given when adding applies from the first tick."""
        mixer = Mixer()
        mixer.add("a", gain=2.0)
        mixer.add("b")
        out = mixer.mix({"a": tone(300), "b": tone(1)})
        np.testing.assert_array_equal(out["b"], tone(600))
        self.assertEqual(mixer.gain("a"), 2.0)

    def test_zero_gain(self) -> None:
        """A gain of zero silences a participant's contribution."""
        mixer = mixer_of("a", "b")
        mixer.set_gain("a", 0.0)
        out = mixer.mix({"a": tone(300), "b": tone(1)})
        np.testing.assert_array_equal(out["b"], tone(0))

    def test_gain_out_of_range(self) -> None:
        """Negative, NaN or too large gains are refused."""
        mixer = mixer_of("a")
        for gain in (-0.1, MAX_GAIN + 0.1, float("nan")):
            self.assertRaises(ValueError, mixer.set_gain, "a", gain)
        self.assertEqual(mixer.gain("a"), 1.0)


class MuteTests(SynchronousTestCase):
    """Muted participants."""

    def test_muted_contributes_nothing_but_hears(self) -> None:
        """A muted participant is not heard by others but still hears them."""
        mixer = mixer_of("a", "b", "c")
        mixer.set_muted("a", True)
        out = mixer.mix({"a": tone(1000), "b": tone(100), "c": tone(10)})
        np.testing.assert_array_equal(out["b"], tone(10))
        np.testing.assert_array_equal(out["c"], tone(100))
        np.testing.assert_array_equal(out["a"], tone(110))
        self.assertTrue(mixer.is_muted("a"))

    def test_unmute_restores_gain(self) -> None:
        """Unmuting brings back the participant at the gain it had."""
        mixer = mixer_of("a", "b")
        mixer.set_gain("a", 2.0)
        mixer.set_muted("a", True)
        mixer.set_muted("a", False)
        out = mixer.mix({"a": tone(100), "b": tone(0)})
        np.testing.assert_array_equal(out["b"], tone(200))

    def test_join_muted(self) -> None:
        """A participant added muted is silent from the first tick."""
        mixer = Mixer()
        mixer.add("a", muted=True)
        mixer.add("b")
        out = mixer.mix({"a": tone(100), "b": tone(7)})
        np.testing.assert_array_equal(out["b"], tone(0))
        np.testing.assert_array_equal(out["a"], tone(7))


class SaturationTests(SynchronousTestCase):
    """Sums beyond the int16 range."""

    def test_clips_high(self) -> None:
        """A sum above 32767 is clipped to 32767 rather than wrapping."""
        mixer = mixer_of("a", "b", "c")
        out = mixer.mix({"a": tone(30000), "b": tone(30000), "c": tone(0)})
        np.testing.assert_array_equal(out["c"], tone(32767))

    def test_clips_low(self) -> None:
        """A sum below -32768 is clipped to -32768 rather than wrapping."""
        mixer = mixer_of("a", "b", "c")
        out = mixer.mix({"a": tone(-30000), "b": tone(-30000), "c": tone(0)})
        np.testing.assert_array_equal(out["c"], tone(-32768))

    def test_own_voice_removed_before_clipping(self) -> None:
        """A loud participant does not clip its own mix: its voice is removed first."""
        mixer = mixer_of("a", "b", "c")
        out = mixer.mix({"a": tone(32767), "b": tone(32767), "c": tone(-32000)})
        np.testing.assert_array_equal(out["a"], tone(767))
        np.testing.assert_array_equal(out["c"], tone(32767))

    def test_full_scale_with_max_gain(self) -> None:
        """Full-scale frames at maximum gain from many participants clip, not overflow."""
        ids = [str(i) for i in range(100)]
        mixer = Mixer()
        for p in ids:
            mixer.add(p, gain=MAX_GAIN)
        out = mixer.mix({p: tone(-32768) for p in ids})
        np.testing.assert_array_equal(out["0"], tone(-32768))


class MissingFrameTests(SynchronousTestCase):
    """Participants that sent nothing this tick."""

    def test_absent_is_silence(self) -> None:
        """A participant without a frame contributes silence and still gets a mix."""
        mixer = mixer_of("a", "b", "c")
        out = mixer.mix({"a": tone(10)})
        np.testing.assert_array_equal(out["b"], tone(10))
        np.testing.assert_array_equal(out["c"], tone(10))
        np.testing.assert_array_equal(out["a"], tone(0))

    def test_none_is_silence(self) -> None:
        """A frame given as None counts as silence."""
        mixer = mixer_of("a", "b")
        out = mixer.mix({"a": None, "b": tone(3)})
        np.testing.assert_array_equal(out["b"], tone(0))
        np.testing.assert_array_equal(out["a"], tone(3))

    def test_missing_after_present(self) -> None:
        """A frame from the previous tick is not replayed when the next one is missing."""
        mixer = mixer_of("a", "b")
        mixer.mix({"a": tone(10), "b": tone(0)})
        out = mixer.mix({"b": tone(0)})
        np.testing.assert_array_equal(out["b"], tone(0))

    def test_unknown_ids_ignored(self) -> None:
        """Frames from ids that are not participants are ignored."""
        mixer = mixer_of("a", "b")
        out = mixer.mix({"a": tone(1), "b": tone(2), "gone": tone(100)})
        self.assertEqual(sorted(out), ["a", "b"])
        np.testing.assert_array_equal(out["a"], tone(2))

    def test_bad_frames_refused(self) -> None:
        """A frame of the wrong type or length raises ValueError."""
        mixer = mixer_of("a", "b")
        for bad in (tone(1, N - 1), tone(1).astype(np.float32), tone(1).reshape(2, -1)):
            self.assertRaises(ValueError, mixer.mix, {"a": bad, "b": tone(0)})


class MembershipTests(SynchronousTestCase):
    """Adding and removing participants during a call."""

    def test_add_during_call(self) -> None:
        """A participant added between ticks is heard and gets a mix from the next tick."""
        mixer = mixer_of("a", "b")
        mixer.mix({"a": tone(1), "b": tone(2)})
        mixer.add("c")
        out = mixer.mix({"a": tone(1), "b": tone(2), "c": tone(4)})
        np.testing.assert_array_equal(out["a"], tone(6))
        np.testing.assert_array_equal(out["c"], tone(3))
        self.assertEqual(mixer.participants, ("a", "b", "c"))

    def test_remove_during_call(self) -> None:
        """A removed participant is neither heard nor given a mix."""
        mixer = mixer_of("a", "b", "c")
        mixer.mix({"a": tone(1), "b": tone(2), "c": tone(4)})
        mixer.remove("b")
        out = mixer.mix({"a": tone(1), "b": tone(2), "c": tone(4)})
        self.assertEqual(sorted(out), ["a", "c"])
        np.testing.assert_array_equal(out["a"], tone(4))
        self.assertNotIn("b", mixer)
        self.assertEqual(len(mixer), 2)

    def test_remove_keeps_others_settings(self) -> None:
        """Removing one participant keeps the gain and mute of the others."""
        mixer = mixer_of("a", "b", "c", "d")
        mixer.set_gain("c", 2.0)
        mixer.set_muted("d", True)
        mixer.remove("a")
        out = mixer.mix({"b": tone(0), "c": tone(10), "d": tone(1000)})
        np.testing.assert_array_equal(out["b"], tone(20))

    def test_readd(self) -> None:
        """A participant removed and added again starts at unity gain, unmuted."""
        mixer = mixer_of("a", "b")
        mixer.set_gain("a", 3.0)
        mixer.set_muted("a", True)
        mixer.remove("a")
        mixer.add("a")
        out = mixer.mix({"a": tone(5), "b": tone(0)})
        np.testing.assert_array_equal(out["b"], tone(5))

    def test_duplicate_add(self) -> None:
        """Adding a participant twice raises ValueError."""
        mixer = mixer_of("a")
        self.assertRaises(ValueError, mixer.add, "a")

    def test_unknown_participant(self) -> None:
        """Removing or changing a participant that is not there raises KeyError."""
        mixer = mixer_of("a")
        self.assertRaises(KeyError, mixer.remove, "x")
        self.assertRaises(KeyError, mixer.set_gain, "x", 1.0)
        self.assertRaises(KeyError, mixer.set_muted, "x", True)
        self.assertRaises(KeyError, mixer.is_muted, "x")


class ConfigurationTests(SynchronousTestCase):
    """Mixer construction."""

    def test_frame_size(self) -> None:
        """The frame length follows sample rate and frame duration."""
        self.assertEqual(Mixer().samples_per_frame, 160)
        self.assertEqual(Mixer(sample_rate=16000).samples_per_frame, 320)
        self.assertEqual(Mixer(sample_rate=16000, frame_ms=10).samples_per_frame, 160)

    def test_bad_configuration(self) -> None:
        """An unsupported sample rate or a frame duration of no whole samples is refused."""
        self.assertRaises(ValueError, Mixer, sample_rate=11025)
        self.assertRaises(ValueError, Mixer, frame_ms=0)


class PerformanceSanityTests(SynchronousTestCase):
    """The vectorised path at conference scale (timing lives in bench/mixer.py)."""

    def test_hundred_participants_many_ticks(self) -> None:
        """A hundred participants over many ticks, with joins and leaves, mix exactly."""
        ids = list(range(100))
        mixer = Mixer(sample_rate=16000)
        for p in ids:
            mixer.add(p, gain=0.5 if p % 7 == 0 else 1.0, muted=p % 11 == 0)
        rng = np.random.default_rng(7)
        for tick in range(50):
            if tick == 20:
                mixer.remove(3)
                mixer.add(1000)
            present = mixer.participants
            frames = {
                p: rng.integers(-300, 300, 320, dtype=np.int16)
                for p in present
                if rng.random() > 0.1
            }
            out = mixer.mix(frames)
            contrib = {
                p: (
                    np.zeros(320, np.int32)
                    if p not in frames or mixer.is_muted(p)
                    else frames[p].astype(np.int32) * round(mixer.gain(p) * 4096) >> 12
                )
                for p in present
            }
            total = sum(contrib.values())
            self.assertEqual(set(out), set(present))
            for p in present:
                np.testing.assert_array_equal(out[p], total - contrib[p])
