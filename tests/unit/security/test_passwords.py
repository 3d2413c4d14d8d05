"""Tests for :mod:`pbx.security.passwords`."""

from __future__ import annotations

import base64

from twisted.trial.unittest import SynchronousTestCase

from pbx.security.passwords import (
    generate_password,
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)

FAST = 1_000  # iterations for tests that are not about the work factor


class HashPasswordTests(SynchronousTestCase):
    """Hashing and verifying with :func:`hash_password` / :func:`verify_password`."""

    def test_round_trip(self) -> None:
        """A password verifies against its own hash."""
        encoded = hash_password("correct horse battery staple", iterations=FAST)
        self.assertTrue(verify_password("correct horse battery staple", encoded))

    def test_wrong_password(self) -> None:
        """A different password does not verify."""
        encoded = hash_password("correct horse battery staple", iterations=FAST)
        self.assertFalse(verify_password("correct horse battery stapler", encoded))
        self.assertFalse(verify_password("", encoded))

    def test_non_ascii(self) -> None:
        """A non-ASCII password verifies, whichever Unicode composition is typed."""
        encoded = hash_password("caf\u00e9-\u00fcber-\u5bc6\u7801", iterations=FAST)
        self.assertTrue(verify_password("cafe\u0301-u\u0308ber-\u5bc6\u7801", encoded))

    def test_default_iterations(self) -> None:
        """The default work factor is 600,000 iterations and is written in the hash."""
        encoded = hash_password("a default-cost password")
        scheme, iterations, salt, key = encoded.split("$")
        self.assertEqual((scheme, iterations), ("pbkdf2-sha256", "600000"))
        self.assertEqual(len(base64.b64decode(salt)), 16)
        self.assertEqual(len(base64.b64decode(key)), 32)
        self.assertFalse(needs_rehash(encoded))

    def test_salts_differ(self) -> None:
        """Hashing one password twice gives two different encodings, both valid."""
        first = hash_password("same password 1", iterations=FAST)
        second = hash_password("same password 1", iterations=FAST)
        self.assertNotEqual(first.split("$")[2], second.split("$")[2])
        self.assertNotEqual(first, second)
        self.assertTrue(verify_password("same password 1", second))

    def test_bad_iterations(self) -> None:
        """A zero or negative work factor is refused."""
        self.assertRaises(ValueError, hash_password, "x", iterations=0)
        self.assertRaises(ValueError, hash_password, "x", iterations=-5)

    def test_malformed_encodings(self) -> None:
        """Malformed or foreign encodings give False rather than an exception."""
        good = hash_password("pw", iterations=FAST)
        _, _, salt, key = good.split("$")
        for encoded in [
            "",
            "garbage",
            "pbkdf2-sha256$1000$",
            f"pbkdf2-sha1$1000${salt}${key}",
            f"pbkdf2-sha256$abc${salt}${key}",
            f"pbkdf2-sha256$-1000${salt}${key}",
            f"pbkdf2-sha256$01000${salt}${key}",
            f"pbkdf2-sha256$1_000${salt}${key}",
            f"pbkdf2-sha256$\u0661\u0660\u0660\u0660${salt}${key}",
            f"pbkdf2-sha256$0${salt}${key}",
            f"pbkdf2-sha256$99999999999999999999${salt}${key}",
            f"pbkdf2-sha256$1000$not*base64${key}",
            f"pbkdf2-sha256$1000${salt}$\u00e9\u00e9\u00e9\u00e9",
            f"pbkdf2-sha256$1000$${key}",
            f"pbkdf2-sha256$1000${salt}${key[:-4]}",
            f"pbkdf2-sha256$1000${salt}${key}$extra",
            "$".join(["pbkdf2-sha256", "1000", salt, key]).upper(),
            None,
            b"pbkdf2-sha256$1000$AAAA$AAAA",
        ]:
            self.assertIs(verify_password("pw", encoded), False, encoded)  # type: ignore[arg-type]

    def test_needs_rehash(self) -> None:
        """Weaker or malformed hashes need rehashing; equal or stronger ones do not."""
        encoded = hash_password("pw", iterations=FAST)
        self.assertTrue(needs_rehash(encoded))
        self.assertFalse(needs_rehash(encoded, iterations=FAST))
        self.assertFalse(needs_rehash(encoded, iterations=FAST // 2))
        self.assertTrue(needs_rehash(encoded, iterations=FAST + 1))
        self.assertTrue(needs_rehash("not a hash"))


class GeneratePasswordTests(SynchronousTestCase):
    """Random passwords from :func:`generate_password`."""

    def test_length_and_alphabet(self) -> None:
        """Generated passwords have the asked length and no look-alike characters."""
        for length in (8, 16, 20, 64):
            password = generate_password(length)
            self.assertEqual(len(password), length)
            self.assertFalse(set(password) & set("0O1lIo"))
            self.assertTrue(password.isascii() and password.isalnum())

    def test_character_kinds(self) -> None:
        """Every generated password has upper case, lower case and digits."""
        for _ in range(300):
            password = generate_password(8)
            self.assertTrue(any(c.isupper() for c in password), password)
            self.assertTrue(any(c.islower() for c in password), password)
            self.assertTrue(any(c.isdigit() for c in password), password)

    def test_passes_policy(self) -> None:
        """A default generated password passes the strength check."""
        for _ in range(50):
            password = generate_password()
            self.assertIsNone(password_problem(password, username="1001"))

    def test_unique(self) -> None:
        """A thousand generated passwords are all different."""
        self.assertEqual(len({generate_password() for _ in range(1000)}), 1000)

    def test_too_short(self) -> None:
        """Asking for fewer than 8 characters is refused."""
        self.assertRaises(ValueError, generate_password, 7)


class PasswordProblemTests(SynchronousTestCase):
    """The strength check :func:`password_problem`."""

    def test_acceptable(self) -> None:
        """A long, mixed password that is not common is acceptable."""
        self.assertIsNone(password_problem("Tr4in-st4tion-blue", username="alice"))

    def test_short(self) -> None:
        """A password under the minimum length is reported with the minimum."""
        self.assertEqual(password_problem("Ab3$x"), "shorter than 10 characters")
        self.assertEqual(
            password_problem("Ab3$xyzabc1", min_length=12), "shorter than 12 characters"
        )

    def test_contains_username(self) -> None:
        """A password containing the user name, in any case, is refused."""
        self.assertEqual(
            password_problem("my-Alice-pass99", username="alice"),
            "contains the user name",
        )
        self.assertEqual(
            password_problem("x1001secretY", username="1001"), "contains the user name"
        )

    def test_short_username_ignored(self) -> None:
        """A one- or two-character user name is not searched for."""
        self.assertIsNone(password_problem("Tr4in-st4tion-blue", username="4"))

    def test_common(self) -> None:
        """Commonly leaked passwords are refused, also with digits appended."""
        for password in ("password123", "Password2024!", "QWERTYUIOP", "1234567890"):
            self.assertEqual(
                password_problem(password), "is a commonly used password", password
            )

    def test_one_kind(self) -> None:
        """A password of only one kind of character is refused."""
        for password in ("abcdefghxyzw", "93847561029384", "QPWOEIRUTYZX"):
            self.assertEqual(
                password_problem(password), "uses only one kind of character", password
            )
