"""Drivers behind ``twofold run server`` and ``twofold run client`` (CLI layer).

The client loads and preprocesses its input with the preprocessing recorded at compile time
(npy, PNG/JPEG, DICOM), checks it against the program before connecting, runs the 2PC program
(twofold.runtime.runner) and gets the out.json document; the server serves the bundle.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from .ir.public import unchecked_reason
from .preprocess import PREPROCESSING
from .runtime.gate import GATE_FRAME_MAX
from .runtime.program import Program
from .runtime.runner import (
    RunError,
    check_timeouts,
    load_program,
    run_client,
    serve,
)
from .toolchain import load_input


def parse_address(text: str, what: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port); ValueError naming the option otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{what} must be HOST:PORT (e.g. 127.0.0.1:7000), got {text!r}")
    return host.strip("[]"), int(port)


def parse_banner(line: str) -> tuple[str, str | None]:
    """``(HOST:PORT, fingerprint or None)`` from the line ``twofold run server`` prints first."""
    if " on " not in line or "serving" not in line:
        raise ValueError(f"not a twofold server banner: {line.strip()!r}")
    addr = line.split(" on ", 1)[1].split(",")[0].strip()
    fp = line.split("fingerprint ", 1)[1].split(",")[0].strip() if "fingerprint " in line else None
    return addr, fp


def server_main(bundle: str, listen: str, **kw: Any) -> int:  # noqa: ANN401
    host, port = parse_address(listen, "--listen")
    return serve(bundle, host, port, **kw)


def client_input_meta(bundle: str | Path, prog: Program) -> dict[str, Any]:
    """``meta["input"]`` of the (hash-checked) program, checked to be what the input loader
    reads: one line naming the bundle and the field, not a conversion error blamed on the
    image, when a vendor's ir.json (re-hashed) holds something else."""
    meta = prog.graph.meta.get("input")

    def bad(key: str, why: str) -> RunError:
        value = meta.get(key) if isinstance(meta, dict) else meta
        return RunError(
            f"{bundle}: ir.json meta.input{'.' + key if key else ''} is {value!r}: {why}"
        )

    if not isinstance(meta, dict):
        raise bad("", "not an object (name, shape, scale, range, preprocess)")
    meta = dict(meta)  # a copy: the program's own IR stays as hashed
    name = meta.setdefault("name", next(iter(prog.INPUTS)))
    if name not in prog.INPUTS:
        raise bad("name", f"not an input of the program ({', '.join(prog.INPUTS)})")
    if meta.get("shape", prog.INPUTS[name]["shape"]) != prog.INPUTS[name]["shape"]:
        raise bad("shape", f"the program's input has shape {prog.INPUTS[name]['shape']}")
    if meta.get("scale", prog.INPUTS[name]["scale"]) != prog.INPUTS[name]["scale"]:
        raise bad("scale", f"the program's input has scale {prog.INPUTS[name]['scale']}")
    rng = meta.get("range")
    ok = isinstance(rng, list) and len(rng) == 2 and all(type(v) in (int, float) for v in rng)
    if rng is not None and not (ok and math.isfinite(rng[0]) and rng[0] < rng[1] < math.inf):
        raise bad("range", "not two finite numbers LO < HI")
    if meta.get("preprocess", "none") not in PREPROCESSING:
        raise bad("preprocess", f"not one of {', '.join(PREPROCESSING)}")
    return meta


def load_client_input(
    bundle: str | Path, input_path: str | Path, prog: Program | None = None
) -> dict[str, Any]:
    """The client's input by program input name, preprocessed and shape-checked.

    What reads it (shape, preprocessing, declared range) is the metadata of the program whose
    hash matched the manifest (``prog``, else ``load_program(bundle)``): an edited ir.json is
    "the bundle was modified", never an error blamed on the image."""
    meta = client_input_meta(bundle, prog or load_program(bundle))
    try:
        x = load_input(input_path, meta)
    except (ValueError, OSError):
        raise
    except Exception as e:  # noqa: BLE001 - an unreadable image is the user's input at fault
        raise ValueError(f"cannot read input {input_path}: {type(e).__name__}: {e}") from None
    return {meta["name"]: x}


_EMPTY_TOKEN_FRAME = len(json.dumps({"token": ""}))
TOKEN_MAX = GATE_FRAME_MAX - _EMPTY_TOKEN_FRAME  # bytes of token the server's opening frame takes
TOKEN_FILE_MAX = 1 << 16  # a token file is one short line (and may be a pipe: read bounded)


def read_token(text: str | None) -> str | None:
    """``--token``: the token itself, or ``@FILE`` holding it (keeps it out of ``ps``; a pipe
    such as ``@<(pass show vendor)`` works too, read up to a bound). A token longer than the
    server's opening frame takes is refused here, naming the option and the file (never the
    token): sent, it only ended in "peer connection lost while sending: Broken pipe"."""
    if text is None:
        return None
    where, token = "--token", text
    if text.startswith("@"):
        where = f"--token {text}"
        try:
            with open(text[1:], "rb") as f:
                raw = f.read(TOKEN_FILE_MAX + 1)
            if len(raw) > TOKEN_FILE_MAX:
                raise ValueError(f"{where}: the file holds more than {TOKEN_FILE_MAX:,} bytes")
            token = raw.decode().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read {where}: {e}") from None
    size = len(json.dumps({"token": token}).encode()) - _EMPTY_TOKEN_FRAME
    if size > TOKEN_MAX:
        raise ValueError(
            f"{where}: the token is {size:,} bytes long; the server's opening frame takes a "
            f"token of at most {TOKEN_MAX:,}"
        )
    return token


def client_main(
    bundle: str,
    connect: str,
    input_path: str,
    *,
    tls_ca: str | None = None,
    server_fingerprint: str | None = None,
    token: str | None = None,
    insecure_plaintext: bool = False,
    timeout: float = 600.0,
    progress: bool = True,
    table_to_stderr: bool = False,
    ot: str | None = None,
    session_timeout: float | None = None,
    allow_unchecked: bool = False,
) -> dict[str, Any]:
    """Run BUNDLE as the client against the server at CONNECT (see ``run_client``).

    The options are checked first, then the bundle and the input: a mistake ends the run
    before any traffic. A program that cannot flag an overflow (compiled with ``--range-model
    calibrated``, or with no ReLU to check) is refused unless ``allow_unchecked``: its result
    could be wrong with nothing to tell it from a right one."""
    check_timeouts(timeout, session_timeout)
    host, port = parse_address(connect, "--connect")
    token = read_token(token)
    prog = load_program(bundle)
    if not prog.OVERFLOW_CHECKED and not allow_unchecked:
        why = unchecked_reason(prog.OVERFLOW_CHECKED)
        if prog.OVERFLOW_CHECKED is False:
            why += (
                ": its ranges come from the vendor's calibration images alone, and an image "
                "outside them would give a wrong probability that looks like a right one"
            )
        raise RunError(
            f"{bundle}: the program {why}; refused before any traffic. Pass --allow-unchecked "
            'to run it anyway (out.json then says "overflow_checked": false)'
        )
    inputs = load_client_input(bundle, input_path, prog)
    return run_client(
        bundle,
        host,
        port,
        inputs,
        tls_ca=tls_ca,
        server_fingerprint=server_fingerprint,
        token=token,
        insecure_plaintext=insecure_plaintext,
        timeout=timeout,
        progress=progress,
        out=sys.stderr if table_to_stderr else sys.stdout,
        ot=ot,
        session_timeout=session_timeout,
        program=prog,
    )
