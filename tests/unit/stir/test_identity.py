"""Tests for :mod:`pbx.stir.identity`: the Identity header (RFC 8224 §4.1)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.stir.identity import (
    IdentityError,
    build_identity,
    parse_identity,
    split_identities,
)

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2lnbmF0dXJl"
X5U = "https://certs.example.com/shaken.pem"


class BuildTests(SynchronousTestCase):
    """Building the header value."""

    def test_shape(self) -> None:
        """The value is the token, then info in angle brackets, alg and ppt."""
        self.assertEqual(
            build_identity(TOKEN, X5U), f"{TOKEN};info=<{X5U}>;alg=ES256;ppt=shaken"
        )

    def test_round_trip(self) -> None:
        """What is built parses back to the same token and parameters."""
        header = parse_identity(build_identity(TOKEN, X5U))
        self.assertEqual(
            (header.token, header.info, header.alg, header.ppt),
            (TOKEN, X5U, "ES256", "shaken"),
        )


class ParseTests(SynchronousTestCase):
    """Parsing what peers send."""

    def test_whitespace_order_case(self) -> None:
        """White space around ; and =, any parameter order and upper-case names are accepted."""
        header = parse_identity(
            f"  {TOKEN} ; PPT = shaken ;alg=ES256;  info = <{X5U}>  "
        )
        self.assertEqual(
            (header.token, header.info, header.alg, header.ppt),
            (TOKEN, X5U, "ES256", "shaken"),
        )
        self.assertEqual(
            header.params, (("ppt", "shaken"), ("alg", "ES256"), ("info", X5U))
        )

    def test_quoted_and_unknown_parameters(self) -> None:
        """A quoted ppt and unknown parameters are kept."""
        header = parse_identity(f'{TOKEN};info=<{X5U}>;ppt="shaken";x-vendor=1')
        self.assertEqual(header.ppt, "shaken")
        self.assertIn(("x-vendor", "1"), header.params)

    def test_only_info(self) -> None:
        """alg and ppt are optional (the JWS header is authoritative)."""
        header = parse_identity(f"{TOKEN};info=<{X5U}>")
        self.assertIsNone(header.alg)
        self.assertIsNone(header.ppt)

    def test_compact_form_token(self) -> None:
        """A token with an empty middle part (compact form) parses; the verifier judges it."""
        self.assertEqual(parse_identity(f"abc..def;info=<{X5U}>").token, "abc..def")

    def test_malformed(self) -> None:
        """Malformed values are refused with a reason."""
        bad = [
            "",
            f";info=<{X5U}>",
            f"notajws;info=<{X5U}>",
            f"{TOKEN}",
            f"{TOKEN};alg=ES256",
            f"{TOKEN};info={X5U}",
            f"{TOKEN};info=<{X5U}",
            f"{TOKEN};info=<>",
            f"{TOKEN};info=<https://a b>",
            f"{TOKEN};info=<{X5U}>;info=<{X5U}>",
            f"{TOKEN};info=<{X5U}>;alg",
            f"{TOKEN};info=<{X5U}> garbage",
            f'{TOKEN};info=<{X5U}>;ppt="shaken',
            f"{TOKEN} x;info=<{X5U}>",
            f"{TOKEN};info=<{X5U}>;" + "a" * 9000,
        ]
        for value in bad:
            with self.assertRaises(IdentityError, msg=value):
                parse_identity(value)


class SplitTests(SynchronousTestCase):
    """Several values in one header line."""

    def test_commas(self) -> None:
        """Values separated by commas are split; a comma inside <...> stays."""
        one = f"{TOKEN};info=<https://c.example.com/a,b.pem>;ppt=shaken"
        two = f"{TOKEN};info=<{X5U}>"
        self.assertEqual(split_identities([f"{one} , {two}", "", two]), [one, two, two])
