"""
The configuration file: YAML in, validated frozen values out.

Every problem is reported as a :class:`~pbx.errors.ConfigError` naming the key (dotted,
e.g. ``sip.listen[1]``) and the problem in a few words; the daemon turns it
into one line ``pbx: <file>: <key>: <problem>`` and exits.

Strings may refer to the environment: ``${NAME}`` (which must be set) and
``${NAME:-default}``; ``$$`` is a literal dollar sign.

Relative paths (``state_dir``, an SQLite ``database``, ``sip.tls`` files,
``security.log``, ``plugin_dirs``) are taken from the configuration file's directory, so the
PBX a file describes does not depend on where it was started from.  With no
``state_dir`` the state lives in one fixed place (:func:`default_state_dir`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from attrs import evolve, field, fields, frozen

from pbx.errors import ConfigError
from pbx.media.srtp_policy import srtp_policy_problem
from pbx.security.networks import parse_networks
from pbx.security.passwords import is_hash, password_problem
from pbx.security.ratelimit import DEFAULT_LIMITS, KINDS, Limit
from pbx.trunks.config import TrunksConfig, check_trunk_routes, parse_trunks
from pbx.validation import (
    admin_username_problem,
    display_name_problem,
    email_problem,
    extension_number_problem,
    pin_format_problem,
    text_problem,
)

T = TypeVar("T")


@frozen
class ListenSpec:
    """One SIP listener: ``udp:5060``, ``tcp:5060:interface=127.0.0.1``, ``tls:5061``."""

    transport: str
    port: int
    interface: str = ""

    def __str__(self) -> str:
        suffix = f":interface={self.interface}" if self.interface else ""
        return f"{self.transport}:{self.port}{suffix}"


@frozen
class TLSConfig:
    """Where the TLS certificate comes from and whether clients must present one."""

    certificate: str = ""  # PEM; empty => self-signed one in the state directory
    key: str = ""
    verify_clients: bool = False
    ca: str = ""
    #: FIPS mode (``security.fips``, not a key of this section): approved suites only.
    approved_only: bool = False


@frozen
class RegistrarConfig:
    """Registration expiry limits (RFC 3261 §10.3 steps 7 and 8)."""

    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600


@frozen
class SecurityConfig:
    """
    Brute-force lockout and digest nonce settings, shared by SIP and HTTP;
    per-source SIP rate limits, bans and the allow-list
    (:mod:`pbx.security.defence`).
    """

    nonce_lifetime: int = 300
    lockout_failures: int = 5
    #: Failures from one address, over every user it tries, before that
    #: address is locked out (a user's own budget is ``lockout_failures``;
    #: many users may share an address behind NAT or a reverse proxy).
    lockout_address_failures: int = 50
    lockout_window: int = 300
    lockout_delay: int = 30
    lockout_max_delay: int = 3600
    #: Networks (CIDR) never rate-limited, scored or banned.
    allow: tuple[str, ...] = ()
    #: Kind of SIP message -> its per-source token bucket.
    rate_limits: tuple[tuple[str, Limit], ...] = tuple(DEFAULT_LIMITS.items())
    ban_score: int = 100
    ban_time: int = 60
    ban_max_time: int = 86400
    #: The security log's file (failed logins and bans, for fail2ban); empty: none.
    log: str = ""
    #: Approved algorithms only, in crypto libraries in FIPS mode (:mod:`pbx.security.fips`).
    fips: bool = False
    #: Fewest characters in an API administrator's new password.
    password_min_length: int = 12
    #: Days an administrator's password may be used before it must be changed (0: no limit).
    password_max_age_days: int = 0


@frozen
class SIPConnectionsConfig:
    """
    The ``sip.connections`` section: bounds on the TCP and TLS connections
    phones open (see :mod:`pbx.sip.connections`).  A cap of 0 is derived
    from the descriptor limit at start (:mod:`pbx.descriptors`).
    """

    max_total: int = 0
    max_per_source: int = 0
    #: Seconds a new connection has to deliver one complete message (and finish TLS).
    first_message_timeout: int = 20
    #: Seconds a connection that carried a message may stay silent.
    idle_timeout: int = 600
    #: The largest message, in octets.
    max_message: int = 65536
    #: Octets of unfinished messages held over all connections.
    max_buffered: int = 16 * 1024 * 1024


@frozen
class SIPOverloadConfig:
    """
    The ``sip.overload`` section: how long requests may wait before new
    calls and registrations are refused with 503 (see :mod:`pbx.sip.overload`).
    """

    #: Milliseconds late (smoothed) before new challenge rounds are refused
    #: on any transport; 0 (the default): never.
    lag_ms: int = 0
    #: Milliseconds late before every new INVITE and REGISTER is refused.
    severe_lag_ms: int = 1000
    #: Seconds a refused client is asked to wait (Retry-After).
    retry_after: int = 5
    #: Milliseconds a new request may wait in the UDP receive queue before
    #: it is refused (0: never).  Clients over UDP send a request again
    #: after 500 ms (RFC 3261 §17.1.1.2).
    queue_ms: int = 200


@frozen
class APIConnectionsConfig:
    """
    The ``api.connections`` section: bounds on HTTP connections to the API.
    A cap of 0 is derived from the descriptor limit at start.
    """

    max_total: int = 0
    max_per_source: int = 0
    #: Seconds a connection may stay silent.
    idle_timeout: int = 60
    #: Seconds a request has to send its whole head (request line and headers).
    header_timeout: int = 20


@frozen
class SIPConfig:
    """The ``sip:`` section."""

    domain: str = "pbx.localdomain"
    listen: tuple[ListenSpec, ...] = ()
    tls: TLSConfig = TLSConfig()
    registrar: RegistrarConfig = RegistrarConfig()
    user_agent: str = "pbx"
    #: Host or address put in Via and Contact; default: each listener's
    #: interface, or this host's address for wildcard listeners.
    advertise: str = ""
    # RFC 8760 §2.4: challenge with these, in this order of preference.
    # MD5 alone by default: common phones (baresip 1.0, SIPp, sipsak) give up
    # on any SHA-256 challenge, even one listed after MD5.
    digest_algorithms: tuple[str, ...] = ("MD5",)
    connections: SIPConnectionsConfig = SIPConnectionsConfig()
    overload: SIPOverloadConfig = SIPOverloadConfig()


@frozen
class RTPConfig:
    """The ``rtp:`` section: the UDP port range media uses and where."""

    port_min: int = 10000
    port_max: int = 20000
    #: Address the relay binds (default: every address).
    interface: str = "0.0.0.0"
    #: Address put in SDP; default: the interface, or this host's address.
    advertise: str = ""


@frozen
class CallsConfig:
    """The ``calls:`` section: timers of the call controller."""

    #: Seconds an unanswered call rings before it fails (or forwards).
    ring_timeout: int = 30
    #: Seconds without any RTP in either direction before a call is ended.
    media_timeout: int = 60
    #: RFC 4028 Min-SE: the shortest session interval accepted.
    min_session_expires: int = 90


@frozen
class TransferConfig:
    """The ``transfer:`` section: call transfer (REFER) from phones."""

    #: Seconds a blind transfer's target rings before the transferor's phone is rung back.
    recall_after: int = 30
    #: Keys that, followed by a number, blind-transfer a call from a phone
    #: without a transfer key (RFC 4733 events or SIP INFO, :mod:`pbx.calls.keys`); "" for none.
    blind_code: str = "##"
    #: Keys that, followed by a number, put the other party on hold and
    #: call the number to consult it (attended transfer by keys); "" for none.
    attended_code: str = "*2"
    #: Keys that, followed by a number, call it and make a three-way call; "" for none.
    three_way_code: str = "*3"
    #: While consulting or in a three-way call: the keys that drop the third party; "" for none.
    cancel_code: str = "*"
    #: Whether a party on an outside line may transfer the call (keys or
    #: REFER) to an outside number; off against toll fraud.
    outside_keyed: bool = False


#: The values of ``log.level``, most verbose first.
LOG_LEVELS = ("debug", "info", "warn", "error")


@frozen
class LogConfig:
    """The ``log:`` section: the least severe events written to the daemon's log."""

    level: str = "info"


@frozen
class AdminConfig:
    """One API administrator; an empty password means "generate one at first start"."""

    username: str
    password: str = field(repr=False, default="")


DEFAULT_API_LISTEN = "tcp:8080:interface=127.0.0.1"


@frozen
class APIConfig:
    """The ``api:`` section."""

    listen: str = DEFAULT_API_LISTEN
    admins: tuple[AdminConfig, ...] = ()
    token_lifetime: int = 3600
    max_body: int = 1024 * 1024
    connections: APIConnectionsConfig = APIConnectionsConfig()


@frozen
class ExtensionConfig:
    """One extension from the config file; an empty password is generated at first start."""

    number: str
    name: str = ""
    password: str = field(repr=False, default="")
    #: The user's PIN (voicemail on a phone, the API's user login).
    pin: str = field(repr=False, default="")
    #: Or its PBKDF2 encoding, made beforehand (no PIN in the file, nothing to hash at start).
    pin_hash: str = field(repr=False, default="")
    email: str = ""
    #: SRTP policy of the extension's phones (``off``, ``offered``, ``required``).
    srtp: str = "offered"


@frozen
class Config:
    """The whole validated configuration."""

    path: str
    sip: SIPConfig
    rtp: RTPConfig
    api: APIConfig
    security: SecurityConfig
    database: str
    state_dir: str
    extensions: tuple[ExtensionConfig, ...]
    features: Mapping[str, Mapping[str, Any]]
    plugin_dirs: tuple[str, ...] = ()
    calls: CallsConfig = CallsConfig()
    transfer: TransferConfig = TransferConfig()
    dialplan: Any = None  # pbx.calls.dialplan.Dialplan
    #: SIP trunks, their DIDs and the rate table (``trunks:``, ``rates:``).
    trunks: TrunksConfig = TrunksConfig()
    log: LogConfig = LogConfig()
    emergency: Any = None  # pbx.emergency.options.EmergencyConfig
    #: Ring groups by name (pbx.calls.groups.RingGroup).
    groups: Mapping[str, Any] = field(factory=dict)
    #: Follow-me by extension number (pbx.calls.follow_me.FollowMe).
    follow_me: Mapping[str, Any] = field(factory=dict)
    #: Working hours by extension number, DND outside them (pbx.features.attendant.schedule.Schedule).
    dnd_schedule: Mapping[str, Any] = field(factory=dict)
    permissions: Any = None  # pbx.permissions.options.PermissionsConfig
    moh: Any = None  # pbx.media.moh_config.MusicOnHoldConfig
    park: Any = None  # pbx.calls.park_options.ParkConfig
    #: Call pickup groups by name: member extensions (pbx.calls.pickup).
    pickup_groups: Mapping[str, tuple[str, ...]] = field(factory=dict)
    #: STIR/SHAKEN (``stir_shaken:``): the options and the files they name, read at load.
    stir_shaken: Any = None  # pbx.stir.options.StirShakenOptions
    stir_credentials: Any = None  # pbx.stir.options.Credentials


# ---------------------------------------------------------------------------
# Loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys instead of keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if str(key) in {str(k) for k in mapping}:
            raise ConfigError(str(key), f"duplicate key (line {key_node.start_mark.line + 1})")
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)

_ENV = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")


def substitute_env(value: str, key: str, environ: Mapping[str, str]) -> str:
    """
    Replace ``${NAME}`` and ``${NAME:-default}`` in one string.

    :raises ConfigError: if ``NAME`` is not set and no default is given.
    """

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name is None:
            return "$"
        if name in environ and (environ[name] != "" or default is None):
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(key, f"environment variable {name} is not set")

    return _ENV.sub(replace, value)


#: Longest string the file may hold (after ``${...}`` substitution).
MAX_STRING = 4096


def _substitute(node: Any, key: str, environ: Mapping[str, str]) -> Any:
    """``node`` with the environment substituted; every string checked as text."""
    if isinstance(node, str):
        return _check(lambda v: text_problem(v, MAX_STRING), substitute_env(node, key, environ), key)
    if isinstance(node, list):
        return [_substitute(v, f"{key}[{i}]", environ) for i, v in enumerate(node)]
    if isinstance(node, dict):
        for k in node:
            if isinstance(k, str):
                _check(lambda v: text_problem(v, 256), k, _join(key, "(key)"))
        return {k: _substitute(v, _join(key, k), environ) for k, v in node.items()}
    return node


def _join(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """
    Read, substitute and validate one configuration file.

    :raises ConfigError: with ``path`` set, for the first problem found.
    """
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("(file)", e.strerror or str(e), name) from None
    except UnicodeDecodeError:
        raise ConfigError("(file)", "not UTF-8 text", name) from None
    try:
        return parse_config(text, name, os.environ if environ is None else environ)
    except ConfigError as e:
        e.path = name
        raise


#: Deepest nesting of mappings and lists the file may have.
MAX_DEPTH = 16
#: Most values the file may describe once every alias (``*name``) is
#: expanded: a few aliases to aliases otherwise describe billions.
MAX_NODES = 100_000


def _read_yaml(text: str) -> Any:
    """
    The one YAML document in ``text``, its size checked before anything is
    built from it.

    :raises ConfigError: for bad YAML, nesting deeper than :data:`MAX_DEPTH`
        or more than :data:`MAX_NODES` values with aliases expanded.
    """
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    except RecursionError:
        # PyYAML's parser recurses per level: far deeper than MAX_DEPTH.
        raise ConfigError("(file)", f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def _check_size(root: yaml.Node) -> None:
    """Refuse a node graph nested too deeply or too large once aliases are expanded."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise ConfigError(f"line {node.start_mark.line + 1}", f"nested deeper than {MAX_DEPTH} levels")
        if id(node) in sizes:  # an alias: the same node again
            return sizes[id(node)]
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(v, depth + 1) for v in node.value)
        if total > MAX_NODES:
            raise ConfigError(
                f"line {node.start_mark.line + 1}",
                f"describes more than {MAX_NODES} values with its aliases expanded",
            )
        sizes[id(node)] = total
        return total

    size(root, 1)


def parse_config(text: str, path: str = "<string>", environ: Mapping[str, str] | None = None) -> Config:
    """Validate configuration text; see :func:`load_config`."""
    try:
        raw = _read_yaml(text)
    except ConfigError:
        raise
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise ConfigError(where, f"invalid YAML: {problem}") from None
    if raw is None:
        # An empty file would start a PBX on the defaults, listening everywhere.
        raise ConfigError("(file)", "is empty: it needs at least one section (see etc/pbx.yml)")
    if not isinstance(raw, dict):
        raise ConfigError("(top level)", "must be a mapping of sections")
    environ = os.environ if environ is None else environ
    return _build(_substitute(raw, "", environ), path, environ)


# ---------------------------------------------------------------------------
# Validation helpers


def _mapping(value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key or "(top level)", f"must be a mapping, not {_kind(value)}")
    for k in value:
        if str(k) not in allowed:
            raise ConfigError(_join(key, k), "unknown key")
    return {str(k): v for k, v in value.items()}


def _kind(value: Any) -> str:
    return {
        bool: "a boolean", int: "a number", float: "a number", str: "a string",
        list: "a list", dict: "a mapping", type(None): "empty",
    }.get(type(value), type(value).__name__)


def _str(value: Any, key: str, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(key, f"must be a string, not {_kind(value)}")
    return str(value)


def _int(value: Any, key: str, default: int, low: int = 0, high: int = 2**31) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be a whole number, not {_kind(value)}")
    if not low <= value <= high:
        raise ConfigError(key, f"must be between {low} and {high}")
    return value


def _check(problem_of: Callable[[Any], str | None], value: T, key: str) -> T:
    """``value`` if ``problem_of`` (a :mod:`pbx.validation` check) finds nothing wrong with it."""
    problem = problem_of(value)
    if problem is not None:
        raise ConfigError(key, problem)
    return value


def _bool(value: Any, key: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
        return value.lower() in ("true", "yes", "on")
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, not {_kind(value)}")
    return value


def _list(value: Any, key: str, item: Callable[[Any, str], T]) -> tuple[T, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list, not {_kind(value)}")
    return tuple(item(v, f"{key}[{i}]") for i, v in enumerate(value))


# ---------------------------------------------------------------------------
# Sections


def parse_listen(value: Any, key: str) -> ListenSpec:
    """Parse one SIP listener endpoint string: ``udp|tcp|tls:PORT[:interface=ADDR]``."""
    text = _str(value, key)
    parts = text.split(":")
    transport = parts[0].lower()
    if transport not in ("udp", "tcp", "tls"):
        raise ConfigError(key, f"bad endpoint {text!r}: transport must be udp, tcp or tls")
    if len(parts) < 2 or not parts[1].isdigit() or not 0 <= int(parts[1]) <= 65535:
        raise ConfigError(key, f"bad endpoint {text!r}: needs a port number 0-65535")
    interface = ""
    rest = ":".join(parts[2:])
    if rest:
        # interface=::1 contains colons; Twisted's endpoint syntax escapes them
        # as \: but we accept both.
        name, eq, addr = rest.partition("=")
        if name != "interface" or not eq or not addr:
            raise ConfigError(key, f"bad endpoint {text!r}: only interface=ADDRESS may follow the port")
        interface = addr.replace("\\:", ":")
    return ListenSpec(transport, int(parts[1]), interface)


def _check_server_endpoint(text: str, key: str) -> str:
    """Check a Twisted server endpoint string without listening on it."""
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    try:
        serverFromString(MemoryReactor(), text)
    except Exception as e:  # noqa: BLE001 - any parse problem is a config problem
        raise ConfigError(key, f"bad endpoint {text!r}: {e}") from None
    return text


def _sip(raw: Any, base: Path) -> SIPConfig:
    s = _mapping(raw, "sip", {
        "domain", "listen", "tls", "registrar", "user_agent", "digest_algorithms", "advertise", "connections",
        "overload",
    })
    domain = _str(s.get("domain"), "sip.domain", "pbx.localdomain")
    if not re.fullmatch(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]", domain):
        raise ConfigError("sip.domain", f"{domain!r} is not a host name")
    listen = _list(s.get("listen", ["udp:5060", "tcp:5060", "tls:5061"]), "sip.listen", parse_listen)
    if not listen:
        raise ConfigError("sip.listen", "needs at least one listener")
    seen: set[tuple[str, int, str]] = set()
    for i, spec in enumerate(listen):
        ident = ("udp" if spec.transport == "udp" else "tcp", spec.port, spec.interface)
        if spec.port and ident in seen:
            raise ConfigError(f"sip.listen[{i}]", f"{spec} is listed twice")
        seen.add(ident)
    t = _mapping(s.get("tls"), "sip.tls", {"certificate", "key", "verify_clients", "ca"})
    tls = TLSConfig(
        certificate=_path(base, _str(t.get("certificate"), "sip.tls.certificate")),
        key=_path(base, _str(t.get("key"), "sip.tls.key")),
        verify_clients=_bool(t.get("verify_clients"), "sip.tls.verify_clients", False),
        ca=_path(base, _str(t.get("ca"), "sip.tls.ca")),
    )
    if bool(tls.certificate) != bool(tls.key):
        raise ConfigError("sip.tls", "certificate and key must be given together")
    if tls.verify_clients and not tls.ca:
        raise ConfigError("sip.tls.ca", "needed when verify_clients is true")
    r = _mapping(s.get("registrar"), "sip.registrar", {"min_expires", "max_expires", "default_expires"})
    registrar = RegistrarConfig(
        min_expires=_int(r.get("min_expires"), "sip.registrar.min_expires", 60, 1, 86400),
        max_expires=_int(r.get("max_expires"), "sip.registrar.max_expires", 3600, 1, 604800),
        default_expires=_int(r.get("default_expires"), "sip.registrar.default_expires", 3600, 1, 604800),
    )
    if registrar.min_expires > registrar.max_expires:
        raise ConfigError("sip.registrar.min_expires", "is larger than max_expires")
    user_agent = _str(s.get("user_agent"), "sip.user_agent", "pbx")
    algorithms = _list(s.get("digest_algorithms", ["MD5"]), "sip.digest_algorithms", _str)
    for i, name in enumerate(algorithms):
        if name not in ("SHA-256", "MD5"):
            raise ConfigError(f"sip.digest_algorithms[{i}]", f"{name!r} is not SHA-256 or MD5")
    if not algorithms or len(set(algorithms)) != len(algorithms):
        raise ConfigError("sip.digest_algorithms", "must list SHA-256 and/or MD5, each once")
    advertise = _str(s.get("advertise"), "sip.advertise")
    connections = _sip_connections(s.get("connections"))
    overload = _sip_overload(s.get("overload"))
    return SIPConfig(domain, listen, tls, registrar, user_agent, advertise, algorithms, connections, overload)


def _sip_overload(raw: Any) -> SIPOverloadConfig:
    key = "sip.overload"
    o = _mapping(raw, key, {f.name for f in fields(SIPOverloadConfig)})
    d = SIPOverloadConfig()
    overload = SIPOverloadConfig(
        lag_ms=_int(o.get("lag_ms"), f"{key}.lag_ms", d.lag_ms, 0, 60_000),
        severe_lag_ms=_int(o.get("severe_lag_ms"), f"{key}.severe_lag_ms", d.severe_lag_ms, 1, 60_000),
        retry_after=_int(o.get("retry_after"), f"{key}.retry_after", d.retry_after, 1, 3600),
        queue_ms=_int(o.get("queue_ms"), f"{key}.queue_ms", d.queue_ms, 0, 60_000),
    )
    if overload.lag_ms and overload.severe_lag_ms < overload.lag_ms:
        raise ConfigError(f"{key}.severe_lag_ms", "must be at least lag_ms")
    return overload


def _sip_connections(raw: Any) -> SIPConnectionsConfig:
    key = "sip.connections"
    c = _mapping(raw, key, {f.name for f in fields(SIPConnectionsConfig)})
    d = SIPConnectionsConfig()
    connections = SIPConnectionsConfig(
        max_total=_int(c.get("max_total"), f"{key}.max_total", d.max_total, 0, 10_000_000),
        max_per_source=_int(c.get("max_per_source"), f"{key}.max_per_source", d.max_per_source, 0, 10_000_000),
        first_message_timeout=_int(
            c.get("first_message_timeout"), f"{key}.first_message_timeout", d.first_message_timeout, 1, 300
        ),
        idle_timeout=_int(c.get("idle_timeout"), f"{key}.idle_timeout", d.idle_timeout, 30, 86400),
        max_message=_int(c.get("max_message"), f"{key}.max_message", d.max_message, 4096, 1024 * 1024),
        max_buffered=_int(c.get("max_buffered"), f"{key}.max_buffered", d.max_buffered, 65536, 2**31),
    )
    if connections.max_buffered < 2 * connections.max_message:
        raise ConfigError(f"{key}.max_buffered", "must hold at least two messages of max_message octets")
    return connections


def _api_connections(raw: Any) -> APIConnectionsConfig:
    key = "api.connections"
    c = _mapping(raw, key, {f.name for f in fields(APIConnectionsConfig)})
    d = APIConnectionsConfig()
    return APIConnectionsConfig(
        max_total=_int(c.get("max_total"), f"{key}.max_total", d.max_total, 0, 1_000_000),
        max_per_source=_int(c.get("max_per_source"), f"{key}.max_per_source", d.max_per_source, 0, 1_000_000),
        idle_timeout=_int(c.get("idle_timeout"), f"{key}.idle_timeout", d.idle_timeout, 1, 86400),
        header_timeout=_int(c.get("header_timeout"), f"{key}.header_timeout", d.header_timeout, 1, 3600),
    )


def _rtp(raw: Any) -> RTPConfig:
    r = _mapping(raw, "rtp", {"ports", "interface", "advertise"})
    ports = _str(r.get("ports"), "rtp.ports", "10000-20000")
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", ports)
    if not m:
        raise ConfigError("rtp.ports", f"{ports!r} is not a range like 10000-20000")
    low, high = int(m.group(1)), int(m.group(2))
    if low > high:
        raise ConfigError("rtp.ports", f"range {low}-{high} is inverted")
    if low < 1024 or high > 65535:
        raise ConfigError("rtp.ports", "must lie within 1024-65535")
    if high - low < 3:
        raise ConfigError("rtp.ports", "must hold at least two RTP/RTCP port pairs")
    interface = _str(r.get("interface"), "rtp.interface", "0.0.0.0")
    advertise = _str(r.get("advertise"), "rtp.advertise")
    for name, value in (("interface", interface), ("advertise", advertise)):
        if value and not _is_ip(value):
            raise ConfigError(f"rtp.{name}", f"{value!r} is not an IP address")
    return RTPConfig(low, high, interface, advertise)


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _calls(raw: Any) -> CallsConfig:
    c = _mapping(raw, "calls", {"ring_timeout", "media_timeout", "min_session_expires"})
    return CallsConfig(
        ring_timeout=_int(c.get("ring_timeout"), "calls.ring_timeout", 30, 1, 3600),
        media_timeout=_int(c.get("media_timeout"), "calls.media_timeout", 60, 5, 3600),
        min_session_expires=_int(c.get("min_session_expires"), "calls.min_session_expires", 90, 90, 86400),
    )


def _transfer(raw: Any) -> TransferConfig:
    from pbx.calls.feature_codes import clash, code_problem

    t = _mapping(raw, "transfer", {"recall_after", "blind_code", "attended_code", "three_way_code", "cancel_code",
                                   "outside_keyed"})
    codes = {
        f"transfer.{name}": _check(code_problem, _str(t.get(name), f"transfer.{name}", default), f"transfer.{name}")
        for name, default in (("blind_code", "##"), ("attended_code", "*2"), ("three_way_code", "*3"),
                              ("cancel_code", "*"))
    }
    # The cancel code is watched alone (while consulting); the others together.
    clashing = clash({k: v for k, v in codes.items() if k != "transfer.cancel_code"})
    if clashing is not None:
        raise ConfigError(*clashing)
    return TransferConfig(
        recall_after=_int(t.get("recall_after"), "transfer.recall_after", 30, 5, 600),
        blind_code=codes["transfer.blind_code"],
        attended_code=codes["transfer.attended_code"],
        three_way_code=codes["transfer.three_way_code"],
        cancel_code=codes["transfer.cancel_code"],
        outside_keyed=_bool(t.get("outside_keyed"), "transfer.outside_keyed", False),
    )


def _log(raw: Any) -> LogConfig:
    c = _mapping(raw, "log", {"level"})
    level = _str(c.get("level"), "log.level", "info")
    if level.lower() not in LOG_LEVELS:
        raise ConfigError("log.level", f"must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    return LogConfig(level.lower())


def _admin(value: Any, key: str) -> AdminConfig:
    a = _mapping(value, key, {"username", "password"})
    username = _str(a.get("username"), f"{key}.username")
    _check(admin_username_problem, username, f"{key}.username")
    password = _str(a.get("password"), f"{key}.password")
    if password:
        problem = password_problem(password, username=username, min_length=12)
        if problem:
            raise ConfigError(f"{key}.password", f"too weak: {problem}")
    return AdminConfig(username, password)


def _api(raw: Any) -> APIConfig:
    a = _mapping(raw, "api", {"listen", "admins", "token_lifetime", "max_body", "connections"})
    listen = _check_server_endpoint(_str(a.get("listen"), "api.listen", DEFAULT_API_LISTEN), "api.listen")
    admins = _list(a.get("admins"), "api.admins", _admin)
    names = [x.username for x in admins]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(f"api.admins[{i}].username", f"{n!r} is listed twice")
    return APIConfig(
        listen=listen,
        admins=admins,
        token_lifetime=_int(a.get("token_lifetime"), "api.token_lifetime", 3600, 60, 7 * 86400),
        max_body=_int(a.get("max_body"), "api.max_body", 1024 * 1024, 1024, 64 * 1024 * 1024),
        connections=_api_connections(a.get("connections")),
    )


def _security(raw: Any, base: Path) -> SecurityConfig:
    d = SecurityConfig()
    keys = {f.name for f in fields(SecurityConfig)}
    s = _mapping(raw, "security", keys)
    numbers = keys - {"allow", "rate_limits", "log", "fips", "password_min_length", "password_max_age_days"}
    values: dict[str, Any] = {
        k: _int(s.get(k), f"security.{k}", getattr(d, k), 1, 86400 * 7) for k in numbers
    }
    allow = _list(s.get("allow"), "security.allow", _str)
    for i, text in enumerate(allow):
        try:
            parse_networks([text])
        except ValueError as e:
            raise ConfigError(f"security.allow[{i}]", str(e)) from None
    limits = dict(DEFAULT_LIMITS)
    given = _mapping(s.get("rate_limits"), "security.rate_limits", set(KINDS))
    for kind, value in given.items():
        key = f"security.rate_limits.{kind}"
        shape = _mapping(value, key, {"rate", "burst"})
        rate = _int(shape.get("rate"), f"{key}.rate", int(limits[kind].rate), 1, 1_000_000)
        burst = _int(shape.get("burst"), f"{key}.burst", limits[kind].burst, 1, 1_000_000)
        limits[kind] = Limit(rate, burst)
    if values["ban_max_time"] < values["ban_time"]:
        raise ConfigError("security.ban_max_time", "is shorter than ban_time")
    log = _path(base, _str(s.get("log"), "security.log"))
    if log and Path(log).is_dir():
        raise ConfigError("security.log", f"{log!r} is a directory, not a file")
    values["fips"] = _bool(s.get("fips"), "security.fips", False)
    values["password_min_length"] = _int(
        s.get("password_min_length"), "security.password_min_length", d.password_min_length, 8, 128
    )
    values["password_max_age_days"] = _int(
        s.get("password_max_age_days"), "security.password_max_age_days", 0, 0, 3650
    )
    security = SecurityConfig(**values, allow=allow, rate_limits=tuple(limits.items()), log=log)
    if security.lockout_address_failures < security.lockout_failures:
        raise ConfigError("security.lockout_address_failures", "must not be less than lockout_failures")
    return security


def _extensions(raw: Any) -> tuple[ExtensionConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError("extensions", f"must be a mapping of number to settings, not {_kind(raw)}")
    result = []
    for number, value in raw.items():
        key = f"extensions.{number}"
        if isinstance(number, bool) or extension_number_problem(str(number)):
            raise ConfigError(key, "an extension number is 2-10 digits")
        number = str(number)
        e = _mapping(value, key, {"name", "password", "pin", "voicemail_pin", "pin_hash", "email", "srtp"})
        password = _str(e.get("password"), f"{key}.password")
        if password:
            problem = password_problem(password, username=number)
            if problem:
                raise ConfigError(f"{key}.password", f"too weak: {problem}")
        # ``voicemail_pin`` is the older name of ``pin``; either may be given.
        if "pin" in e and "voicemail_pin" in e:
            raise ConfigError(f"{key}.pin", "give pin or voicemail_pin (its older name), not both")
        pin_key = "pin" if "pin" in e else "voicemail_pin"
        pin = _str(e.get(pin_key), f"{key}.{pin_key}")
        if pin:
            _check(pin_format_problem, pin, f"{key}.{pin_key}")
        pin_hash = _str(e.get("pin_hash"), f"{key}.pin_hash")
        if pin_hash and pin:
            raise ConfigError(f"{key}.pin_hash", f"give {pin_key} or pin_hash, not both")
        if pin_hash and not is_hash(pin_hash):
            raise ConfigError(f"{key}.pin_hash", "is not a pbkdf2-sha256$... encoding (see README)")
        email = _check(email_problem, _str(e.get("email"), f"{key}.email"), f"{key}.email")
        name = _check(display_name_problem, _str(e.get("name"), f"{key}.name"), f"{key}.name")
        srtp = e.get("srtp", "offered")
        if problem := srtp_policy_problem(srtp):
            raise ConfigError(f"{key}.srtp", problem)
        result.append(ExtensionConfig(number, name, password, pin, pin_hash, email, srtp))
    return tuple(result)


def _features(raw: Any) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("features", f"must be a mapping of feature name to options, not {_kind(raw)}")
    result: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        key = f"features.{name}"
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a mapping of options, not {_kind(value)}")
        options = {str(k): v for k, v in value.items()}
        options["enabled"] = _bool(options.get("enabled"), f"{key}.enabled", True)
        result[str(name)] = options
    return result


_TOP = {
    "sip", "rtp", "api", "security", "database", "state_dir", "extensions", "log",
    "features", "plugin_dirs", "calls", "dialplan", "emergency", "groups", "follow_me", "dnd_schedule",
    "permissions", "transfer", "moh", "trunks", "rates", "park", "pickup_groups", "stir_shaken",
}


def default_state_dir(environ: Mapping[str, str], euid: int) -> str:
    """
    Where state lives when the configuration gives no ``state_dir``: the
    directory systemd made for the service (``$STATE_DIRECTORY``, from
    ``StateDirectory=``), else ``/var/lib/pbx`` for root, else
    ``$XDG_STATE_HOME/pbx`` (``~/.local/state/pbx``).

    :param environ: the environment to read.
    :param euid: the effective user id.
    """
    systemd = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return systemd
    if euid == 0:
        return "/var/lib/pbx"
    xdg = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(xdg):  # the XDG spec says to ignore a relative value
        xdg = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return os.path.join(xdg, "pbx")


def _path(base: Path, value: str) -> str:
    """``value`` (``~`` expanded) taken from ``base`` when relative."""
    return str(base / os.path.expanduser(value)) if value else ""


def _database(value: str, base: Path, state_dir: str) -> str:
    """The database URL with a relative SQLite path taken from ``base``."""
    from pbx.store.url import StoreURLError, parse_store_url

    if not value:
        return f"sqlite://{Path(state_dir) / 'pbx.db'}"
    try:
        url = parse_store_url(value)
    except StoreURLError as e:
        raise ConfigError("database", str(e)) from None
    if url.backend == "sqlite" and url.target != ":memory:":
        return f"sqlite://{_path(base, url.target)}"
    return value


def _build(raw: dict[str, Any], path: str, environ: Mapping[str, str]) -> Config:
    top = _mapping(raw, "", _TOP)
    base = Path(os.path.abspath(path)).parent
    state_dir = _str(top.get("state_dir"), "state_dir") or default_state_dir(environ, os.geteuid())
    state_dir = _path(base, state_dir)
    database = _database(_str(top.get("database"), "database", ""), base, state_dir)
    from pbx.calls.dialplan import parse_dialplan
    from pbx.calls.park_options import parse_park
    from pbx.calls.pickup_options import parse_pickup_groups
    from pbx.emergency.options import parse_emergency
    from pbx.media.moh_config import parse_moh
    from pbx.permissions.options import parse_permissions
    from pbx.trunks.moh import check_classes

    plugin_dirs = tuple(_path(base, d) for d in _list(top.get("plugin_dirs"), "plugin_dirs", _str))
    for i, d in enumerate(plugin_dirs):
        if not Path(d).is_dir():
            raise ConfigError(f"plugin_dirs[{i}]", f"{d!r} is not a directory")
    dialplan = parse_dialplan(top.get("dialplan"))
    trunks = parse_trunks(top.get("trunks"), top.get("rates"))
    check_trunk_routes(dialplan, trunks)
    moh = parse_moh(top.get("moh"), base)
    if moh.enabled:  # off: holds pass on and no class is played
        check_classes(moh.classes, dialplan, trunks)
    groups = _groups(top.get("groups"), dialplan)
    stir_shaken, stir_credentials = _stir_shaken(top.get("stir_shaken"), base)
    sip, security = _sip(top.get("sip"), base), _security(top.get("security"), base)
    if security.fips:
        sip, trunks = _approved_only(sip, trunks, given=top.get("sip") or {})
    api = _api(top.get("api"))
    for i, admin in enumerate(api.admins):
        problem = admin.password and password_problem(
            admin.password, username=admin.username, min_length=security.password_min_length
        )
        if problem:
            raise ConfigError(f"api.admins[{i}].password", f"too weak: {problem}")
    return Config(
        path=path,
        sip=sip,
        rtp=_rtp(top.get("rtp")),
        api=api,
        security=security,
        database=database,
        state_dir=state_dir,
        extensions=_extensions(top.get("extensions")),
        features=_features(top.get("features")),
        plugin_dirs=plugin_dirs,
        calls=_calls(top.get("calls")),
        transfer=_transfer(top.get("transfer")),
        dialplan=dialplan,
        log=_log(top.get("log")),
        trunks=trunks,
        emergency=parse_emergency(top.get("emergency")),
        groups=groups,
        follow_me=_follow_me(top.get("follow_me")),
        dnd_schedule=_dnd_schedule(top.get("dnd_schedule")),
        permissions=parse_permissions(top.get("permissions")),
        moh=moh,
        park=parse_park(top.get("park")),
        pickup_groups=parse_pickup_groups(top.get("pickup_groups")),
        stir_shaken=stir_shaken,
        stir_credentials=stir_credentials,
    )


def _approved_only(sip: SIPConfig, trunks: Any, given: Any) -> tuple[SIPConfig, Any]:
    """FIPS mode: digest authentication with SHA-256 only, for phones and towards carriers."""
    from pbx.security.fips import APPROVED_DIGESTS

    if "digest_algorithms" in given and set(sip.digest_algorithms) - set(APPROVED_DIGESTS):
        raise ConfigError("sip.digest_algorithms", "MD5 is not an approved algorithm (security.fips is true)")
    carriers = tuple(evolve(t, approved_only=True) for t in trunks.trunks)
    tls = evolve(sip.tls, approved_only=True)
    return evolve(sip, digest_algorithms=APPROVED_DIGESTS, tls=tls), evolve(trunks, trunks=carriers, approved_only=True)


def _stir_shaken(raw: Any, base: Path) -> tuple[Any, Any]:
    """The ``stir_shaken:`` section and its key, certificates and trust anchors; (None, None) when absent."""
    from pbx.stir.options import load_credentials, parse_options

    options = parse_options(raw, base)
    if options is None:
        return None, None
    return options, load_credentials(options)


def _groups(raw: Any, dialplan: Any) -> dict[str, Any]:
    """The ``groups:`` section; every ``group:`` route of the dialplan must name one of them."""
    from pbx.calls.dialplan import ToGroup
    from pbx.calls.groups import parse_groups

    groups = parse_groups(raw)
    for i, route in enumerate(dialplan.routes):
        if isinstance(route.action, ToGroup) and route.action.name not in groups:
            raise ConfigError(f"dialplan[{i}].group", f"no group {route.action.name!r} in groups:")
    return groups


def _follow_me(raw: Any) -> dict[str, Any]:
    from pbx.calls.follow_me import parse_follow_me

    return parse_follow_me(raw)


def _dnd_schedule(raw: Any) -> dict[str, Any]:
    from pbx.calls.dnd_schedule import parse_dnd_schedules

    return parse_dnd_schedules(raw)
