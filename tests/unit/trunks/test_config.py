"""The ``trunks:`` and ``rates:`` sections, the ``trunk:`` route, and E.164 numbers."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.dialplan import ToApplication, ToExtension, ToTrunks
from pbx.config import parse_config
from pbx.errors import ConfigError
from pbx.trunks.numbers import normalise, sent_number

ISSUE_CONFIG = """
trunks:
  carrier:
    uri: "sip:127.0.0.1:25090;transport=udp"
    username: "acct-1"
    password: "${CARRIER_PASSWORD}"
    register: true
    caller_id: "+15551230000"
    dids:
      "+15551230000": {extension: "1001"}
      "+15551230001": {app: attendant, args: {menu: main}}
  backup:
    uri: "sip:127.0.0.1:25092"
    allow_from: ["127.0.0.2/32"]          # IP-authenticated
dialplan:
  - {match: "_9NXXNXXXXXX", trunk: [carrier, backup], strip: 1, prepend: "+1"}
"""


def problem(text: str, environ: dict[str, str] | None = None) -> str:
    """The ``key: problem`` a config is refused with."""
    try:
        parse_config(text, environ=environ or {})
    except ConfigError as e:
        return str(e)
    raise AssertionError("accepted")


class TrunkConfigTests(SynchronousTestCase):
    """The issue's config shape loads; mistakes are named by key."""

    def test_issue_shape(self) -> None:
        """The example of the issue loads with the password from the environment."""
        config = parse_config(ISSUE_CONFIG, environ={"CARRIER_PASSWORD": "s3cret"})
        carrier, backup = config.trunks.trunks
        self.assertEqual(
            (carrier.name, carrier.host, carrier.port, carrier.transport, carrier.username, carrier.password,
             carrier.register, carrier.caller_id),
            ("carrier", "127.0.0.1", 25090, "udp", "acct-1", "s3cret", True, "+15551230000"),
        )
        self.assertEqual(dict(carrier.dids), {
            "+15551230000": ToExtension("1001"),
            "+15551230001": ToApplication("attendant", {"menu": "main"}),
        })
        self.assertEqual((backup.port, [str(n) for n in backup.allow_from], backup.register),
                         (25092, ["127.0.0.2/32"], False))
        [route] = config.dialplan.routes
        self.assertEqual(route.action, ToTrunks(("carrier", "backup"), 1, "+1", route_name="_9NXXNXXXXXX"))

    def test_password_never_in_repr(self) -> None:
        """A trunk's repr and public view leave the password out."""
        config = parse_config(ISSUE_CONFIG, environ={"CARRIER_PASSWORD": "s3cret"})
        carrier = config.trunks.trunks[0]
        self.assertNotIn("s3cret", repr(carrier))
        self.assertNotIn("s3cret", repr(carrier.public()))
        self.assertTrue(carrier.public()["password_set"])

    def test_unset_environment_variable(self) -> None:
        """An unset ``${VAR}`` is refused naming the key and the variable."""
        self.assertEqual(problem(ISSUE_CONFIG),
                         "trunks.carrier.password: environment variable CARRIER_PASSWORD is not set")

    def test_mistakes(self) -> None:
        """Each mistake is named by its key."""
        cases = {
            "trunks: {t: {username: a}}": "trunks.t.uri: is required",
            "trunks: {t: {uri: 'http://x'}}": "trunks.t.uri: must be a sip: or sips: URI with a host",
            "trunks: {t: {uri: 'sip:h', colour: red}}": "trunks.t.colour: unknown key",
            "trunks: {t: {uri: 'sip:h', transport: sctp}}": "trunks.t.transport: must be udp, tcp or tls",
            "trunks: {t: {uri: 'sip:h', register: true}}": "trunks.t.username: is required to register",
            "trunks: {t: {uri: 'sip:h', allow_from: [nonsense]}}":
                "trunks.t.allow_from: 'nonsense' is not an address or network (CIDR)",
            "trunks: {t: {uri: 'sip:h', dids: {'+15551230000': {extension: x}}}}":
                "trunks.t.dids.+15551230000.extension: 'x' is not an extension number",
            "trunks: {t: {uri: 'sip:h', caller_id: '555'}}":
                "trunks.t.caller_id: '555' is not an E.164 number (+ and up to 15 digits)",
            "trunks: {t: {uri: 'sip:h'}}\ndialplan: [{match: '_9X.', trunk: [t, u]}]":
                "dialplan[0].trunk: no trunk named 'u'",
            "trunks: {t: {uri: 'sip:h'}}\ndialplan: [{match: '_9X.', trunk: t, strip: -1}]":
                "dialplan[0].strip: must be a number of digits, 0-20",
            "dialplan: [{match: '_9X.', extension: '1001', strip: 1}]": "dialplan[0].strip: goes with trunk: only",
            "trunks: {t: {uri: 'sip:h'}}\nrates: {u: {'1': 0.01}}": "rates.u: no trunk named 'u'",
            "trunks: {t: {uri: 'sip:h'}}\nrates: {t: {'1': -1}}": "rates.t.1: a price is a number >= 0",
            "trunks:\n  a: {uri: 'sip:h', dids: {'+15551230000': {extension: '1001'}}}\n"
            "  b: {uri: 'sip:i', dids: {'15551230000': {extension: '1002'}}}":
                "trunks.b.dids.+15551230000: is a DID of trunk a too",
        }
        for text, expected in cases.items():
            self.assertEqual(problem(text), expected, text)

    def test_srtp_policy(self) -> None:
        """A trunk's SRTP policy is offered by default, off or required when said; anything else names the key."""
        config = parse_config("trunks: {t: {uri: 'sip:h;transport=tls', transport: tls, srtp: required}, u: {uri: 'sip:i'}}")
        t, u = config.trunks.trunks
        self.assertEqual((t.srtp, u.srtp, t.public()["srtp"]), ("required", "offered", "required"))
        self.assertEqual(problem("trunks: {t: {uri: 'sip:h', srtp: yes}}"),
                         "trunks.t.srtp: must be one of off, offered, required, not True")

    def test_allow_from_with_ports(self) -> None:
        """allow_from takes networks, addresses, and addresses with a port (IPv6 in brackets)."""
        config = parse_config(
            "trunks: {t: {uri: 'sip:h', allow_from: [192.0.2.0/24, 198.51.100.7:5070, '[2001:db8::1]:5060']}}")
        net, one, six = config.trunks.trunks[0].allow_from
        self.assertEqual([str(net), str(one), str(six)], ["192.0.2.0/24", "198.51.100.7:5070", "[2001:db8::1]:5060"])
        self.assertEqual([net.matches("192.0.2.9", 1), one.matches("198.51.100.7", 5070),
                          one.matches("198.51.100.7", 5060), six.matches("2001:db8::1", 5060)],
                         [True, True, False, True])
        self.assertEqual(problem("trunks: {t: {uri: 'sip:h', allow_from: ['1.2.3.4:70000']}}"),
                         "trunks.t.allow_from: 70000 is not a port")

    def test_rates_longest_prefix(self) -> None:
        """The longest prefix of a trunk's rate table prices a number; a trunk without one has no price."""
        config = parse_config(
            "trunks: {a: {uri: 'sip:h'}, b: {uri: 'sip:i'}}\n"
            "rates: {a: {'1': 0.02, '1900': 1.5, '+44': 0.03}}"
        )
        rates = config.trunks.rates
        self.assertEqual(
            [rates.price("a", n) for n in ("+15551234567", "+19005551234", "+442071234567", "+33123456789")],
            [0.02, 1.5, 0.03, None],
        )
        self.assertIsNone(rates.price("b", "+15551234567"))


class NumberTests(SynchronousTestCase):
    """Numbers from carriers become E.164."""

    def test_normalise(self) -> None:
        """+, 00 and 011 prefixes, national numbers and separators all end in one E.164 form."""
        for text in ("+15551230000", "15551230000", "5551230000", "011 1 555 123 0000", "(555) 123-0000",
                     "0015551230000"):
            self.assertEqual(normalise(text, "1"), "+15551230000", text)
        self.assertEqual(normalise("02071234567", "44"), "+442071234567")
        self.assertEqual(normalise("442071234567", "44"), "+442071234567")

    def test_not_numbers(self) -> None:
        """Words and over-long numbers are no phone numbers."""
        for text in ("alice", "+", "+1234567890123456", "555x", "1-800-FLOWERS", ""):
            self.assertIsNone(normalise(text, "1"), text)

    def test_sent_number(self) -> None:
        """Strip then prepend."""
        self.assertEqual(sent_number("95551234567", 1, "+1"), "+15551234567")
        self.assertEqual(sent_number("0044207", 2, "+"), "+44207")
