"""Voice prompts: the shipped files, the say helpers and lookup."""

from __future__ import annotations

import array
import configparser
import glob
import shutil
import sys
import tempfile
import wave
from datetime import datetime, time
from pathlib import Path

import yaml

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.prompts import PromptLibrary, PromptNotFound, default_prompt_dir

from support.paths import ROOT
from support.prompt_files import LANG, PROMPTS, RATES, load_manifest, sha256

# -3 dBFS is the normalisation target; allow a little either side.
PEAK_MIN = round(32768 * 10 ** (-4 / 20))
PEAK_MAX = round(32768 * 10 ** (-2 / 20))


def load_catalogue() -> dict[str, str]:
    """
    Map every catalogue id to its text.
    """
    with (LANG / "prompts.yaml").open(encoding="utf-8") as f:
        prompts = yaml.safe_load(f)["prompts"]
    return {
        pid: value if isinstance(value, str) else value["text"]
        for pid, value in prompts.items()
    }


def read_wav(path: Path) -> tuple[int, int, int, array.array]:
    """
    Read a WAV file as (channels, sample width, rate, samples).
    """
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
        params = (w.getnchannels(), w.getsampwidth(), w.getframerate())
    samples = array.array("h")
    if params[1] == 2:
        samples.frombytes(frames)
        if sys.byteorder == "big":
            samples.byteswap()
    return (*params, samples)


def write_wav(path: Path, rate: int = 8000, frames: int = 80) -> None:
    """
    Write a short silent 16-bit mono WAV file, making parent directories.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * frames)


class ShippedPromptsTests(SynchronousTestCase):
    """
    The prompt set in share/prompts/en matches its catalogue and manifest.
    """

    def setUp(self) -> None:
        self.catalogue = load_catalogue()
        self.manifest = load_manifest()

    def test_catalogue_size(self) -> None:
        """The English catalogue holds a complete set of about 120+ prompts."""
        self.assertGreaterEqual(len(self.catalogue), 120)
        for required in [
            "digits/star",
            "digits/pound",
            "numbers/million",
            "dates/31st",
            "time/oh",
            "vm/main-menu",
            "aa/welcome",
            "general/beep",
            "echo/intro",
            "conf/only-person",
        ]:
            self.assertIn(required, self.catalogue)

    def test_manifest_matches_catalogue(self) -> None:
        """The manifest lists exactly the catalogue's ids, with their text."""
        prompts = self.manifest["prompts"]
        self.assertEqual(sorted(prompts), sorted(self.catalogue))
        self.assertEqual({pid: e["text"] for pid, e in prompts.items()}, self.catalogue)
        self.assertEqual(self.manifest["rates"], list(RATES))

    def test_every_id_has_both_rates(self) -> None:
        """Every catalogue id has an 8000 Hz and a 16000 Hz file where the manifest says."""
        missing = []
        for pid in self.catalogue:
            entry = self.manifest["prompts"][pid]
            for rate in RATES:
                relative = f"{rate}/{pid}.wav"
                if (
                    entry["files"][str(rate)] != relative
                    or not (LANG / relative).is_file()
                ):
                    missing.append(relative)
        self.assertEqual(missing, [])

    def test_no_stray_files(self) -> None:
        """No WAV file in the language directory is outside the catalogue."""
        expected = {f"{rate}/{pid}.wav" for pid in self.catalogue for rate in RATES}
        found = {p.relative_to(LANG).as_posix() for p in LANG.rglob("*.wav")}
        self.assertEqual(found - expected, set())

    def test_wav_format_level_and_hash(self) -> None:
        """Each file is non-empty 16-bit mono PCM at its rate, peaks near -3 dBFS and matches the manifest's SHA-256 and duration."""
        problems = []
        for entry in self.manifest["prompts"].values():
            for rate in RATES:
                path = LANG / entry["files"][str(rate)]
                channels, width, framerate, samples = read_wav(path)
                if (channels, width, framerate) != (1, 2, rate):
                    problems.append(
                        f"{path}: {channels} ch, {width * 8} bit, {framerate} Hz"
                    )
                    continue
                if not samples:
                    problems.append(f"{path}: empty")
                    continue
                peak = max(-min(samples), max(samples))
                if entry["kind"] == "silence":
                    if peak != 0:
                        problems.append(f"{path}: silence peaks at {peak}")
                elif not PEAK_MIN <= peak <= PEAK_MAX:
                    problems.append(
                        f"{path}: peak {peak} outside {PEAK_MIN}..{PEAK_MAX}"
                    )
                duration_ms = len(samples) * 1000 / rate
                if abs(duration_ms - entry["duration_ms"]) > 5:
                    problems.append(
                        f"{path}: {duration_ms:.0f} ms, manifest says {entry['duration_ms']}"
                    )
                if sha256(path) != entry["sha256"][str(rate)]:
                    problems.append(f"{path}: sha256 differs from manifest")
        self.assertEqual(problems, [])

    def test_beep_and_silence(self) -> None:
        """The beep is a 250 ms tone and the silence one second of zeros."""
        beep = self.manifest["prompts"]["general/beep"]
        silence = self.manifest["prompts"]["general/silence-1s"]
        self.assertEqual((beep["kind"], beep["duration_ms"]), ("tone", 250))
        self.assertEqual((silence["kind"], silence["duration_ms"]), ("silence", 1000))
        # A 1 kHz tone crosses zero 2000 times a second: about 500 in 250 ms.
        *_, samples = read_wav(LANG / "8000" / "general" / "beep.wav")
        crossings = sum(
            1 for a, b in zip(samples, samples[1:], strict=False) if (a < 0) != (b < 0)
        )
        self.assertTrue(480 <= crossings <= 520, crossings)

    def test_total_size(self) -> None:
        """The shipped prompt set stays under 20 MB."""
        total = sum(p.stat().st_size for p in PROMPTS.rglob("*") if p.is_file())
        self.assertLess(total, 20_000_000)

    def test_data_files_install_every_directory(self) -> None:
        """setup.cfg's data_files installs every prompt file under share/pbx/prompts."""
        parser = configparser.ConfigParser()
        parser.read(ROOT / "setup.cfg")
        installed = set()
        for target, sources in parser["options.data_files"].items():
            for source in sources.replace("\n", ",").split(","):
                for match in glob.glob(str(ROOT / source.strip())):
                    relative = Path(match).relative_to(ROOT)
                    if relative.parts[:2] != ("share", "prompts"):
                        continue
                    inside = Path(*relative.parts[2:])
                    expected = Path("share/pbx/prompts", inside.parent).as_posix()
                    self.assertEqual(target, expected)
                    installed.add(inside.as_posix())
        shipped = {
            p.relative_to(PROMPTS).as_posix() for p in PROMPTS.rglob("*") if p.is_file()
        }
        self.assertEqual(shipped - installed, set())


class SayTests(SynchronousTestCase):
    """
    The say helpers spell numbers, digits and dates with catalogue ids.
    """

    def setUp(self) -> None:
        self.library = PromptLibrary([str(PROMPTS)])
        self.catalogue = load_catalogue()

    def test_say_number_table(self) -> None:
        """say_number spells each number in the table in American English."""
        table = {
            0: "0",
            7: "7",
            13: "13",
            20: "20",
            21: "20 1",
            100: "1 hundred",
            101: "1 hundred 1",
            110: "1 hundred 10",
            999: "9 hundred 90 9",
            1000: "1 thousand",
            1001: "1 thousand 1",
            1234: "1 thousand 2 hundred 30 4",
            1234567: "1 million 2 hundred 30 4 thousand 5 hundred 60 7",
            2_000_019: "2 million 19",
            999_999_999: "9 hundred 90 9 million 9 hundred 90 9 thousand "
            "9 hundred 90 9",
        }
        for number, words in table.items():
            expected = [
                f"digits/{w}" if len(w) == 1 else f"numbers/{w}" for w in words.split()
            ]
            got = self.library.say_number(number)
            self.assertEqual((number, got), (number, expected))
            self.assertEqual([i for i in got if i not in self.catalogue], [])

    def test_say_number_out_of_range(self) -> None:
        """say_number refuses negative numbers, a billion or more, and non-integers."""
        self.assertRaises(ValueError, self.library.say_number, -1)
        self.assertRaises(ValueError, self.library.say_number, 1_000_000_000)
        self.assertRaises(TypeError, self.library.say_number, 1.5)
        self.assertRaises(TypeError, self.library.say_number, True)

    def test_say_digits(self) -> None:
        """say_digits reads each key, star and pound included."""
        self.assertEqual(
            self.library.say_digits("1234"),
            ["digits/1", "digits/2", "digits/3", "digits/4"],
        )
        self.assertEqual(
            self.library.say_digits("*0#"),
            ["digits/star", "digits/0", "digits/pound"],
        )
        self.assertEqual(self.library.say_digits(""), [])

    def test_say_digits_rejects_other_characters(self) -> None:
        """say_digits names the character it cannot say."""
        e = self.assertRaises(ValueError, self.library.say_digits, "12a")
        self.assertIn("'a'", str(e))

    def test_say_datetime_table(self) -> None:
        """say_datetime gives weekday, month, ordinal day, hour, minutes and a.m./p.m."""
        table = [
            (datetime(2026, 1, 5, 15, 0), ["dates/monday", "dates/january",
                                           "dates/5th", "digits/3", "time/pm"]),
            (datetime(2026, 1, 5, 15, 5), ["dates/monday", "dates/january",
                                           "dates/5th", "digits/3", "time/oh",
                                           "digits/5", "time/pm"]),
            (datetime(2025, 12, 31, 23, 59), ["dates/wednesday", "dates/december",
                                              "dates/31st", "numbers/11",
                                              "numbers/50", "digits/9", "time/pm"]),
            (datetime(2026, 2, 22, 0, 30), ["dates/sunday", "dates/february",
                                            "dates/22nd", "numbers/12",
                                            "numbers/30", "time/am"]),
            (datetime(2026, 3, 12, 12, 10), ["dates/thursday", "dates/march",
                                             "dates/12th", "numbers/12",
                                             "numbers/10", "time/pm"]),
            (datetime(2026, 5, 23, 9, 45), ["dates/saturday", "dates/may",
                                            "dates/23rd", "digits/9",
                                            "numbers/40", "digits/5", "time/am"]),
            (datetime(2026, 8, 11, 7, 13), ["dates/tuesday", "dates/august",
                                            "dates/11th", "digits/7",
                                            "numbers/13", "time/am"]),
        ]  # fmt: skip
        for when, expected in table:
            got = self.library.say_datetime(when)
            self.assertEqual((when, got), (when, expected))
            self.assertEqual([i for i in got if i not in self.catalogue], [])

    def test_say_datetime_every_day_and_month(self) -> None:
        """Every day of a year spells with ids that exist in the catalogue."""
        missing = set()
        for ordinal in range(
            datetime(2024, 1, 1).toordinal(), datetime(2025, 1, 1).toordinal()
        ):
            day = datetime.fromordinal(ordinal).replace(
                hour=ordinal % 24, minute=ordinal % 60
            )
            missing.update(
                i for i in self.library.say_datetime(day) if i not in self.catalogue
            )
        self.assertEqual(missing, set())

    def test_say_time_oclock(self) -> None:
        """With oclock, a whole hour is said as "twelve o'clock p.m."."""
        self.assertEqual(
            self.library.say_time(time(12, 0), oclock=True),
            ["numbers/12", "time/oclock", "time/pm"],
        )
        self.assertEqual(self.library.say_time(time(0, 0)), ["numbers/12", "time/am"])

    def test_say_needs_english(self) -> None:
        """The say helpers refuse a language they have no grammar for."""
        library = PromptLibrary([str(PROMPTS)], language="fr")
        self.assertRaises(NotImplementedError, library.say_number, 5)


class PromptLibraryTests(SynchronousTestCase):
    """
    PromptLibrary finds prompts by id, site directories first.
    """

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="pbx-prompts-test-"))
        self.addCleanup(shutil.rmtree, self.tmp)
        self.site = self.tmp / "site"
        self.system = self.tmp / "system"
        for rate in RATES:
            write_wav(self.system / "en" / str(rate) / "vm" / "goodbye.wav", rate)
            write_wav(self.system / "en" / str(rate) / "digits" / "1.wav", rate)
        write_wav(self.site / "en" / "8000" / "vm" / "goodbye.wav")
        write_wav(self.site / "en" / "8000" / "site" / "welcome.wav")
        write_wav(self.site / "fr" / "8000" / "digits" / "1.wav")

    def test_site_overrides_system(self) -> None:
        """A prompt in the site directory wins over the system one at that rate."""
        library = PromptLibrary([str(self.site), str(self.system)])
        self.assertEqual(
            library.path("vm/goodbye", 8000),
            str(self.site / "en" / "8000" / "vm" / "goodbye.wav"),
        )

    def test_falls_back_per_rate(self) -> None:
        """A rate the site does not provide still comes from the system directory."""
        library = PromptLibrary([str(self.site), str(self.system)])
        self.assertEqual(
            library.path("vm/goodbye", 16000),
            str(self.system / "en" / "16000" / "vm" / "goodbye.wav"),
        )
        self.assertEqual(
            library.path("digits/1", 8000),
            str(self.system / "en" / "8000" / "digits" / "1.wav"),
        )

    def test_order_decides(self) -> None:
        """Listing the system directory first makes it win."""
        library = PromptLibrary([str(self.system), str(self.site)])
        self.assertEqual(
            library.path("vm/goodbye", 8000),
            str(self.system / "en" / "8000" / "vm" / "goodbye.wav"),
        )

    def test_ids_union(self) -> None:
        """ids() lists every prompt of the language from every directory, once."""
        library = PromptLibrary([str(self.site), str(self.system)])
        self.assertEqual(library.ids(), ["digits/1", "site/welcome", "vm/goodbye"])
        self.assertEqual(library.rates("site/welcome"), [8000])
        self.assertIn("vm/goodbye", library)
        self.assertNotIn("vm/nothing", library)

    def test_language_pack(self) -> None:
        """Another language reads only its own directory."""
        library = PromptLibrary([str(self.site), str(self.system)], language="fr")
        self.assertEqual(library.ids(), ["digits/1"])

    def test_missing_id(self) -> None:
        """A missing prompt raises a KeyError naming the id, rate and directories."""
        library = PromptLibrary([str(self.site), str(self.system)])
        e = self.assertRaises(KeyError, library.path, "vm/nothing", 8000)
        self.assertIsInstance(e, PromptNotFound)
        message = str(e)
        self.assertIn("'vm/nothing'", message)
        self.assertIn("8000 Hz", message)
        self.assertIn(str(self.site / "en"), message)
        self.assertIn(str(self.system / "en"), message)

    def test_missing_rate(self) -> None:
        """A prompt recorded only at 8000 Hz is missing at 16000 Hz."""
        library = PromptLibrary([str(self.site), str(self.system)])
        self.assertRaises(PromptNotFound, library.path, "site/welcome", 16000)

    def test_say_checks_prompts_exist(self) -> None:
        """A say helper needing a prompt the library lacks raises PromptNotFound naming it."""
        library = PromptLibrary([str(self.site), str(self.system)])
        self.assertEqual(library.say_digits("1"), ["digits/1"])
        e = self.assertRaises(PromptNotFound, library.say_digits, "12")
        self.assertIn("'digits/2'", str(e))

    def test_rescan(self) -> None:
        """rescan() picks up a prompt added after the library was built."""
        library = PromptLibrary([str(self.site), str(self.system)])
        write_wav(self.site / "en" / "8000" / "digits" / "2.wav")
        self.assertNotIn("digits/2", library)
        library.rescan()
        self.assertIn("digits/2", library)

    def test_paths_must_be_a_list(self) -> None:
        """A single string for paths is refused rather than read letter by letter."""
        self.assertRaises(TypeError, PromptLibrary, str(self.site))

    def test_default_finds_shipped_prompts(self) -> None:
        """The default library finds the shipped English prompts at both rates."""
        self.assertTrue(Path(default_prompt_dir(), "en", "prompts.yaml").is_file())
        library = PromptLibrary()
        self.assertEqual(sorted(library.ids()), sorted(load_catalogue()))
        for rate in RATES:
            self.assertTrue(Path(library.path("vm/goodbye", rate)).is_file())


