"""
Time to ``pbx ready`` with many extensions that have PINs.

For each ``--extensions`` count the benchmark writes a configuration with
that many extensions, each with a SIP password and a 6-digit PIN (voicemail
and the API's user login), and starts ``twistd -n pbx`` from this checkout
twice on the same SQLite state directory:

- *fresh*: an empty store.  Every extension and PIN is written; PINs are
  PBKDF2-hashed (600,000 iterations).
- *restart*: the same configuration and store again; nothing changed.

Reported per start: seconds from spawning the daemon to its ``pbx ready``
line (which says every listener is up), and for the fresh start the seconds
until the log says every held PIN was hashed and stored (that work runs
after ``pbx ready``; meanwhile PINs verify against the configuration's own
values held in memory).  The daemon is stopped with SIGTERM after each start.

Usage, from a source checkout (nothing is installed; see bench/README.rst)::

    python bench/start.py [--extensions 1000,5000] [--source DIR]

``--source`` runs another checkout's ``src`` (e.g. the commit before a
change) with the same configuration.  The raw results go to
``bench/results/start-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    PBX,
    RESULTS,
    ROOT,
    TWISTD,
    User,
    free_udp_port,
    machine,
    make_users,
    rst_table,
)

READY = re.compile(r"pbx ready")
HASHED = re.compile(r"held secret\(s\) hashed and stored in ([0-9.]+) s")
LIMIT_S = 1800.0


class StartPBX(PBX):
    """:class:`PBX` whose extensions have PINs, run from ``source``'s ``src``."""

    source = ROOT
    #: Whether the checkout hashes PINs after ``pbx ready`` (and says when done).
    hashes_later = True
    problem_pattern = re.compile(r"Traceback|Unhandled|CRITICAL", re.I)

    def __init__(self, workdir: Path, port: int, users: Sequence[User], pins: dict[str, str]) -> None:
        super().__init__(workdir, port, users)
        self.pins = pins

    def config_text(self) -> str:
        """The generated configuration with ``pin:`` added to every extension."""
        text = super().config_text()
        for number, pin in self.pins.items():
            entry = f'  "{number}": {{name: Bench {number}, '
            text = text.replace(entry, f'{entry}pin: "{pin}", ', 1)
        return text

    def environment(self) -> dict[str, str]:
        """The environment with ``source``'s ``src`` first on PYTHONPATH."""
        env = super().environment()
        env["PYTHONPATH"] = str(self.source / "src") + ":" + env["PYTHONPATH"]
        return env

    def timed_start(self, run: str) -> dict[str, Any]:
        """Start, time ``pbx ready`` (and, on a fresh store, the PINs' hashing), stop."""
        config = self.workdir / "pbx.yml"
        config.write_text(self.config_text())
        self.log_path = self.workdir / f"pbx-{run}.log"
        self.command = [*TWISTD, "--pidfile=", "-n", "pbx", "-c", str(config)]
        wait_for_hashing = run == "fresh" and self.hashes_later
        began = time.monotonic()
        self._spawn(self.environment())
        assert self.process is not None
        ready = hashed = None
        try:
            while True:
                elapsed = time.monotonic() - began
                if elapsed > LIMIT_S:
                    raise self._died(f"not done after {LIMIT_S:.0f} s")
                log = self.log_path.read_text(errors="replace")
                if ready is None and READY.search(log):
                    ready = elapsed
                if ready is not None and not wait_for_hashing:
                    break
                if ready is not None and HASHED.search(log):
                    hashed = elapsed
                    break
                if self.process.poll() is not None:
                    raise self._died(f"exited with status {self.process.returncode}")
                time.sleep(0.05)
        finally:
            status = self.stop()
        return {
            "run": run,
            "ready_s": round(ready, 2),
            "pins_hashed_s": round(hashed, 2) if hashed is not None else None,
            "exit_status": status,
            "problems": self.log_problems(),
        }


def six_digits() -> str:
    """A random 6-digit PIN."""
    return "".join(secrets.choice("0123456789") for _ in range(6))


def measure(count: int, source: Path, keep: bool) -> dict[str, Any]:
    """A fresh start and a restart with ``count`` extensions."""
    workdir = Path(tempfile.mkdtemp(prefix=f"pbx-start-{count}-"))
    try:
        users = make_users(count, 100000)
        pbx = StartPBX(workdir, free_udp_port(), users, {u.number: six_digits() for u in users})
        pbx.source = source
        # A checkout that hashes before "pbx ready" logs no "hashed" line.
        pbx.hashes_later = (source / "src" / "pbx" / "security" / "pending.py").exists()
        runs = [pbx.timed_start("fresh"), pbx.timed_start("restart")]
        for run in runs:
            print(f"{count} extensions, {run['run']}: ready in {run['ready_s']} s"
                  + (f", PINs hashed at {run['pins_hashed_s']} s" if run["pins_hashed_s"] else ""), flush=True)
        return {"extensions": count, "runs": runs, "workdir": str(workdir) if keep else None}
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print a table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extensions", default="1000,5000", help="comma-separated counts")
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout whose src/ to run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directories")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.extensions.split(",") if c]
    results = {
        "machine": machine(),
        "source": str(args.source.resolve()),
        "measurements": [measure(c, args.source.resolve(), args.keep) for c in counts],
    }
    rows = []
    for m in results["measurements"]:
        fresh, restart = m["runs"]
        rows.append([
            f"{m['extensions']:,}",
            f"{fresh['ready_s']} s",
            f"{fresh['pins_hashed_s']} s" if fresh["pins_hashed_s"] else "-",
            f"{restart['ready_s']} s",
        ])
    print(rst_table(["extensions with PINs", "fresh store: ready", "every PIN hashed", "restart: ready"], rows))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"start-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    problems = [p for m in results["measurements"] for r in m["runs"] for p in r["problems"]]
    for line in problems[:20]:
        print(f"problem: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
