"""
Password hashing, checking and generation for administrators and PINs.

Hashes are PBKDF2-HMAC-SHA256 (NIST SP 800-132, OWASP 2023: 600,000
iterations) in a self-describing string::

    pbkdf2-sha256$<iterations>$<salt, base64>$<key, base64>

so the cost can be raised later and old hashes upgraded at the next login
(:func:`needs_rehash`).  Passwords are NFC-normalised before hashing
(RFC 8265 §4.2, OpaqueString), so the same password typed on two keyboards
that compose accents differently still matches.

Hashing at the default cost takes about half a second: callers on the
reactor thread run these functions in a thread pool.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string
import unicodedata

__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_PIN_LENGTH",
    "generate_password",
    "generate_pin",
    "hash_password",
    "is_hash",
    "needs_rehash",
    "password_problem",
    "pin_problem",
    "verify_password",
]

MAX_PIN_LENGTH = 12
"""Longest PIN (voicemail on a phone, the API's user login) accepted."""

DEFAULT_ITERATIONS = 600_000
"""PBKDF2-HMAC-SHA256 work factor recommended by OWASP (2023)."""

_SCHEME = "pbkdf2-sha256"
_SALT_BYTES = 16
_KEY_BYTES = 32
# A stored hash claiming more work than this is refused rather than run: a
# tampered row must not be able to pin a worker thread for minutes.
_MAX_ITERATIONS = 10_000_000

# Letters and digits without the look-alikes 0/O/o, 1/l/I, so a generated
# password can be read over the phone or typed from a printout.
_UPPER = "".join(c for c in string.ascii_uppercase if c not in "IO")
_LOWER = "".join(c for c in string.ascii_lowercase if c not in "lo")
_DIGITS = "23456789"
_ALPHABET = _UPPER + _LOWER + _DIGITS

# Frequently leaked passwords long enough to pass the length check; shorter
# ones are refused by length already.  Compared case-insensitively, also
# after stripping trailing digits and punctuation ("Password2024!").
_COMMON = frozenset(
    """
    password passw0rd password1 password12 password123 password1234
    p@ssword p@ssw0rd 123456789 1234567890 12345678910 0123456789
    0987654321 9876543210 1111111111 0000000000 1234512345 123123123
    123456123456 1q2w3e4r5t 1q2w3e4r5t6y 1qaz2wsx3edc qwertyuiop
    qwertyuiop123 qwerty123 qwerty1234 qwerty12345 qwertyui asdfghjkl
    zxcvbnm zxcvbnm123 qazwsxedc qazwsxedcrfv abcdefghij abc123456
    abcd1234 abcdefg123 iloveyou iloveyou1 iloveyou123 sunshine
    princess football baseball basketball superman batman trustno1
    letmein letmein123 welcome welcome1 welcome123 administrator
    admin123 admin1234 adminadmin changeme changeme123 default
    secret secret123 monkey dragon master shadow michael jennifer
    starwars whatever freedom computer internet liverpool chocolate
    photoshop123 mustang access123 hello123 helloworld voicemail
    asterisk freepbx sippassword telephone
    """.split()
)

_TRAILING_JUNK = string.digits + string.punctuation + " "


def _normalise(password: str) -> bytes:
    # surrogatepass: a lone surrogate (from a broken client) hashes instead of
    # raising; it can only ever match itself.
    return unicodedata.normalize("NFC", password).encode("utf-8", "surrogatepass")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _derive(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(
        "sha256", _normalise(password), salt, iterations, dklen=_KEY_BYTES
    )


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS) -> str:
    """
    Hash ``password`` with PBKDF2-HMAC-SHA256 and a fresh 16-byte salt.

    :param password: the secret to hash.
    :param iterations: PBKDF2 work factor; lower it only in tests.
    :returns: ``pbkdf2-sha256$<iterations>$<salt b64>$<key b64>``.
    :raises ValueError: if ``iterations`` is not a positive integer within
        the accepted range.
    """
    if isinstance(iterations, bool) or not 1 <= iterations <= _MAX_ITERATIONS:
        raise ValueError(f"iterations must be 1-{_MAX_ITERATIONS}, not {iterations!r}")
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(password, salt, iterations)
    return f"{_SCHEME}${iterations}${_b64(salt)}${_b64(key)}"


def _decode(encoded: str) -> tuple[int, bytes, bytes] | None:
    """Split an encoding into (iterations, salt, key), or None if malformed."""
    if not isinstance(encoded, str):
        return None
    parts = encoded.split("$")
    if len(parts) != 4 or parts[0] != _SCHEME:
        return None
    text = parts[1]
    # ASCII digits only, no sign, no leading zero, no "_" (int() allows these).
    if not (text.isascii() and text.isdigit()) or text.startswith("0"):
        return None
    iterations = int(text)
    if iterations > _MAX_ITERATIONS:
        return None
    try:
        salt, key = _unb64(parts[2]), _unb64(parts[3])
    except (binascii.Error, UnicodeEncodeError):
        return None
    if not salt or len(key) != _KEY_BYTES:
        return None
    return iterations, salt, key


def is_hash(encoded: str) -> bool:
    """
    Tell whether ``encoded`` is a well-formed :func:`hash_password` encoding.

    :param encoded: the candidate (from a config file, say).
    :returns: whether it decodes.
    """
    return _decode(encoded) is not None


def verify_password(password: str, encoded: str) -> bool:
    """
    Check ``password`` against a :func:`hash_password` encoding.

    The comparison is constant-time.  A malformed or unknown encoding is a
    mismatch, never an exception, so a damaged row cannot crash a login.

    :param password: the secret presented.
    :param encoded: the stored encoding.
    :returns: whether the password matches.
    """
    decoded = _decode(encoded)
    if decoded is None or not isinstance(password, str):
        return False
    iterations, salt, key = decoded
    return hmac.compare_digest(_derive(password, salt, iterations), key)


def needs_rehash(encoded: str, iterations: int = DEFAULT_ITERATIONS) -> bool:
    """
    Tell whether a stored encoding is weaker than current policy.

    True for a malformed encoding, another scheme, fewer ``iterations``
    than asked for, or a short salt.  A hash with more iterations is kept:
    lowering the setting never weakens stored hashes.

    :param encoded: the stored encoding.
    :param iterations: the work factor now required.
    :returns: whether to store a fresh hash after the next successful login.
    """
    decoded = _decode(encoded)
    if decoded is None:
        return True
    have, salt, _ = decoded
    return have < iterations or len(salt) < _SALT_BYTES


def generate_password(length: int = 16) -> str:
    """
    Make a random password from letters and digits without look-alikes.

    Every result holds at least one upper-case letter, one lower-case letter
    and one digit; draws lacking one are discarded and redrawn, so results
    stay uniform over all such passwords.  16 characters carry about 93 bits.

    :param length: number of characters, at least 8.
    :returns: the new password.
    :raises ValueError: if ``length`` is below 8.
    """
    if length < 8:
        raise ValueError(
            f"a generated password needs at least 8 characters, not {length}"
        )
    while True:
        candidate = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        if (
            any(c in _UPPER for c in candidate)
            and any(c in _LOWER for c in candidate)
            and any(c in _DIGITS for c in candidate)
        ):
            return candidate


def _kinds(password: str) -> int:
    lower = upper = digit = other = False
    for c in password:
        if c.islower():
            lower = True
        elif c.isupper():
            upper = True
        elif c.isdigit():
            digit = True
        else:
            other = True
    return lower + upper + digit + other


def password_problem(
    password: str, *, username: str = "", min_length: int = 10
) -> str | None:
    """
    Say what, if anything, makes ``password`` too weak to accept.

    Checks, in order: length (in characters, after NFC), the user name
    appearing in it (case-insensitive; names under 3 characters are not
    checked, or every password holding a "1" would fail for user "1"),
    a list of commonly leaked passwords, and use of at least two kinds of
    character (lower case, upper case, digits, others).

    :param password: the candidate password.
    :param username: the account it is for.
    :param min_length: fewest characters accepted.
    :returns: a short phrase such as ``"shorter than 10 characters"``, or
        None when the password is acceptable.
    """
    password = unicodedata.normalize("NFC", password)
    if len(password) < min_length:
        return f"shorter than {min_length} characters"
    folded = password.casefold()
    name = unicodedata.normalize("NFC", username).casefold()
    if len(name) >= 3 and name in folded:
        return "contains the user name"
    if folded in _COMMON or folded.rstrip(_TRAILING_JUNK) in _COMMON:
        return "is a commonly used password"
    if _kinds(password) < 2:
        return "uses only one kind of character"
    return None


def pin_problem(pin: str, mailbox: str, min_length: int = 4) -> str | None:
    """
    Say what, if anything, makes ``pin`` unacceptable as a PIN (voicemail, user login).

    :param pin: the candidate.
    :param mailbox: the mailbox it is for (the PIN may not be its number).
    :param min_length: fewest digits accepted.
    :returns: a short phrase, or None when the PIN is acceptable.
    """
    if not (pin.isascii() and pin.isdigit()):
        return "use digits only"
    if len(pin) < min_length:
        return f"use at least {min_length} digits"
    if len(pin) > MAX_PIN_LENGTH:
        return f"use at most {MAX_PIN_LENGTH} digits"
    if len(set(pin)) == 1:
        return "do not repeat one digit"
    steps = {int(b) - int(a) for a, b in zip(pin, pin[1:], strict=False)}
    if steps in ({1}, {-1}):
        return "do not use a run of digits"
    if pin == mailbox:
        return "do not use the mailbox number"
    return None


def generate_pin(mailbox: str, length: int = 6) -> str:
    """
    A random PIN that passes :func:`pin_problem`.

    :param mailbox: the mailbox it is for.
    :param length: digits, 4 to 12.
    """
    while True:
        pin = "".join(secrets.choice("0123456789") for _ in range(length))
        if pin_problem(pin, mailbox, length) is None:
            return pin
