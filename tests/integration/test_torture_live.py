"""
Integration tests: the RFC 4475 and RFC 5118 torture messages against the
live daemon over UDP.

Every message is sent from its own socket on 127.0.0.1, with the top Via's
sent-by rewritten to that socket's address first, so any reply comes back
to the test and never towards the 192.0.2.x / example.com hosts the messages
name (the server answers UDP requests at the source address anyway, RFC 3581
style; the rewrite makes the port ours too).  A message with no Via at all
(``test.dat``) goes out as it is: the source address is then the only place
a reply can go (RFC 3261 §18.2.2 needs a Via for any other).  A message whose
Via is there but whose sent-by cannot be found would be skipped with the
reason; none in the corpus is.

One socket per message keeps replies apart: several messages share Call-ID,
tags and even branch, and a reply to one must not be blamed on another.  The
messages all go out at once, then replies are collected for a short bounded
window; one replay serves every test below, so each corpus file is reported
as its own test (pytest parametrisation rather than trial classes, because
the corpus is data).

Verdicts come from ``verdicts.tsv`` (RFC 4475) and the table of
``EXPECTED.md`` (RFC 5118, which has no TSV).  Checked: no message whose
verdict is ACCEPT is answered 400; a response is never answered (it matches
a client transaction or is dropped, RFC 3261 §18.1.2; SIP has no response to
a response); the server still answers OPTIONS afterwards; the daemon logged
no traceback.

The corpus is ``tests/conformance`` (``support.paths.CONFORMANCE``).
"""

from __future__ import annotations

import re
import select
import socket
import time
from collections.abc import Iterator

import attrs
import pytest

from support.daemon import (
    Daemon,
    admin_password,
    free_port,
    loopback_config,
    options_ping,
    strong_password,
)
from support.paths import CONFORMANCE

pytestmark = pytest.mark.integration

CORPUS = CONFORMANCE
#: How long replies are collected after the last message went out.  Every
#: answer here is immediate (a 401 needs one store read); the window only
#: has to cover a busy machine.
COLLECT = 2.0

# RFC 3261 §25.1: LWS = [*WSP CRLF] 1*WSP, SWS = [LWS].
_SWS = rb"(?:[ \t]*\r\n)?[ \t]*"
_LWS = rb"(?:[ \t]*\r\n)?[ \t]+"
_TOKEN = rb"[A-Za-z0-9\-.!%*_+`'~]+"
#: The start of a Via value up to its sent-by (§20.42: sent-protocol LWS sent-by).
_VIA_VALUE = re.compile(
    _SWS
    + rb"SIP"
    + _SWS
    + rb"/"
    + _SWS
    + rb"[0-9.]+"
    + _SWS
    + rb"/"
    + _SWS
    + _TOKEN
    + _LWS
    + rb"(?P<sent_by>(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:"
    + _SWS
    + rb":"
    + _SWS
    + rb"[0-9]+)?)"
)
#: A Via header name at the start of a header line, long or compact form (§7.3.3).
_VIA_NAME = re.compile(rb"(?i)(?:via|v)[ \t]*:")


def rewrite_top_via(message: bytes, host: str, port: int) -> bytes | None:
    """
    Replace the sent-by of the first Via value with ``host:port``.

    Header lines are found by CRLF not followed by whitespace (a folded
    continuation is part of the line before), up to the empty line or, for
    a message without one, the end.  Everything but the sent-by stays byte
    for byte as it was; the body is untouched, so Content-Length still holds.

    :returns: the new message, or None when no Via sent-by can be found.
    """
    end = message.find(b"\r\n\r\n")
    head_end = len(message) if end < 0 else end
    crlf = message.find(b"\r\n")
    while 0 <= crlf < head_end:
        start = crlf + 2
        if message[start : start + 1] not in (b" ", b"\t"):
            name = _VIA_NAME.match(message, start)
            if name is not None:
                value = _VIA_VALUE.match(message, name.end())
                if value is None:
                    return None
                a, b = value.span("sent_by")
                return message[:a] + f"{host}:{port}".encode() + message[b:]
        crlf = message.find(b"\r\n", start)
    return message


def load_verdicts() -> dict[str, str]:
    """``rfcNNNN/file.dat`` -> accept / reject / either / drop / response."""
    verdicts: dict[str, str] = {}
    for line in (CORPUS / "rfc4475" / "verdicts.tsv").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, verdict = line.split("\t")[:2]
            verdicts[f"rfc4475/{name}"] = verdict.strip().lower()
    row = re.compile(r"^\|[^|]*\|\s*`([^`]+\.dat)`\s*\|[^|]*\|\s*\*\*([A-Z]+)")
    for line in (CORPUS / "rfc5118" / "EXPECTED.md").read_text().splitlines():
        m = row.match(line)
        if m:
            verdicts[f"rfc5118/{m.group(1)}"] = m.group(2).lower()
    return verdicts


def corpus_files() -> list[str]:
    """Every message file, as ``rfcNNNN/name.dat``."""
    return sorted(
        f"{d}/{p.name}"
        for d in ("rfc4475", "rfc5118")
        for p in (CORPUS / d).glob("*.dat")
    )


@attrs.frozen
class Outcome:
    """What happened to one message."""

    verdict: str
    sent: bool
    skip_reason: str = ""
    replies: tuple[bytes, ...] = ()

    @property
    def statuses(self) -> list[str]:
        """The status line of each reply."""
        return [r.split(b"\r\n", 1)[0].decode("utf-8", "replace") for r in self.replies]


@attrs.frozen
class Replay:
    """The result of replaying the whole corpus once."""

    outcomes: dict[str, Outcome]
    after: str  # status line of the OPTIONS sent after the replay
    tracebacks: list[str]


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    """Start a daemon, replay every message, probe it with OPTIONS, stop it."""
    verdicts = load_verdicts()
    api_port, sip_port = free_port(), free_port()
    daemon = Daemon(
        str(tmp_path_factory.mktemp("torture")),
        loopback_config(
            api_port=api_port,
            sip_port=sip_port,
            admin_password=admin_password(),
            extensions={"1001": strong_password("1001")},
            # The corpus is mostly malformed messages from one address, which
            # the source defence would score until it bans it; the verdicts
            # are what is tested here.
            security={"allow": ["127.0.0.1"]},
        ),
    )
    sockets: dict[str, socket.socket] = {}
    outcomes: dict[str, Outcome] = {}
    try:
        daemon.start()
        for name in corpus_files():
            verdict = verdicts.get(name, "none")
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            data = rewrite_top_via(
                (CORPUS / name).read_bytes(), "127.0.0.1", s.getsockname()[1]
            )
            if data is None:
                s.close()
                outcomes[name] = Outcome(
                    verdict,
                    False,
                    "its top Via has no sent-by to rewrite, so a reply "
                    "could not be kept on this socket",
                )
                continue
            sockets[name] = s
            s.sendto(data, ("127.0.0.1", sip_port))
        replies: dict[str, list[bytes]] = {name: [] for name in sockets}
        owner = {s.fileno(): name for name, s in sockets.items()}
        deadline = time.monotonic() + COLLECT
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(list(sockets.values()), [], [], remaining)
            for s in ready:
                replies[owner[s.fileno()]].append(s.recv(65535))
        for name in sockets:
            outcomes[name] = Outcome(
                verdicts.get(name, "none"), True, replies=tuple(replies[name])
            )
        after = options_ping(sip_port)
    finally:
        for s in sockets.values():
            s.close()
        daemon.stop()
    yield Replay(outcomes, after, list(daemon.tracebacks))


def outcome_of(replay: Replay, name: str) -> Outcome:
    """The outcome of one file, skipping the test when the file was not sent."""
    outcome = replay.outcomes[name]
    if not outcome.sent:
        pytest.skip(f"{name}: {outcome.skip_reason}")
    return outcome


@pytest.mark.parametrize("name", corpus_files())
def test_message(replay: Replay, name: str) -> None:
    """An ACCEPT message is never answered 400, and a response is never answered at all."""
    outcome = outcome_of(replay, name)
    detail = f"{name} ({outcome.verdict}) got {outcome.statuses}"
    if (CORPUS / name).read_bytes().startswith(b"SIP/"):
        assert outcome.replies == (), detail
    if outcome.verdict == "accept":
        assert not any(s.startswith("SIP/2.0 400") for s in outcome.statuses), detail


def test_verdicts_cover_corpus(replay: Replay) -> None:
    """Every message of RFC 4475 but test.dat, and every one of RFC 5118, has a verdict (the table was read)."""
    assert len(replay.outcomes) == 50 + 12
    missing = [
        n
        for n, o in replay.outcomes.items()
        if o.verdict == "none" and n != "rfc4475/test.dat"
    ]
    assert missing == []
    assert sum(o.verdict == "accept" for o in replay.outcomes.values()) >= 30


def test_still_answers_options(replay: Replay) -> None:
    """After the whole corpus the server still answers OPTIONS with 200."""
    assert replay.after == "SIP/2.0 200 OK"


def test_no_traceback(replay: Replay) -> None:
    """Nothing in the corpus made the daemon log a traceback."""
    assert replay.tracebacks == []


def test_rewrite_keeps_everything_but_sent_by() -> None:
    """The Via rewrite changes only the sent-by, also in a folded, spaced-out Via; no Via, no change."""
    message = (
        b"INVITE sip:u@example.com SIP/2.0\r\nTo: <sip:u@example.com>\r\n"
        b"Via  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2:5070;branch=z9hG4bK1\r\n"
        b"v: SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK2\r\nl: 0\r\n\r\n"
    )
    assert rewrite_top_via(message, "127.0.0.1", 4000) == message.replace(
        b"192.0.2.2:5070", b"127.0.0.1:4000"
    )
    no_via = b"OPTIONS sip:x SIP/2.0\r\nTo: <sip:x>\r\n\r\n"
    assert rewrite_top_via(no_via, "127.0.0.1", 4000) == no_via
    bad_via = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP ;branch=z9hG4bK1\r\n\r\n"
    assert rewrite_top_via(bad_via, "127.0.0.1", 4000) is None
