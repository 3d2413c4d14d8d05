"""
baresip phones for the integration tests: :class:`Phone` (one baresip
process registered as one extension) and :class:`Control` (its ``ctrl_tcp``
connection).

- baresip 1.0's ``aufile`` module is an audio *source* only: it plays an
  8 kHz mono 16-bit WAV file (``audio_source aufile,<file>``).  When the
  file ends, baresip hangs up, so the files are longer than the call.
- its ``sndfile`` audio filter records, per call, what goes to the encoder
  (``dump-<time>-enc.wav``) and what came out of the decoder
  (``dump-<time>-dec.wav``) into ``snd_path``; no audio player is needed
  (the receive pipeline runs without one).
- ``net_interface 127.0.0.1`` keeps baresip's SDP on loopback.
- ``ctrl_tcp`` (with ``menu`` for the commands) takes ``dial`` and
  ``hangup`` as netstring-framed JSON and reports call events the same way;
  :func:`press` sends a key.
- an answering phone's account has ``answermode=auto``.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from twisted.trial.unittest import SynchronousTestCase

from support.calls import RATE, read_pcm_wav
from support.daemon import (
    API,
    Daemon,
    free_port,
    free_port_pair,
    require_binary,
    wait_until,
)

MODULES = Path("/usr/lib/baresip/modules")
NEEDED = ("account", "g711", "aufile", "sndfile", "ctrl_tcp", "menu")
LIMIT = 20.0
SAFETY_QUIT = 120  # baresip quits by itself after this, should the test die


class Control:
    """
    A client of baresip's ``ctrl_tcp`` module: netstring-framed JSON
    commands out, responses and events in (read by a thread).
    """

    def __init__(
        self, port: int, process: subprocess.Popen[bytes], limit: float = LIMIT
    ) -> None:
        """Connect to 127.0.0.1:``port``, retrying while baresip (``process``) starts."""

        def connect() -> socket.socket | None:
            if process.poll() is not None:
                raise AssertionError(f"baresip exited {process.returncode}")
            return _connect(port)

        self.socket = wait_until(connect, limit, f"baresip's ctrl_tcp on port {port}")
        self.messages: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                data = self.socket.recv(65536)
            except OSError:
                data = b""
            if not data:
                return
            buffer += data
            # Netstrings: <length>:<payload>,
            while (colon := buffer.find(b":")) > 0 and buffer[:colon].isdigit():
                end = colon + 1 + int(buffer[:colon])
                if len(buffer) <= end:
                    break
                message = json.loads(buffer[colon + 1 : end])
                buffer = buffer[end + 1 :]
                with self._changed:
                    self.messages.append(message)
                    self._changed.notify_all()

    def command(self, command: str, params: str = "") -> None:
        """Send one command; its response is checked by :meth:`wait_for`."""
        payload = json.dumps(
            {"command": command, "params": params, "token": command}
        ).encode()
        since = self.mark()
        self.socket.sendall(b"%d:%s," % (len(payload), payload))
        response = self.wait_for(
            lambda m: m.get("response") and m.get("token") == command, since=since
        )
        if not response.get("ok"):
            raise AssertionError(f"baresip refused {command} {params}: {response}")

    def mark(self) -> int:
        """How many messages came so far: ``since`` for a later wait."""
        with self._changed:
            return len(self.messages)

    def event(self, kind: str, since: int = 0) -> dict[str, Any]:
        """Wait for an event of type ``kind`` (CALL_ESTABLISHED, CALL_CLOSED...)."""
        return self.wait_for(
            lambda m: m.get("event") and m.get("type") == kind, since=since
        )

    def wait_for(
        self,
        match: Callable[[dict[str, Any]], Any],
        limit: float = LIMIT,
        since: int = 0,
    ) -> dict[str, Any]:
        """
        The first message so far or within ``limit`` seconds that ``match``
        accepts, among those after the first ``since``.
        """
        deadline = time.monotonic() + limit
        with self._changed:
            while True:
                for message in self.messages[since:]:
                    if match(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no such message from baresip: {self.messages}"
                    )
                self._changed.wait(remaining)

    def close(self) -> None:
        """Close the connection (shutdown first: that wakes the reader's recv)."""
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by baresip
        self.socket.close()
        self._reader.join(10)


def _connect(port: int) -> socket.socket | None:
    try:
        connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return None
    connection.settimeout(None)  # the reader blocks until baresip closes it
    return connection


class Phone:
    """One baresip process registered as one extension, with its files."""

    def __init__(
        self,
        baresip: str,
        home: Path,
        number: str,
        password: str,
        sip_port: int,
        source: Path,
        rtp_first: int,
        answer: bool,
        codecs: tuple[str, ...] = ("g711",),
        extra_modules: tuple[str, ...] = (),
        transport: str = "udp",
        cafile: Path | None = None,
        outbound: bool = False,
        params: str = "",
    ) -> None:
        """
        Write its configuration and start it.

        :param sip_port: pbx's port for ``transport`` (its TLS port for ``tls``).
        :param codecs: codec modules, in order of preference.
        :param extra_modules: more modules to load (``mwi``...).
        :param transport: ``udp``, ``tcp`` or ``tls``: how it registers and calls.
        :param cafile: the certificate to trust for TLS (libre 1.1.0 does
            not check it, but the phone is set up as a real one would be).
        :param outbound: register with RFC 5626 outbound (``reg-id`` and
            ``+sip.instance``; baresip needs its ``uuid`` module for that).
        :param params: more account parameters (``;mediaenc=srtp-mand``: SRTP
            only, with the ``srtp`` module in ``extra_modules``).
        """
        self.transport = transport
        self.number = number
        self.home = home
        self.recordings = home / "recordings"
        self.recordings.mkdir(parents=True)
        self.control_port = free_port()
        local = free_port_pair()
        (home / "config").write_text(
            "poll_method\t\tepoll\n"
            f"module_path\t\t{MODULES}\n"
            f"sip_listen\t\t127.0.0.1:{local}\n"
            "net_interface\t\t127.0.0.1\n"
            f"rtp_ports\t\t{rtp_first}-{rtp_first + 19}\n"
            f"audio_source\t\taufile,{source}\n"
            # Relative to baresip's working directory: sndfile cuts the
            # file name at 127 bytes, and a test's temporary path is long.
            f"snd_path\t\t{self.recordings.name}\n"
            f"ctrl_tcp_listen\t\t127.0.0.1:{self.control_port}\n"
            + (f"sip_cafile\t\t{cafile}\n" if cafile is not None else "")
            + "".join(f"module\t\t\t{codec}.so\n" for codec in codecs)
            + "module\t\t\taufile.so\n"
            "module\t\t\tsndfile.so\n"
            "module\t\t\tctrl_tcp.so\n"
            "module\t\t\tmenu.so\n"
            + "".join(f"module\t\t\t{m}.so\n" for m in extra_modules)
            + ("module\t\t\tuuid.so\n" if outbound else "")
            + "module_tmp\t\taccount.so\n"
        )
        answermode = ";answermode=auto" if answer else ""
        account = (
            f"<sip:{number}@127.0.0.1:{sip_port};transport={transport}>"
            f";auth_pass={password};regint=300{answermode}{params}"
        )
        if outbound:
            account += (
                f';sipnat=outbound;outbound="sip:127.0.0.1:{sip_port};transport={transport}"'
            )
        # baresip 1.0's mwi module re-subscribes in an endless loop when the
        # registration succeeds before its start-up timer has fired (that
        # timer walks the subscription list while appending to it).  Such a
        # phone starts with no account and gets it once running, which
        # orders the two.
        register_later = "mwi" in extra_modules
        (home / "accounts").write_text("" if register_later else account + "\n")
        self.log = home / "output.txt"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [baresip, "-f", str(home), "-t", str(SAFETY_QUIT)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=home,
            )
        try:
            self.control = Control(self.control_port, self.process)
            if register_later:
                self.control.command("uanew", account)
        except AssertionError as e:
            self.process.kill()
            self.process.wait(30)
            raise AssertionError(f"{e}\n{self.output()[-3000:]}") from None

    def output(self) -> str:
        """What baresip printed so far."""
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM (baresip unregisters and closes its files); return the exit status."""
        self.control.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(LIMIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(30)

    def heard(self) -> list[int]:
        """The decoded audio of the one call this phone had."""
        [path] = self.recordings.glob("dump-*-dec.wav")
        return read_pcm_wav(path)

    def recorded(self) -> set[Path]:
        """The decoded-audio files so far (one per call, named by the second it began)."""
        return set(self.recordings.glob("dump-*-dec.wav"))


class PhonesTestCase(SynchronousTestCase):
    """
    pbx and baresip phones a test class starts once (in its
    ``setUpClass``): after each test no call is left and pbx logged no
    traceback; at the end the phones and pbx stop and their files go.
    """

    daemon: ClassVar[Daemon]
    api: ClassVar[API]
    phones: ClassVar[dict[str, Phone]]
    workdir: ClassVar[Path]

    @classmethod
    def tearDownClass(cls) -> None:
        """Stop the phones and pbx; remove their files."""
        stop_all(cls.phones, cls.daemon, cls.workdir)

    def tearDown(self) -> None:
        """No call is left, and pbx logged no traceback."""
        wait_until(lambda: self.api.get("/calls")["calls"] == [], LIMIT, "no call left")
        self.assertFalse(self.daemon.tracebacks)


def press(phone: Phone, key: str, n: int) -> None:
    """
    Press ``key`` on ``phone`` (ctrl_tcp's ``sndcode``: an RFC 4733 start
    and end event) and wait for baresip's answer to this very command
    (``Control.command`` matches answers by command name, and would take
    the first ``sndcode``'s for every later one).
    """
    token = f"sndcode-{n}"
    payload = json.dumps({"command": "sndcode", "params": key, "token": token}).encode()
    phone.control.socket.sendall(b"%d:%s," % (len(payload), payload))
    answer = phone.control.wait_for(
        lambda m: m.get("response") and m.get("token") == token
    )
    if not answer.get("ok"):
        raise AssertionError(f"baresip refused sndcode {key}: {answer}")


def recorded_seconds(phone: Phone) -> float:
    """How much audio the phone's call recording holds so far (0 before its call starts)."""
    paths = list(phone.recordings.glob("dump-*-dec.wav"))
    if not paths:
        return 0.0
    # A 44-byte WAV header (rewritten at the end), then 16-bit samples.
    return max(0, paths[0].stat().st_size - 44) / 2 / RATE


def wait_registered(phones: dict[str, Phone], registrations: Callable[[], list[dict[str, Any]]]) -> None:
    """
    Wait for each phone's registration over its own transport, as
    ``registrations`` (the API's list) shows them; a phone that does not
    register fails with the end of its output.
    """
    for number, phone in phones.items():
        try:
            wait_until(
                lambda n=number, t=phone.transport: [  # type: ignore[misc]
                    r for r in registrations() if r["extension"] == n and r["transport"] == t
                ],
                LIMIT,
                f"{number}'s {phone.transport} registration",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{phone.output()[-3000:]}") from None


def stop_all(phones: dict[str, Phone], daemon: Any, workdir: Path) -> None:
    """Stop the phones, then pbx; remove their files."""
    for phone in phones.values():
        phone.stop()
    daemon.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def require_baresip(*modules: str) -> str:
    """baresip's path, once its binary and the modules the tests load (:data:`NEEDED`, ``modules``) are there."""
    baresip = require_binary("baresip", "baresip-core")
    missing = [m for m in (*NEEDED, *modules) if not (MODULES / f"{m}.so").is_file()]
    if missing:
        raise AssertionError(f"baresip-core is incomplete: no {missing} in {MODULES}")
    return baresip
