"""
The ``trunks:`` and ``rates:`` sections: frozen values, validated at load.

Pure code: no Twisted, no sockets.  Every problem is a
:class:`~pbx.errors.ConfigError` naming the key, e.g.
``trunks.carrier.uri: must be a sip: or sips: URI``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from pbx.calls.dialplan import (
    Action,
    Dialplan,
    HangUp,
    ToApplication,
    ToExtension,
    ToTrunks,
)
from pbx.errors import ConfigError
from pbx.media.srtp_policy import srtp_policy_problem
from pbx.security.networks import Network, contains, parse_networks
from pbx.sip.auth import SUPPORTED_ALGORITHMS
from pbx.sip.uri import URI, parse_uri
from pbx.trunks.numbers import E164, normalise

__all__ = [
    "RateTable", "Source", "TrunkConfig", "TrunksConfig", "check_trunk_routes", "parse_rates", "parse_source",
    "parse_trunk", "parse_trunks",
]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_TRANSPORTS = ("udp", "tcp", "tls")
_DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
_KEYS = {
    "uri", "username", "auth_username", "password", "register", "register_expires", "caller_id", "dids",
    "allow_from", "transport", "codecs", "max_calls", "outbound_proxy", "keepalive", "verify", "ca",
    "weight", "setup_timeout", "country_code", "from_domain", "moh", "srtp",
}


@frozen
class Source:
    """
    Where a trunk's INVITEs come from: a network, and optionally one port
    (``192.0.2.0/24``, ``198.51.100.7:5060``, ``[2001:db8::1]:5060``), as
    Kamailio's permissions table matches address and port.
    """

    network: Network
    port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        """Whether a request from ``host``:``port`` comes from here."""
        return (self.port is None or self.port == port) and contains((self.network,), host)

    def __str__(self) -> str:
        if self.port is None:
            return str(self.network)
        text = str(self.network.network_address) if self.network.num_addresses == 1 else str(self.network)
        return f"[{text}]:{self.port}" if ":" in text else f"{text}:{self.port}"


def parse_source(text: str) -> Source:
    """
    A ``allow_from`` entry.

    :raises ValueError: naming the entry that is not a network, address or address:port.
    """
    text = text.strip()
    port = None
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([0-9.]+(?:/[0-9]+)?):([0-9]{1,5})", text)
    if m:
        text = m.group(1) or m.group(3)
        port = int(m.group(2) or m.group(4))
        if not 0 < port < 65536:
            raise ValueError(f"{port} is not a port")
    [network] = parse_networks([text])
    return Source(network, port)


@frozen
class TrunkConfig:
    """
    One trunk: a carrier or another PBX that calls go out through and come in from.

    :ivar name: the key under ``trunks:``.
    :ivar uri: where calls go (its host, port and ``transport``).
    :ivar transport: ``udp``, ``tcp`` or ``tls``.
    :ivar username: the account (digest user, REGISTER's AOR user, our Contact user).
    :ivar auth_username: the digest user name when it differs from ``username``.
    :ivar register: whether pbx keeps a registration with the carrier (RFC 3261 §10).
    :ivar caller_id: the number calls out carry when no other rule names one.
    :ivar dids: E.164 number -> where an inbound call to it goes.
    :ivar allow_from: where INVITEs that belong to this trunk come from (IP authentication).
    :ivar codecs: the codecs offered to the trunk, by name; empty: all.
    :ivar max_calls: concurrent calls at most; 0 for no limit.
    :ivar outbound_proxy: where requests are sent instead of ``uri``'s host, if set.
    :ivar keepalive: seconds between OPTIONS pings; 0 for none.
    :ivar verify: (TLS) whether the carrier's certificate is verified.
    :ivar ca: (TLS) a PEM file of trusted CAs; empty: the system's.
    :ivar weight: share of calls in weighted load sharing.
    :ivar setup_timeout: seconds the carrier has to answer an INVITE at all
        (any response) before the call fails over.
    :ivar country_code: how national numbers from this trunk become E.164.
    :ivar moh: the music-on-hold class a party beyond this trunk hears when
        held ("": the holding extension's); a DID's or a route's wins
        (:mod:`pbx.trunks.moh`).
    :ivar did_moh: E.164 number -> the class callers of that DID hear when held.
    :ivar srtp: SRTP towards the trunk (``off``, ``offered``, ``required``;
        keys only when ``transport`` is ``tls``).
    """

    name: str
    uri: URI
    transport: str = "udp"
    username: str = ""
    auth_username: str = ""
    password: str = field(default="", repr=False)
    register: bool = False
    register_expires: int = 3600
    caller_id: str = ""
    dids: Mapping[str, Action] = field(factory=dict)
    allow_from: tuple[Source, ...] = ()
    codecs: tuple[str, ...] = ()
    max_calls: int = 0
    outbound_proxy: URI | None = None
    keepalive: int = 0
    verify: bool = True
    ca: str = ""
    weight: int = 1
    setup_timeout: int = 8
    country_code: str = "1"
    from_domain: str = ""
    moh: str = ""
    did_moh: Mapping[str, str] = field(factory=dict)
    srtp: str = "offered"
    #: FIPS mode (``security.fips``): SHA-256 digests and approved TLS suites only.
    approved_only: bool = False

    @property
    def digest_algorithms(self) -> tuple[str, ...]:
        """The digest algorithms pbx answers the carrier's challenges with."""
        return ("SHA-256",) if self.approved_only else SUPPORTED_ALGORITHMS

    @property
    def host(self) -> str:
        """The carrier's host (domain of REGISTER and of the numbers we call)."""
        return self.uri.host_address

    @property
    def port(self) -> int:
        """The carrier's port."""
        return self.uri.port or _DEFAULT_PORTS[self.transport]

    @property
    def next_hop(self) -> tuple[str, int]:
        """Where requests are sent: the outbound proxy, else the carrier."""
        if self.outbound_proxy is not None:
            proxy = self.outbound_proxy
            return proxy.host_address, proxy.port or _DEFAULT_PORTS[self.transport]
        return self.host, self.port

    @property
    def digest_user(self) -> str:
        """The user name digest responses are computed with."""
        return self.auth_username or self.username

    def public(self) -> dict[str, Any]:
        """A JSON-ready view without the password."""
        return {
            "name": self.name, "uri": str(self.uri), "transport": self.transport, "username": self.username,
            "register": self.register, "caller_id": self.caller_id,
            "dids": {number: describe(action) | ({"moh": self.did_moh[number]} if number in self.did_moh else {})
                     for number, action in self.dids.items()},
            "allow_from": [str(n) for n in self.allow_from], "codecs": list(self.codecs),
            "max_calls": self.max_calls,
            "outbound_proxy": str(self.outbound_proxy) if self.outbound_proxy is not None else "",
            "keepalive": self.keepalive, "verify": self.verify, "weight": self.weight,
            "setup_timeout": self.setup_timeout, "password_set": bool(self.password),
            **({"moh": self.moh} if self.moh else {}),
            "srtp": self.srtp,
        }


def describe(action: Action) -> dict[str, Any]:
    """A DID target as the config spells it."""
    if isinstance(action, ToExtension):
        return {"extension": action.number}
    if isinstance(action, ToApplication):
        return {"app": action.name, "args": dict(action.args)}
    if isinstance(action, ToTrunks):
        return {"trunk": list(action.trunks)}
    if isinstance(action, HangUp):
        return {"hangup": action.status}
    return {"group": action.name}


@frozen
class RateTable:
    """
    Prices per minute by trunk and number prefix (``rates:``): least-cost routing.

    :ivar prices: trunk name -> ((prefix, price per minute), ...), longest prefix first.
    """

    prices: Mapping[str, tuple[tuple[str, float], ...]] = field(factory=dict)

    def price(self, trunk: str, number: str) -> float | None:
        """The price per minute of calling ``number`` through ``trunk`` (longest prefix wins), or None."""
        digits = number.lstrip("+")
        for prefix, price in self.prices.get(trunk, ()):
            if digits.startswith(prefix):
                return price
        return None

    def public(self) -> dict[str, dict[str, float]]:
        """A JSON-ready view."""
        return {trunk: dict(rows) for trunk, rows in self.prices.items()}


@frozen
class TrunksConfig:
    """Every trunk, in the order configured, and the rate table."""

    trunks: tuple[TrunkConfig, ...] = ()
    rates: RateTable = RateTable()
    #: FIPS mode: every trunk, those added later too, keeps to approved algorithms.
    approved_only: bool = False

    def get(self, name: str) -> TrunkConfig | None:
        """The trunk called ``name``."""
        return next((t for t in self.trunks if t.name == name), None)


def _str(value: Any, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(key, "must be a string")
    return str(value)


def _int(value: Any, key: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(key, f"must be a whole number from {low} to {high}")
    return value


def _bool(value: Any, key: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(key, "must be true or false")
    return value


def _list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, "must be a list of strings")
    return value


def _sip_uri(text: str, key: str) -> URI:
    try:
        uri = parse_uri(text)
    except ValueError as e:
        raise ConfigError(key, f"{text!r} is not a SIP URI: {e}") from None
    if not uri.is_sip or not uri.host:
        raise ConfigError(key, "must be a sip: or sips: URI with a host")
    return uri


def _did_target(value: Any, key: str) -> Action:
    if not isinstance(value, dict) or len({"extension", "app"} & set(value)) != 1:
        raise ConfigError(key, "needs {extension: N} or {app: NAME, args: {...}}")
    unknown = set(value) - {"extension", "app", "args", "moh"}
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
    if "extension" in value:
        number = _str(value["extension"], f"{key}.extension")
        if not re.fullmatch(r"[0-9]{2,10}", number):
            raise ConfigError(f"{key}.extension", f"{number!r} is not an extension number")
        return ToExtension(number)
    args = value.get("args") or {}
    if not isinstance(value["app"], str) or not isinstance(args, dict):
        raise ConfigError(f"{key}.app", "needs an application name and an args mapping")
    return ToApplication(value["app"], args)


def _class_name(value: Any, key: str) -> str:
    """A ``moh:`` entry; whether the class exists is checked with ``moh:`` (:mod:`pbx.trunks.moh`)."""
    if value is None:
        return ""
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be the name of a class in moh.classes")
    return value


def _caller_id(value: Any, key: str) -> str:
    text = _str(value, key)
    if text and not E164.fullmatch(text):
        raise ConfigError(key, f"{text!r} is not an E.164 number (+ and up to 15 digits)")
    return text


def _trunk(name: str, raw: Any, key: str) -> TrunkConfig:
    if not _NAME.fullmatch(name):
        raise ConfigError(key, "a trunk name is 1-32 lower-case letters, digits, - and _")
    if not isinstance(raw, dict):
        raise ConfigError(key, "must be a mapping with uri:")
    unknown = set(map(str, raw)) - _KEYS
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
    if "uri" not in raw:
        raise ConfigError(f"{key}.uri", "is required")
    uri = _sip_uri(_str(raw["uri"], f"{key}.uri"), f"{key}.uri")
    transport = (_str(raw.get("transport"), f"{key}.transport") or uri.param("transport")
                 or ("tls" if uri.scheme == "sips" else "udp")).lower()
    if transport not in _TRANSPORTS:
        raise ConfigError(f"{key}.transport", "must be udp, tcp or tls")
    dids_raw = raw.get("dids") or {}
    if not isinstance(dids_raw, dict):
        raise ConfigError(f"{key}.dids", "must be a mapping of E.164 numbers to targets")
    country = _str(raw.get("country_code"), f"{key}.country_code") or "1"
    if not re.fullmatch(r"[1-9][0-9]{0,2}", country):
        raise ConfigError(f"{key}.country_code", "must be 1-3 digits")
    dids: dict[str, Action] = {}
    did_moh: dict[str, str] = {}
    for number, target in dids_raw.items():
        did_key = f"{key}.dids.{number}"
        e164 = normalise(str(number), country)
        if e164 is None:
            raise ConfigError(did_key, "is not a phone number")
        dids[e164] = _did_target(target, did_key)
        if moh := _class_name(target.get("moh"), f"{did_key}.moh"):
            did_moh[e164] = moh
    try:
        allow_from = tuple(parse_source(t) for t in _list(raw.get("allow_from"), f"{key}.allow_from"))
    except ValueError as e:
        raise ConfigError(f"{key}.allow_from", str(e)) from None
    username = _str(raw.get("username"), f"{key}.username")
    password = _str(raw.get("password"), f"{key}.password")
    register = _bool(raw.get("register"), f"{key}.register", False)
    if register and not username:
        raise ConfigError(f"{key}.username", "is required to register")
    proxy_text = _str(raw.get("outbound_proxy"), f"{key}.outbound_proxy")
    codecs = tuple(c.upper() for c in _list(raw.get("codecs"), f"{key}.codecs"))
    return TrunkConfig(
        name=name, uri=uri, transport=transport, username=username,
        auth_username=_str(raw.get("auth_username"), f"{key}.auth_username"), password=password,
        register=register,
        register_expires=_int(raw.get("register_expires"), f"{key}.register_expires", 3600, 60, 86400),
        caller_id=_caller_id(raw.get("caller_id"), f"{key}.caller_id"), dids=dids, allow_from=allow_from,
        codecs=codecs, max_calls=_int(raw.get("max_calls"), f"{key}.max_calls", 0, 0, 100_000),
        outbound_proxy=_sip_uri(proxy_text, f"{key}.outbound_proxy") if proxy_text else None,
        keepalive=_int(raw.get("keepalive"), f"{key}.keepalive", 0, 0, 3600),
        verify=_bool(raw.get("verify"), f"{key}.verify", True), ca=_str(raw.get("ca"), f"{key}.ca"),
        weight=_int(raw.get("weight"), f"{key}.weight", 1, 0, 1000),
        setup_timeout=_int(raw.get("setup_timeout"), f"{key}.setup_timeout", 8, 1, 120),
        country_code=country, from_domain=_str(raw.get("from_domain"), f"{key}.from_domain"),
        moh=_class_name(raw.get("moh"), f"{key}.moh"), did_moh=did_moh,
        srtp=_srtp(raw.get("srtp", "offered"), f"{key}.srtp"),
    )


def _srtp(value: Any, key: str) -> str:
    if problem := srtp_policy_problem(value):
        raise ConfigError(key, problem)
    return str(value)


def parse_trunk(name: str, raw: Any, key: str = "") -> TrunkConfig:
    """
    Validate one trunk as ``trunks:`` holds it (the API's trunks are checked the same way).

    :param key: prefixes the field names of errors (``trunks.carrier``); "" names the fields alone.
    :raises ConfigError: naming the field and the problem.
    """
    if not key:
        if not _NAME.fullmatch(name):
            raise ConfigError("name", "a trunk name is 1-32 lower-case letters, digits, - and _")
        try:
            return _trunk(name, raw, "_")
        except ConfigError as e:
            raise ConfigError(e.key.removeprefix("_.").removeprefix("_"), e.problem) from None
    return _trunk(name, raw, key)


def parse_rates(raw: Any, trunks: tuple[TrunkConfig, ...]) -> RateTable:
    """
    Validate ``rates:``: ``{trunk: {prefix: price per minute}}``.

    :raises ConfigError: naming the entry and the problem.
    """
    if raw is None:
        return RateTable()
    if not isinstance(raw, dict):
        raise ConfigError("rates", "must map trunk names to {prefix: price per minute}")
    names = {t.name for t in trunks}
    prices: dict[str, tuple[tuple[str, float], ...]] = {}
    for trunk, table in raw.items():
        key = f"rates.{trunk}"
        if trunk not in names:
            raise ConfigError(key, f"no trunk named {trunk!r}")
        if not isinstance(table, dict):
            raise ConfigError(key, "must map number prefixes to prices per minute")
        rows = []
        for prefix, price in table.items():
            text = str(prefix).lstrip("+")
            if not re.fullmatch(r"[0-9]{0,15}", text):
                raise ConfigError(f"{key}.{prefix}", "a prefix is digits (an optional + first)")
            if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
                raise ConfigError(f"{key}.{prefix}", "a price is a number >= 0")
            rows.append((text, float(price)))
        prices[str(trunk)] = tuple(sorted(rows, key=lambda r: -len(r[0])))
    return RateTable(prices)


def parse_trunks(raw: Any, rates: Any = None) -> TrunksConfig:
    """
    Validate ``trunks:`` (a mapping of name to trunk) and ``rates:``.

    :raises ConfigError: naming the key and the problem.
    """
    if raw is None:
        trunks: tuple[TrunkConfig, ...] = ()
    elif not isinstance(raw, dict):
        raise ConfigError("trunks", "must map trunk names to trunks")
    else:
        trunks = tuple(_trunk(str(name), value, f"trunks.{name}") for name, value in raw.items())
    seen: dict[str, str] = {}
    for trunk in trunks:
        for number in trunk.dids:
            if number in seen:
                raise ConfigError(f"trunks.{trunk.name}.dids.{number}", f"is a DID of trunk {seen[number]} too")
            seen[number] = trunk.name
    return TrunksConfig(trunks, parse_rates(rates, trunks))


def check_trunk_routes(dialplan: Dialplan, trunks: TrunksConfig) -> None:
    """
    Every ``trunk:`` the dialplan names is configured.

    :raises ConfigError: ``dialplan[i].trunk: no trunk named 'x'``.
    """
    for i, route in enumerate(dialplan.routes):
        if isinstance(route.action, ToTrunks):
            for name in route.action.trunks:
                if trunks.get(name) is None:
                    raise ConfigError(f"dialplan[{i}].trunk", f"no trunk named {name!r}")
