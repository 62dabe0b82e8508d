"""Two-party benchmark plumbing shared by the scripts: a free port, the party of a worker
process, and running a script's server and client workers as two OS processes (one thread
each) that each print one JSON line last."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(
    role: str, port: int, label: str, timeout: float = 900, ot_source: str | None = None
) -> Any:  # noqa: ANN401
    """The worker's set-up Party over loopback TCP (the server listens, the client joins), its
    OT on ``ot_source`` (None: the session default).

    Plaintext on purpose: these scripts measure the protocols themselves; what TLS adds to a
    whole run is measured by ``benchmarks/e2e.py`` (TLS beside ``--insecure-plaintext``)."""
    from twofold.runtime import net
    from twofold.runtime.session import OT_DEFAULT, Party

    if role == "server":
        with net.listen("127.0.0.1", port, timeout=timeout) as lst:
            chan = lst.accept(None)
    else:
        chan = net.connect("127.0.0.1", port, timeout, connect_timeout=60)
    return Party(role, chan, label, ot_source=ot_source or OT_DEFAULT)


def run_workers(script: str, args: list[str], what: str = "", timeout: float = 3600) -> dict:
    """Run ``script --worker ROLE --port P *args`` for both roles; their last stdout lines,
    parsed as JSON, by role. Exits with the failing worker's stderr."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = {
        r: subprocess.Popen(
            [sys.executable, os.path.abspath(script), "--worker", r, "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for r in ("server", "client")
    }
    rep = {}
    for r, p in procs.items():
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise SystemExit(f"{what + ': ' if what else ''}{r} failed:\n{err.strip()}")
        lines = out.strip().splitlines()
        rep[r] = json.loads(lines[-1]) if lines else None
    return rep
