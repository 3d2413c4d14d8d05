"""
Voicemail to e-mail: one MIME message per voicemail, sent over SMTP.

Three layers, each usable alone:

* :func:`parse_email_options` turns the ``email:`` mapping of the
  configuration into a frozen :class:`EmailConfig`, or raises
  :class:`~pbx.errors.ConfigError` naming the key and the problem.
* :func:`build_message` makes the message bytes with the standard
  :mod:`email` package: a plain-text body (mailbox, caller, time in UTC,
  duration, transcript) and the recording attached as ``audio/wav``.  It
  reads the recording, so it blocks: run it in a thread.
* :func:`send_voicemail_email` hands those bytes to an SMTP server with
  :class:`twisted.mail.smtp.ESMTPSenderFactory` on the reactor.

:func:`deliver` does both: it builds the message off the reactor thread,
then sends it.  It never deletes the recording, even when
:attr:`EmailConfig.delete_after_send` is set: the caller owns the file and the
mailbox entry, so it deletes them itself once :func:`deliver` has succeeded
(and keeps them when it fails, so the voicemail is not lost).

Caller names come from SIP ``From`` headers, i.e. from anyone on the
network: every value that reaches a header is stripped of CR, LF and other
control characters first, so a name cannot add headers to the message.
"""

from __future__ import annotations

import re
import string
import textwrap
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid, parseaddr
from io import BytesIO
from typing import Any

from attrs import field, frozen
from OpenSSL import SSL

from twisted.internet import error, ssl
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP
from twisted.mail import smtp
from twisted.python.failure import Failure

from pbx.errors import ConfigError
from pbx.media.wav_ulaw import ulaw_wav_from_file

STARTTLS_MODES = ("never", "optional", "required")
ATTACH_MODES = ("wav", "ulaw", "none")
SUBJECT_FIELDS = ("caller", "caller_number", "caller_name", "mailbox", "duration")
DEFAULT_SUBJECT = "New voicemail from {caller} ({duration}s)"
MAX_HEADER_CHARS = 200  # a Subject longer than this is cut: it is a summary
MAX_TIMEOUT = 600.0

_ADDRESS = re.compile(r"[!-~]+@[!-~]+")  # printable ASCII, no spaces
_MESSAGE_ID = re.compile(r"<?([!-;=?-~]+@[!-;=?-~]+)>?")  # no '<' or '>' inside
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class EmailDeliveryError(Exception):
    """The SMTP server did not take the message.

    The text says what went wrong in a few words and never contains the
    SMTP conversation (which would carry the AUTH credentials).
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def permanent(self) -> bool:
        """True when the server answered 5xx: sending the same again will fail."""
        return self.code is not None and 500 <= self.code < 600


def _check_address(text: str) -> str:
    """The bare address of ``text`` (``Name <a@b>`` or ``a@b``).

    :raises ValueError: if there is no single printable-ASCII ``local@domain``.
    """
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ValueError("contains control characters")
    _, address = parseaddr(text)
    if not _ADDRESS.fullmatch(address) or address.count("@") != 1:
        raise ValueError(f"{text!r} is not an e-mail address")
    return address


def _split_server(server: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` (port 25) as ``(host, port)``.

    :raises ValueError: with the problem.
    """
    if server.startswith("["):
        host, sep, rest = server[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("write an IPv6 address as [address]:port")
        port_text = rest[1:] if rest else "25"
    elif server.count(":") == 1:
        host, port_text = server.split(":")
    elif ":" in server:
        raise ValueError("write an IPv6 address as [address]:port")
    else:
        host, port_text = server, "25"
    if not host or any(c.isspace() for c in host):
        raise ValueError("no host")
    if (
        not (port_text.isascii() and port_text.isdigit())
        or not 0 < int(port_text) < 65536
    ):
        raise ValueError(f"port {port_text!r} is not 1-65535")
    return host, int(port_text)


def _check_subject(template: str) -> None:
    """Reject a subject template that names an unknown field or does not format.

    :raises ValueError: with the problem.
    """
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template)]
        for name in names:
            if name is not None and name not in SUBJECT_FIELDS:
                raise ValueError(
                    f"unknown field {{{name}}}; use {', '.join(SUBJECT_FIELDS)}"
                )
        template.format(**{**dict.fromkeys(SUBJECT_FIELDS, "x"), "duration": 0})
    except (ValueError, IndexError, KeyError) as e:
        raise ValueError(str(e) or "does not format") from None


@frozen
class EmailConfig:
    """Where and how voicemail e-mails are sent."""

    sender: str
    """The ``From`` address: ``pbx@example.com`` or ``PBX <pbx@example.com>``."""
    server: str = "127.0.0.1:25"
    """The SMTP server, ``host:port`` (``[v6]:port`` for IPv6)."""
    starttls: str = "optional"
    """``never``; ``optional``: use STARTTLS when the server offers it;
    ``required``: fail rather than send in the clear."""
    verify_certificate: bool = True
    """Check the server's certificate against the system's trusted CAs and
    its name against the host in :attr:`server`.  Turn it off only for a
    relay with a self-signed certificate on a network you trust: the link is
    then encrypted but an attacker in the middle can read it."""
    username: str = ""
    """Log in with SMTP AUTH when set.  Over a connection without TLS the
    password crosses the network in the clear: use ``starttls: required``."""
    password: str = field(default="", repr=False)
    attach: str = "wav"
    """
    ``wav``: attach the recording as it is; ``ulaw``: attach it compressed
    (G.711 µ-law WAV at 8 kHz, a quarter of a 16 kHz recording's size);
    ``none``: only say that there is one.
    """
    subject: str = DEFAULT_SUBJECT
    """A :meth:`str.format` template with the fields :data:`SUBJECT_FIELDS`."""
    delete_after_send: bool = False
    """Delete the voicemail once e-mailed.  :func:`deliver` does not do it:
    its caller does, after :func:`deliver` succeeded."""
    timeout: float = 60.0
    """Seconds to wait for the connection, and for each server answer."""

    @property
    def host(self) -> str:
        """The SMTP server's host name or address."""
        return _split_server(self.server)[0]

    @property
    def port(self) -> int:
        """The SMTP server's port."""
        return _split_server(self.server)[1]


_STRING_OPTIONS = (
    "sender",
    "server",
    "starttls",
    "username",
    "password",
    "attach",
    "subject",
)
_BOOL_OPTIONS = ("verify_certificate", "delete_after_send")
_KNOWN_OPTIONS = frozenset((*_STRING_OPTIONS, *_BOOL_OPTIONS, "timeout"))


def parse_email_options(raw: Mapping[str, Any], key_prefix: str) -> EmailConfig:
    """Validate the voicemail ``email:`` mapping of the configuration.

    :param raw: the mapping as YAML gave it.
    :param key_prefix: the dotted key of the mapping, e.g.
        ``features.voicemail.email``, used to name the key in errors.
    :returns: the validated configuration.
    :raises ConfigError: naming the first bad key and its problem.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(key_prefix, "must be a mapping")
    values: dict[str, Any] = {}
    for key in sorted(raw, key=str):
        name = f"{key_prefix}.{key}"
        value = raw[key]
        if key not in _KNOWN_OPTIONS:
            raise ConfigError(name, "unknown key")
        if key in _STRING_OPTIONS and not isinstance(value, str):
            raise ConfigError(name, "must be a string")
        if key in _BOOL_OPTIONS and not isinstance(value, bool):
            raise ConfigError(name, "must be true or false")
        if key == "timeout":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(name, "must be a number of seconds")
            if not 0 < value <= MAX_TIMEOUT:
                raise ConfigError(
                    name, f"must be more than 0 and at most {MAX_TIMEOUT:g}"
                )
            value = float(value)
        values[key] = value

    if "sender" not in values:
        raise ConfigError(f"{key_prefix}.sender", "required")
    try:
        _check_address(values["sender"])
    except ValueError as e:
        raise ConfigError(f"{key_prefix}.sender", str(e)) from None
    if "server" in values:
        try:
            _split_server(values["server"])
        except ValueError as e:
            raise ConfigError(f"{key_prefix}.server", str(e)) from None
    if values.get("starttls", "optional") not in STARTTLS_MODES:
        raise ConfigError(
            f"{key_prefix}.starttls", f"must be one of {', '.join(STARTTLS_MODES)}"
        )
    if values.get("attach", "wav") not in ATTACH_MODES:
        raise ConfigError(
            f"{key_prefix}.attach", f"must be one of {', '.join(ATTACH_MODES)}"
        )
    if "subject" in values:
        try:
            _check_subject(values["subject"])
        except ValueError as e:
            raise ConfigError(f"{key_prefix}.subject", str(e)) from None
    username, password = values.get("username", ""), values.get("password", "")
    if password and not username:
        raise ConfigError(f"{key_prefix}.username", "required with a password")
    if username and not password:
        raise ConfigError(f"{key_prefix}.password", "required with a username")
    if any(unicodedata.category(c) == "Cc" for c in username + password):
        raise ConfigError(f"{key_prefix}.username", "contains control characters")
    return EmailConfig(**values)


# ---------------------------------------------------------------------------
# The message (pure, apart from reading the recording: run it in a thread)


def clean_header_text(text: str, limit: int = MAX_HEADER_CHARS) -> str:
    """``text`` made safe for one header line.

    Line breaks, tabs and other control characters become spaces; Unicode
    bidirectional overrides and other invisible format characters are
    dropped; runs of spaces collapse to one; the result is at most ``limit``
    characters.
    """
    out = []
    for c in text:
        category = unicodedata.category(c)
        if category in ("Cc", "Zl", "Zp") or c.isspace():
            out.append(" ")
        elif category in ("Cf", "Cs", "Co", "Cn"):  # bidi overrides are Cf
            continue
        else:
            out.append(c)
    cleaned = " ".join("".join(out).split())
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "\u2026"
    return cleaned


def _clean_text(text: str) -> str:
    """Free text (a transcript) without control characters, one paragraph."""
    return clean_header_text(text, limit=1_000_000)


def _format_duration(seconds: float) -> str:
    """``42 s`` or ``2 min 05 s``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"


def _message_id(message_id: str | None, sender: str) -> str:
    """``<id@domain>`` from what the caller gave, or a new one in the sender's domain.

    :raises ValueError: if ``message_id`` is not ``id@domain`` in printable ASCII.
    """
    if message_id is None:
        domain = _check_address(sender).rpartition("@")[2]
        return make_msgid("voicemail", domain=domain)
    match = _MESSAGE_ID.fullmatch(message_id)
    if match is None:
        raise ValueError(f"{message_id!r} is not a Message-ID (id@domain)")
    return f"<{match.group(1)}>"


def build_message(
    config: EmailConfig,
    *,
    to: str,
    mailbox: str,
    caller: str,
    caller_name: str,
    received: float,
    duration: float,
    transcript: str | None = None,
    confidence: float | None = None,
    wav_path: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """The e-mail announcing one voicemail (blocking: it reads the recording).

    The body gives the time in UTC (ISO 8601).  The recording is attached as
    ``audio/wav`` (as recorded, or µ-law) unless ``config.attach`` is ``none``, when the file can be read;
    otherwise the body says it is not attached.

    :param config: the sender, subject template and attachment mode.
    :param to: the recipient, ``a@b`` or ``Name <a@b>``.
    :param mailbox: the mailbox (extension) the voicemail was left in.
    :param caller: the caller's number (the SIP From user).
    :param caller_name: the caller's display name; may be empty.
    :param received: when the voicemail was left, POSIX seconds.
    :param duration: its length in seconds.
    :param transcript: its text, or None when there is none.
    :param confidence: the transcriber's confidence, 0 to 1.
    :param wav_path: the recording.
    :param message_id: ``id@domain`` (angle brackets optional); a new one in
        the sender's domain when None.
    :returns: the message, with ``\\n`` line ends (the SMTP client turns them
        into CRLF).
    :raises ValueError: if ``to`` or ``message_id`` is malformed.
    """
    _check_address(to)
    number = clean_header_text(caller, 80) or "unknown"
    name = clean_header_text(caller_name, 80)
    who = f"{name} ({number})" if name and name != number else number
    box = clean_header_text(mailbox, 80)
    fields = {
        "caller": who,
        "caller_number": number,
        "caller_name": name or number,
        "mailbox": box,
        "duration": max(0, round(duration)),
    }
    when = datetime.fromtimestamp(received, UTC)

    message = EmailMessage(policy=default_policy)
    message["From"] = config.sender
    message["To"] = to
    message["Subject"] = clean_header_text(config.subject.format(**fields))
    message["Date"] = format_datetime(when)
    message["Message-ID"] = _message_id(message_id, config.sender)

    lines = [
        f"You have a new voicemail in mailbox {box}.",
        "",
        f"From:     {who}",
        f"Received: {when.strftime('%Y-%m-%d %H:%M:%S')} UTC",
        f"Duration: {_format_duration(duration)}",
        "",
    ]
    if transcript is None or not transcript.strip():
        lines.append("Transcript: no transcript.")
    else:
        certainty = "" if confidence is None else f" (confidence {confidence:.0%})"
        lines.append(f"Transcript{certainty}:")
        lines.extend(
            textwrap.wrap(
                _clean_text(transcript), 72, initial_indent="  ", subsequent_indent="  "
            )
        )

    recording: bytes | None = None
    if config.attach != "none":
        if wav_path is not None:
            try:
                if config.attach == "ulaw":
                    recording = ulaw_wav_from_file(wav_path)
                else:
                    with open(wav_path, "rb") as f:
                        recording = f.read()
            except (OSError, ValueError):
                recording = None
        lines.append("")
        if recording is None:
            lines.append("The recording could not be attached; it is in your mailbox.")
        else:
            lines.append("The recording is attached.")
    message.set_content("\n".join(lines) + "\n", cte="quoted-printable")

    if recording is not None:
        stem = _FILENAME_UNSAFE.sub(
            "_", f"voicemail-{box}-{when.strftime('%Y%m%d-%H%M%S')}"
        )
        message.add_attachment(
            recording, maintype="audio", subtype="wav", filename=f"{stem}.wav"
        )
    return message.as_bytes()


# ---------------------------------------------------------------------------
# Sending (reactor thread)


def _context_factory(config: EmailConfig) -> Any:
    """The TLS client options for STARTTLS, or None when TLS is never used."""
    if config.starttls == "never":
        return None
    if config.verify_certificate:
        return ssl.optionsForClientTLS(config.host)
    return ssl.CertificateOptions(verify=False)


def _connection_problem(cause: BaseException | None, fallback: str) -> str:
    """A few words on why the connection failed: refused, TLS, lost."""
    if isinstance(cause, SSL.Error):
        details = (
            cause.args[0] if cause.args and isinstance(cause.args[0], list) else []
        )
        reasons = [str(d[-1]) for d in details if isinstance(d, tuple) and d]
        return f"TLS failed ({'; '.join(reasons) or 'handshake error'})"
    if isinstance(cause, ConnectionRefusedError | error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, error.TimeoutError):
        return "connection timed out"
    if cause is not None:
        return f"connection failed ({clean_header_text(str(cause)) or type(cause).__name__})"
    return f"connection failed ({fallback})"


def _delivery_error(failure: Failure, config: EmailConfig) -> Failure:
    """Turn what the SMTP client failed with into an :class:`EmailDeliveryError`."""
    problem = failure.value
    where = f"SMTP server {config.server}"
    if isinstance(problem, EmailDeliveryError):
        return failure
    if isinstance(problem, smtp.SMTPClientError):
        code = problem.code if problem.code > 0 else None
        answer = (
            problem.resp.decode("utf-8", "replace")
            if isinstance(problem.resp, bytes)
            else str(problem.resp)
        )
        answer = clean_header_text(answer)
        if isinstance(problem, smtp.TLSRequiredError):
            text = f"{where} does not offer STARTTLS and starttls is 'required'"
        elif isinstance(problem, smtp.AUTHRequiredError):
            text = f"{where} does not offer AUTH, which a username requires"
        elif isinstance(problem, smtp.AUTHDeclinedError):
            text = f"{where} refused the username or password ({answer})"
        elif isinstance(problem, smtp.TLSError):
            text = f"{where}: TLS handshake failed"
        elif isinstance(problem, smtp.SMTPTimeoutError):
            text = f"{where} did not answer within {config.timeout:g} s"
        elif isinstance(problem, smtp.SMTPConnectError):
            text = f"{where}: {_connection_problem(problem.__cause__, answer)}"
        else:
            text = f"{where}: {problem.code} {answer}" if code else f"{where}: {answer}"
        return Failure(EmailDeliveryError(text, code))
    return Failure(EmailDeliveryError(f"{where}: {_connection_problem(problem, '')}"))


class _SenderFactory(smtp.ESMTPSenderFactory):
    """The Twisted sender, plus :attr:`closed`: fires when the connection is gone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed: Deferred[None] = Deferred()

    def clientConnectionFailed(self, connector: Any, err: Failure) -> None:
        """Report the failure, then say the connection is gone."""
        try:
            super().clientConnectionFailed(connector, err)
        finally:
            if not self.closed.called:
                self.closed.callback(None)

    def clientConnectionLost(self, connector: Any, err: Failure) -> None:
        """Report the failure if the message was not sent, then say so."""
        try:
            super().clientConnectionLost(connector, err)
        finally:
            if not self.closed.called:
                self.closed.callback(None)


def send_voicemail_email(
    reactor: IReactorTCP, config: EmailConfig, to: str, message_bytes: bytes
) -> Deferred[None]:
    """Send one message to one recipient through the configured SMTP server.

    STARTTLS follows :attr:`EmailConfig.starttls`; AUTH is required when a
    username is set.  :attr:`EmailConfig.timeout` limits the TCP connection
    and each wait for the server; there is no retry here (a failure is the
    caller's to retry or report).

    :param reactor: connects to the server.
    :param config: the server and how to talk to it.
    :param to: the recipient, ``a@b`` or ``Name <a@b>``.
    :param message_bytes: from :func:`build_message`.
    :returns: fires with None once the server accepted the message; fails
        with :class:`EmailDeliveryError`.
    """
    try:
        recipient = _check_address(to)
        sender = _check_address(config.sender)
        host, port = _split_server(config.server)
    except ValueError as e:
        failed: Deferred[None] = Deferred()
        failed.errback(EmailDeliveryError(str(e)))
        return failed
    result: Deferred[Any] = Deferred()
    factory = _SenderFactory(
        config.username.encode("utf-8") or None,
        config.password.encode("utf-8") or None,
        sender,
        recipient,
        BytesIO(message_bytes),
        result,
        retries=0,
        timeout=config.timeout,
        contextFactory=_context_factory(config),
        requireAuthentication=bool(config.username),
        requireTransportSecurity=config.starttls == "required",
    )
    reactor.connectTCP(host, port, factory, timeout=config.timeout)

    async def finish() -> None:
        outcome: Failure | None = None
        try:
            await result
        except Exception:
            outcome = Failure()
        # Report only once the connection is gone, so nothing is left open;
        # the client's own idle timeout closes a server that never answers QUIT.
        await factory.closed
        if outcome is not None:
            _delivery_error(outcome, config).raiseException()

    return Deferred.fromCoroutine(finish())


async def deliver(
    in_thread: Callable[..., Deferred[Any]],
    reactor: IReactorTCP,
    config: EmailConfig,
    to: str,
    *,
    mailbox: str,
    caller: str,
    caller_name: str,
    received: float,
    duration: float,
    transcript: str | None = None,
    confidence: float | None = None,
    wav_path: str | None = None,
    message_id: str | None = None,
) -> None:
    """Build the voicemail e-mail off the reactor thread, then send it.

    Nothing is deleted here, whatever :attr:`EmailConfig.delete_after_send`
    says: when this returns without raising and the option is set, the caller
    deletes the recording and its mailbox entry.

    :param in_thread: ``(f, *args, **kwargs) -> Deferred``, e.g.
        :meth:`pbx.interfaces.IPBX.run_in_thread`: builds the message.
    :param reactor: connects to the server.
    :param config: see :class:`EmailConfig`.
    :param to: the recipient.
    :raises EmailDeliveryError: if the server did not take the message.
    :raises ValueError: if an address or the Message-ID is malformed.
    :raises OSError: never for the recording (an unreadable one is left out).

    The other parameters are those of :func:`build_message`.
    """
    message: bytes = await in_thread(
        build_message,
        config,
        to=to,
        mailbox=mailbox,
        caller=caller,
        caller_name=caller_name,
        received=received,
        duration=duration,
        transcript=transcript,
        confidence=confidence,
        wav_path=wav_path,
        message_id=message_id,
    )
    await send_voicemail_email(reactor, config, to, message)
