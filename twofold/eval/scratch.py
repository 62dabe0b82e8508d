"""Temporary files ``twofold eval`` writes into its output folder, and removing stale ones.

The report set (:class:`.report._Staged`) and a rewrite of ``results.jsonl`` are written to
temporary files beside their final names and put in place by ``os.replace``. A run killed in
between (SIGKILL, power loss) leaves them behind. Each is named

    .NAME.twofold-HOST-PID-[old-]XXXXXXXX[.SUFFIX]

NAME one of :data:`OWNED`, HOST a hash of this machine's name, PID the writing process. A
later run removes the ones :func:`stale` recognises: this scheme, an owned NAME, this host,
and a PID that is no longer running. Invariant: nothing else is ever deleted — not a user's
file, not another machine's (a shared folder), not a live run's, not an older version's
temporary file (whose writer cannot be told).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
from pathlib import Path

#: The files of the output folder eval writes through a temporary file.
OWNED = frozenset(
    {
        "results.jsonl",
        "summary.json",
        "report.md",
        "report.html",
        "roc.png",
        "bland_altman.png",
        "differences.png",
    }
)
_NAME = re.compile(
    r"\.(?P<name>.+?)\.twofold-(?P<host>[0-9a-f]{8})-(?P<pid>[1-9][0-9]{0,9})-(?:old-)?"
    r"[a-z0-9_]{8}(?:\.[A-Za-z0-9]{1,8})?"
)


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temporary(out: Path, name: str, suffix: str = "", old: bool = False) -> Path:
    """A new empty temporary file for ``name`` in ``out``, named by the scheme above (mode
    0600, as ``mkstemp`` makes it); ``old``: the kept previous version of ``name``."""
    if name not in OWNED:
        raise ValueError(f"{name!r} is not a file eval writes through a temporary file")
    prefix = f".{name}.twofold-{_host()}-{os.getpid()}-" + ("old-" if old else "")
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=out)
    os.close(fd)
    return Path(tmp)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, another user's
        return True
    return True


def stale(path: Path) -> bool:
    """Whether ``path`` is a temporary file of this scheme left by a process of this host that
    is no longer running."""
    m = _NAME.fullmatch(path.name)
    if m is None or m["name"] not in OWNED or m["host"] != _host():
        return False
    return not _running(int(m["pid"])) and path.is_file() and not path.is_symlink()


def sweep(out: Path) -> list[str]:
    """Remove the stale temporary files in ``out``; their names."""
    gone = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for p in sorted(out.iterdir()):
            if stale(p):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    gone.append(p.name)
    return gone
