"""Tests for pbx.config: YAML loading, substitution and validation."""

from __future__ import annotations

import os
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from pbx.config import (
    APIConnectionsConfig,
    ListenSpec,
    SIPConnectionsConfig,
    SIPOverloadConfig,
    default_state_dir,
    load_config,
    parse_config,
    substitute_env,
)
from pbx.errors import ConfigError
from pbx.security.ratelimit import DEFAULT_LIMITS, Limit

GOOD = """
sip:
  domain: pbx.example.com
  listen: ["udp:5060", "tcp:5060", "tls:5061:interface=127.0.0.1"]
rtp:
  ports: "10000-20000"
api:
  listen: "tcp:8080:interface=127.0.0.1"
  admins:
    - {username: admin, password: "${PBX_ADMIN_PASSWORD}"}
database: "sqlite:///var/lib/pbx/pbx.db"
extensions:
  "1001": {name: Alice, password: "Corr3ct-Horse-Battery", voicemail_pin: "4321", email: alice@example.com}
  1002: {name: Bob}
features:
  voicemail: {enabled: true}
"""

ENV = {"PBX_ADMIN_PASSWORD": "Switchb0ard-long-key"}


def problem(text: str, environ: dict[str, str] | None = None) -> tuple[str, str]:
    """Parse ``text`` expecting a ConfigError; return its (key, problem)."""
    try:
        parse_config(textwrap.dedent(text), "pbx.yml", ENV if environ is None else environ)
    except ConfigError as e:
        return e.key, e.problem
    raise AssertionError("no ConfigError")


class ConfigLoadTests(SynchronousTestCase):
    """A valid file becomes typed, frozen values."""

    def test_example(self) -> None:
        """The documented example loads with every value where it belongs."""
        c = parse_config(GOOD, "pbx.yml", ENV)
        self.assertEqual(c.sip.domain, "pbx.example.com")
        self.assertEqual(
            c.sip.listen,
            (ListenSpec("udp", 5060), ListenSpec("tcp", 5060), ListenSpec("tls", 5061, "127.0.0.1")),
        )
        self.assertEqual((c.rtp.port_min, c.rtp.port_max), (10000, 20000))
        self.assertEqual(c.api.admins[0].password, "Switchb0ard-long-key")
        self.assertEqual(c.database, "sqlite:///var/lib/pbx/pbx.db")
        self.assertEqual([e.number for e in c.extensions], ["1001", "1002"])
        self.assertEqual(c.extensions[0].pin, "4321")
        self.assertEqual(c.features["voicemail"], {"enabled": True})

    def test_frozen(self) -> None:
        """Loaded values cannot be changed."""
        c = parse_config(GOOD, "pbx.yml", ENV)
        with self.assertRaises(AttributeError):
            c.sip.domain = "x"  # type: ignore[misc]

    def test_secrets_not_in_repr(self) -> None:
        """Passwords do not show in the repr of the config."""
        c = parse_config(GOOD, "pbx.yml", ENV)
        self.assertNotIn("Corr3ct-Horse-Battery", repr(c))
        self.assertNotIn("Switchb0ard-long-key", repr(c))

    def test_default_database_in_state_dir(self) -> None:
        """Without a database URL, SQLite in the state directory is used."""
        c = parse_config("state_dir: /tmp/pbx-state\n", "pbx.yml", {})
        self.assertEqual(c.database, "sqlite:///tmp/pbx-state/pbx.db")

    def test_empty_mapping(self) -> None:
        """An empty mapping gives the defaults."""
        c = parse_config("{}\n", "pbx.yml", {})
        self.assertEqual(c.sip.domain, "pbx.localdomain")
        self.assertEqual(len(c.sip.listen), 3)

    def test_empty_file(self) -> None:
        """An empty file (or one of comments only) is an error, not a PBX on the defaults."""
        for text in ("", "# nothing\n", "---\n"):
            with self.assertRaises(ConfigError) as caught:
                parse_config(text, "pbx.yml", {})
            self.assertEqual(caught.exception.key, "(file)")
            self.assertIn("is empty", caught.exception.problem)

    def test_installed_default_config_loads(self) -> None:
        """The shipped etc/pbx.yml is valid with an empty environment."""
        from pbx.tap import default_config_path

        c = load_config(default_config_path(), {})
        self.assertTrue(all(s.interface == "127.0.0.1" for s in c.sip.listen))
        self.assertEqual([e.number for e in c.extensions], ["1001", "1002"])
        self.assertEqual(c.api.admins[0].password, "")


class PathTests(SynchronousTestCase):
    """Where relative paths point and where state lives by default."""

    def test_relative_paths_follow_the_config_file(self) -> None:
        """state_dir, an SQLite database, TLS files and plugin directories are taken from the file's directory."""
        text = textwrap.dedent("""
            state_dir: data
            database: "sqlite://db/pbx.db"
            sip: {tls: {certificate: tls/cert.pem, key: tls/key.pem, verify_clients: true, ca: tls/ca.pem}}
        """)
        c = parse_config(text, "/etc/pbx/pbx.yml", {})
        self.assertEqual(c.state_dir, "/etc/pbx/data")
        self.assertEqual(c.database, "sqlite:///etc/pbx/db/pbx.db")
        self.assertEqual(
            (c.sip.tls.certificate, c.sip.tls.key, c.sip.tls.ca),
            ("/etc/pbx/tls/cert.pem", "/etc/pbx/tls/key.pem", "/etc/pbx/tls/ca.pem"),
        )

    def test_security_log(self) -> None:
        """security.log is off by default, relative to the file's directory, and must not be a directory."""
        self.assertEqual(parse_config("state_dir: /s\n", "/etc/pbx/pbx.yml", {}).security.log, "")
        c = parse_config("state_dir: /s\nsecurity: {log: log/security.log}\n", "/etc/pbx/pbx.yml", {})
        self.assertEqual(c.security.log, "/etc/pbx/log/security.log")
        absolute = parse_config("state_dir: /s\nsecurity: {log: /var/log/pbx.sec}\n", "/etc/pbx/pbx.yml", {})
        self.assertEqual(absolute.security.log, "/var/log/pbx.sec")
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        error = self.assertRaises(
            ConfigError, parse_config, f"state_dir: /s\nsecurity: {{log: {root}}}\n", "/etc/pbx/pbx.yml", {}
        )
        self.assertEqual(error.key, "security.log")
        self.assertIn("is a directory", str(error))
        error = self.assertRaises(ConfigError, parse_config, "security: {log: [a]}\n", "/etc/pbx/pbx.yml", {})
        self.assertEqual(error.key, "security.log")

    def test_plugin_dirs_follow_the_config_file(self) -> None:
        """A relative plugin directory is looked for beside the config file, not in the working directory."""
        root = self.mktemp()
        os.makedirs(os.path.join(root, "plugins"))
        c = parse_config("plugin_dirs: [plugins]\nstate_dir: /s\n", os.path.join(root, "pbx.yml"), {})
        self.assertEqual(c.plugin_dirs, (os.path.join(os.path.abspath(root), "plugins"),))

    def test_absolute_paths_and_other_databases_unchanged(self) -> None:
        """Absolute paths, in-memory SQLite and PostgreSQL URLs are kept as written."""
        c = parse_config("state_dir: /srv/pbx\n", "/etc/pbx/pbx.yml", {})
        self.assertEqual((c.state_dir, c.database), ("/srv/pbx", "sqlite:///srv/pbx/pbx.db"))
        memory = parse_config('state_dir: /s\ndatabase: "sqlite://:memory:"\n', "/etc/pbx/pbx.yml", {})
        self.assertEqual(memory.database, "sqlite://:memory:")
        url = "postgresql://pbx@db.example.com/pbx"
        self.assertEqual(parse_config(f"state_dir: /s\ndatabase: {url!r}\n", "/e/p.yml", {}).database, url)

    def test_no_state_dir_is_the_default_place(self) -> None:
        """Without state_dir (or with an empty one) state goes to the default place, not the working directory."""
        env = {"STATE_DIRECTORY": "/var/lib/pbx-unit"}
        self.assertEqual(parse_config("{}", "/etc/pbx/pbx.yml", env).state_dir, "/var/lib/pbx-unit")
        self.assertEqual(parse_config('state_dir: ""\n', "/etc/pbx/pbx.yml", env).state_dir, "/var/lib/pbx-unit")
        self.assertEqual(parse_config("{}", "/etc/pbx/pbx.yml", env).database, "sqlite:///var/lib/pbx-unit/pbx.db")

    def test_default_state_dir(self) -> None:
        """systemd's STATE_DIRECTORY wins; then /var/lib/pbx for root; else XDG_STATE_HOME or ~/.local/state."""
        self.assertEqual(default_state_dir({"STATE_DIRECTORY": "/var/lib/pbx:/x"}, 1000), "/var/lib/pbx")
        self.assertEqual(default_state_dir({}, 0), "/var/lib/pbx")
        self.assertEqual(default_state_dir({"XDG_STATE_HOME": "/home/u/st", "HOME": "/home/u"}, 1000), "/home/u/st/pbx")
        self.assertEqual(default_state_dir({"HOME": "/home/u"}, 1000), "/home/u/.local/state/pbx")
        self.assertEqual(
            default_state_dir({"XDG_STATE_HOME": "relative", "HOME": "/home/u"}, 1000), "/home/u/.local/state/pbx"
        )


class SubstitutionTests(SynchronousTestCase):
    """${VAR} and ${VAR:-default} in string values."""

    def test_set(self) -> None:
        """A set variable is replaced by its value."""
        self.assertEqual(substitute_env("a${X}b", "k", {"X": "1"}), "a1b")

    def test_default(self) -> None:
        """An unset or empty variable with a default takes the default."""
        self.assertEqual(substitute_env("${X:-d}", "k", {}), "d")
        self.assertEqual(substitute_env("${X:-d}", "k", {"X": ""}), "d")

    def test_dollar_escape(self) -> None:
        """$$ is a literal dollar sign."""
        self.assertEqual(substitute_env("$${X}", "k", {"X": "1"}), "${X}")

    def test_unset(self) -> None:
        """An unset variable without a default is an error naming the key."""
        key, why = problem(GOOD, {})
        self.assertEqual(key, "api.admins[0].password")
        self.assertEqual(why, "environment variable PBX_ADMIN_PASSWORD is not set")


class ConfigErrorTests(SynchronousTestCase):
    """Each kind of mistake names its key and the problem."""

    def test_unknown_key(self) -> None:
        """An unknown key is refused."""
        self.assertEqual(problem("sip: {domian: x}\n"), ("sip.domian", "unknown key"))
        self.assertEqual(problem("sipp: {}\n"), ("sipp", "unknown key"))

    def test_wrong_type(self) -> None:
        """A value of the wrong type is refused."""
        self.assertEqual(problem("sip: {listen: {a: 1}}\n"), ("sip.listen", "must be a list, not a mapping"))
        key, why = problem("sip: {registrar: {min_expires: soon}}\n")
        self.assertEqual((key, why), ("sip.registrar.min_expires", "must be a whole number, not a string"))

    def test_bad_endpoint(self) -> None:
        """A listener string that is not udp/tcp/tls:PORT is refused."""
        key, why = problem('sip: {listen: ["udp:5060", "sctp:5060"]}\n')
        self.assertEqual(key, "sip.listen[1]")
        self.assertIn("transport must be udp, tcp or tls", why)
        key, why = problem('sip: {listen: ["udp:70000"]}\n')
        self.assertIn("port number", why)

    def test_bad_api_endpoint(self) -> None:
        """An API endpoint Twisted cannot parse is refused."""
        key, why = problem('api: {listen: "tcp:notaport"}\n')
        self.assertEqual(key, "api.listen")
        self.assertIn("bad endpoint", why)

    def test_inverted_range(self) -> None:
        """An RTP port range whose low end is above its high end is refused."""
        self.assertEqual(problem('rtp: {ports: "20000-10000"}\n'), ("rtp.ports", "range 20000-10000 is inverted"))

    def test_duplicate_extension(self) -> None:
        """The same extension twice, even once as a number and once as a string, is refused."""
        key, why = problem('extensions:\n  "1001": {}\n  1001: {}\n')
        self.assertEqual(key, "1001")
        self.assertIn("duplicate key", why)

    def test_weak_password(self) -> None:
        """A weak SIP password is refused, naming the extension."""
        key, why = problem('extensions:\n  "1001": {password: "1001"}\n')
        self.assertEqual(key, "extensions.1001.password")
        self.assertTrue(why.startswith("too weak: "))

    def test_bad_extension_number(self) -> None:
        """Extension numbers are digits."""
        key, _ = problem('extensions:\n  "alice": {}\n')
        self.assertEqual(key, "extensions.alice")

    def test_bad_pin(self) -> None:
        """A voicemail PIN must be 4-12 digits."""
        key, _ = problem('extensions:\n  "1001": {voicemail_pin: "12"}\n')
        self.assertEqual(key, "extensions.1001.voicemail_pin")

    def test_bad_srtp_policy(self) -> None:
        """An extension's SRTP policy is off, offered or required; anything else names the key."""
        key, why = problem('extensions:\n  "1001": {srtp: "always"}\n')
        self.assertEqual(key, "extensions.1001.srtp")
        self.assertIn("off, offered, required", why)

    def test_pin(self) -> None:
        """``pin`` is the PIN's core name; ``voicemail_pin`` its older one; giving both is an error."""
        key, _ = problem('extensions:\n  "1001": {pin: "12"}\n')
        self.assertEqual(key, "extensions.1001.pin")
        key, message = problem('extensions:\n  "1001": {pin: "1234", voicemail_pin: "1234"}\n')
        self.assertEqual(key, "extensions.1001.pin")
        self.assertIn("not both", message)

    def test_pin_hash(self) -> None:
        """pin_hash takes a PBKDF2 encoding instead of a PIN; not both, and nothing else."""
        key, why = problem('extensions:\n  "1001": {pin_hash: "md5$abc"}\n')
        self.assertEqual((key, why), ("extensions.1001.pin_hash", "is not a pbkdf2-sha256$... encoding (see README)"))
        key, why = problem('extensions:\n  "1001": {pin: "4826", pin_hash: "x"}\n')
        self.assertEqual((key, why), ("extensions.1001.pin_hash", "give pin or pin_hash, not both"))

    def test_bad_database(self) -> None:
        """Only sqlite:// and postgresql:// databases are known."""
        key, _ = problem('database: "mysql://x"\n')
        self.assertEqual(key, "database")

    def test_bad_yaml(self) -> None:
        """Broken YAML is reported with its line."""
        key, why = problem("sip: [\n")
        self.assertTrue(key.startswith("line "))
        self.assertIn("invalid YAML", why)

    def test_file_path_in_error(self) -> None:
        """load_config puts the file name in the error."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("bogus: 1\n")
        with self.assertRaises(ConfigError) as cm:
            load_config(path, {})
        self.assertEqual(str(cm.exception), f"{path}: bogus: unknown key")

    def test_missing_file(self) -> None:
        """A missing file is one error, not a traceback."""
        with self.assertRaises(ConfigError) as cm:
            load_config("/nonexistent/pbx.yml", {})
        self.assertIn("No such file", str(cm.exception))


class LogLevelConfigTests(SynchronousTestCase):
    """``log.level``: debug, info, warn or error."""

    def test_default_info(self) -> None:
        """With no log section the level is info."""
        self.assertEqual(parse_config("{}", "pbx.yml", {}).log.level, "info")

    def test_each_level(self) -> None:
        """Every level is taken, in any case."""
        for given, level in [("debug", "debug"), ("INFO", "info"), ("Warn", "warn"), ("error", "error")]:
            config = parse_config(f"log: {{level: {given}}}\n", "pbx.yml", {})
            self.assertEqual(config.log.level, level)

    def test_bad_level(self) -> None:
        """Any other level, or a log section that is not a mapping, is refused naming the key."""
        self.assertEqual(
            problem("log: {level: verbose}\n"),
            ("log.level", "must be one of debug, info, warn, error, not 'verbose'"),
        )
        self.assertEqual(problem("log: {level: 3}\n")[0], "log.level")
        self.assertEqual(problem("log: {colour: red}\n"), ("log.colour", "unknown key"))
        self.assertEqual(problem("log: debug\n"), ("log", "must be a mapping, not a string"))


class ConnectionsConfigTests(SynchronousTestCase):
    """``sip.connections`` and ``api.connections``."""

    def test_defaults(self) -> None:
        """Without the sections, caps are 0 (derived at start) and the timeouts have their defaults."""
        config = parse_config(GOOD, "pbx.yml", ENV)
        self.assertEqual(config.sip.connections, SIPConnectionsConfig())
        self.assertEqual((config.sip.connections.max_total, config.sip.connections.first_message_timeout), (0, 20))
        self.assertEqual(config.api.connections, APIConnectionsConfig())

    def test_values(self) -> None:
        """Given values are kept."""
        config = parse_config(
            "sip: {connections: {max_total: 500, max_per_source: 50, first_message_timeout: 10,"
            " idle_timeout: 300, max_message: 32768, max_buffered: 1048576}}\n"
            "api: {connections: {max_total: 20, max_per_source: 5, idle_timeout: 30, header_timeout: 10}}\n",
            "pbx.yml", {},
        )
        self.assertEqual(config.sip.connections, SIPConnectionsConfig(500, 50, 10, 300, 32768, 1048576))
        self.assertEqual(config.api.connections, APIConnectionsConfig(20, 5, 30, 10))

    def test_problems(self) -> None:
        """Unknown keys, out-of-range values and a budget too small for two messages are refused by name."""
        self.assertEqual(problem("sip: {connections: {max_open: 1}}\n"), ("sip.connections.max_open", "unknown key"))
        self.assertEqual(problem("sip: {connections: {first_message_timeout: 0}}\n"),
                         ("sip.connections.first_message_timeout", "must be between 1 and 300"))
        self.assertEqual(problem("sip: {connections: {max_buffered: 65536}}\n"),
                         ("sip.connections.max_buffered", "must hold at least two messages of max_message octets"))
        self.assertEqual(problem("api: {connections: {header_timeout: -1}}\n"),
                         ("api.connections.header_timeout", "must be between 1 and 3600"))


class OverloadConfigTests(SynchronousTestCase):
    """``sip.overload``: when new calls and registrations are refused."""

    def test_defaults(self) -> None:
        """Without the section new work is refused after 200 ms in the queue; the lag is not watched; Retry-After 5 s."""
        config = parse_config(GOOD, "pbx.yml", ENV)
        self.assertEqual(config.sip.overload, SIPOverloadConfig(0, 1000, 5, 200))

    def test_values(self) -> None:
        """Given values are kept; lag_ms 0 (shedding off) needs no severe_lag_ms."""
        config = parse_config("sip: {overload: {lag_ms: 50, severe_lag_ms: 200, retry_after: 10}}\n", "pbx.yml", {})
        self.assertEqual(config.sip.overload, SIPOverloadConfig(50, 200, 10))
        self.assertEqual(parse_config("sip: {overload: {lag_ms: 0}}\n", "pbx.yml", {}).sip.overload.lag_ms, 0)
        self.assertEqual(parse_config("sip: {overload: {queue_ms: 0}}\n", "pbx.yml", {}).sip.overload.queue_ms, 0)

    def test_problems(self) -> None:
        """Unknown keys, out-of-range values and a severe threshold under the first are refused by name."""
        self.assertEqual(problem("sip: {overload: {lag: 1}}\n"), ("sip.overload.lag", "unknown key"))
        self.assertEqual(problem("sip: {overload: {retry_after: 0}}\n"),
                         ("sip.overload.retry_after", "must be between 1 and 3600"))
        self.assertEqual(problem("sip: {overload: {lag_ms: 300, severe_lag_ms: 200}}\n"),
                         ("sip.overload.severe_lag_ms", "must be at least lag_ms"))


class SecurityConfigTests(SynchronousTestCase):
    """The ``security:`` section's rate limits, allow-list and bans."""

    def test_defaults(self) -> None:
        """Without a section every kind has its default limit and nothing is allow-listed."""
        c = parse_config(GOOD, "pbx.yml", ENV).security
        self.assertEqual(dict(c.rate_limits), DEFAULT_LIMITS)
        self.assertEqual((c.allow, c.ban_score, c.ban_time, c.ban_max_time), ((), 100, 60, 86400))

    def test_override(self) -> None:
        """A kind's limit may be given in part; the rest keep their defaults."""
        text = GOOD + 'security:\n  allow: ["192.0.2.0/24", "2001:db8::1"]\n'
        text += "  rate_limits: {INVITE: {rate: 5}}\n  ban_time: 120\n  ban_max_time: 600\n"
        c = parse_config(text, "pbx.yml", ENV).security
        self.assertEqual(dict(c.rate_limits)["INVITE"], Limit(5, DEFAULT_LIMITS["INVITE"].burst))
        self.assertEqual(c.allow, ("192.0.2.0/24", "2001:db8::1"))
        self.assertEqual((c.ban_time, c.ban_max_time), (120, 600))

    def test_errors(self) -> None:
        """A bad network, an unknown kind, a bad rate or inverted ban times name their key."""
        for section, key in (
            ('allow: ["192.0.2.0/33"]', "security.allow[0]"),
            ("rate_limits: {PUBLISH: {rate: 1}}", "security.rate_limits.PUBLISH"),
            ("rate_limits: {INVITE: {rate: 0}}", "security.rate_limits.INVITE.rate"),
            ("ban_time: 600\n  ban_max_time: 60", "security.ban_max_time"),
        ):
            self.assertEqual(problem(GOOD + f"security:\n  {section}\n")[0], key, section)


class HostileFileTests(SynchronousTestCase):
    """A file built to hurt (header injection, alias bombs, deep nesting) is one clear error."""

    def test_line_break_in_name(self) -> None:
        """A CR/LF in an extension's name is refused, naming the key: it would split a SIP header."""
        key, why = problem('extensions:\n  "1001": {name: "Alice\\r\\nX-Evil: 1"}\n')
        self.assertEqual((key, why), ("extensions.1001.name", "holds a line break"))

    def test_control_character_anywhere(self) -> None:
        """Any string of the file, feature options too, is refused with a control character."""
        key, why = problem('features: {voicemail: {spool: "a\\x07b"}}\n')
        self.assertEqual((key, why), ("features.voicemail.spool", "holds the control character U+0007"))
        key, why = problem('sip: {user_agent: "pbx\\nVia: x"}\n')
        self.assertEqual((key, why), ("sip.user_agent", "holds a line break"))

    def test_lone_surrogate(self) -> None:
        """A YAML escape that makes a lone surrogate is refused."""
        key, why = problem('extensions:\n  "1001": {name: "\\ud800"}\n')
        self.assertEqual(key, "extensions.1001.name")
        self.assertIn("lone surrogate", why)

    def test_long_email(self) -> None:
        """An e-mail address longer than RFC 5321 allows is refused."""
        key, why = problem(f'extensions:\n  "1001": {{email: "{"a" * 60}@{"b" * 900}.example"}}\n')
        self.assertEqual((key, why), ("extensions.1001.email", "is longer than 254 characters"))
        key, why = problem('extensions:\n  "1001": {email: "a b@example.com"}\n')
        self.assertEqual((key, why), ("extensions.1001.email", "is not an e-mail address"))

    def test_alias_bomb(self) -> None:
        """Aliases that expand to billions of values are refused before anything is built."""
        lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
            lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
        key, why = problem("\n".join(lines) + "\n")
        self.assertTrue(key.startswith("line "))
        self.assertIn("with its aliases expanded", why)

    def test_few_aliases_allowed(self) -> None:
        """A small alias still works (and an unknown section it makes is reported as usual)."""
        key, _ = problem("x: &x {level: info}\nlog: *x\n")
        self.assertEqual(key, "x")

    def test_deep_nesting(self) -> None:
        """Deep nesting is one line naming where, and no traceback, even far past Python's recursion limit."""
        key, why = problem("a: " + "[" * 40 + "]" * 40 + "\n")
        self.assertEqual((key, why), ("line 1", "nested deeper than 16 levels"))
        key, why = problem("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
        self.assertEqual((key, why), ("(file)", "nested deeper than 16 levels"))

    def test_not_a_mapping(self) -> None:
        """A file that is a list or a scalar is refused."""
        self.assertEqual(problem("- sip\n"), ("(top level)", "must be a mapping of sections"))
        self.assertEqual(problem("hello\n"), ("(top level)", "must be a mapping of sections"))


class SecuritySectionTests(SynchronousTestCase):
    """The lockout thresholds."""

    def test_address_threshold(self) -> None:
        """lockout_address_failures defaults to ten times a user's; it may not be below lockout_failures."""
        self.assertEqual(parse_config("{}", "pbx.yml", {}).security.lockout_address_failures, 50)
        key, why = problem("security: {lockout_failures: 10, lockout_address_failures: 5}\n")
        self.assertEqual((key, why), ("security.lockout_address_failures", "must not be less than lockout_failures"))


class TransferConfigTests(SynchronousTestCase):
    """The ``transfer:`` section."""

    def test_default_and_value(self) -> None:
        """recall_after defaults to 30 seconds and takes a configured value."""
        self.assertEqual(parse_config(GOOD, "pbx.yml", ENV).transfer.recall_after, 30)
        config = parse_config(GOOD + "transfer: {recall_after: 12}\n", "pbx.yml", ENV)
        self.assertEqual(config.transfer.recall_after, 12)

    def test_bad_values(self) -> None:
        """A recall_after out of range, not a number, or an unknown key names the key."""
        self.assertEqual(problem(GOOD + "transfer: {recall_after: 1}\n")[0], "transfer.recall_after")
        self.assertEqual(problem(GOOD + "transfer: {recall_after: soon}\n")[0], "transfer.recall_after")
        self.assertEqual(problem(GOOD + "transfer: {blind: '##'}\n")[0], "transfer.blind")
        self.assertEqual(problem(GOOD + "transfer: {blind_code: 'x1'}\n")[0], "transfer.blind_code")

    def test_blind_code(self) -> None:
        """blind_code defaults to ## and may be turned off with ""."""
        self.assertEqual(parse_config(GOOD, "pbx.yml", ENV).transfer.blind_code, "##")
        config = parse_config(GOOD + "transfer: {blind_code: ''}\n", "pbx.yml", ENV)
        self.assertEqual(config.transfer.blind_code, "")

    def test_consultation_codes(self) -> None:
        """The consultation codes default to *2, *3 and *; "" turns one off; a bad or clashing code names its key."""
        transfer = parse_config(GOOD, "pbx.yml", ENV).transfer
        self.assertEqual((transfer.attended_code, transfer.three_way_code, transfer.cancel_code), ("*2", "*3", "*"))
        config = parse_config(GOOD + "transfer: {three_way_code: '', cancel_code: '#*'}\n", "pbx.yml", ENV)
        self.assertEqual((config.transfer.three_way_code, config.transfer.cancel_code), ("", "#*"))
        self.assertEqual(problem(GOOD + "transfer: {attended_code: '*2a'}\n")[0], "transfer.attended_code")
        key, why = problem(GOOD + "transfer: {three_way_code: '##'}\n")
        self.assertEqual((key, why), ("transfer.blind_code", "'##' would hide transfer.three_way_code '##'"))

    def test_outside_keyed(self) -> None:
        """outside_keyed is off by default, may be turned on, and must be true or false."""
        self.assertFalse(parse_config(GOOD, "pbx.yml", ENV).transfer.outside_keyed)
        config = parse_config(GOOD + "transfer: {outside_keyed: true}\n", "pbx.yml", ENV)
        self.assertTrue(config.transfer.outside_keyed)
        self.assertEqual(problem(GOOD + "transfer: {outside_keyed: 3}\n")[0], "transfer.outside_keyed")
