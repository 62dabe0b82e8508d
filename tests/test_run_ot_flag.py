"""``--ot`` on ``twofold run server|client``: the server chooses the OT source and announces it
with the session settings; the client records it, and refuses one it was not asked for."""

from __future__ import annotations

import json
import subprocess

import pytest
from test_run_cli import TWOFOLD, Server, bundles, client, one_line_error  # noqa: F401

from twofold.runtime.session import OT_PLANNED, OT_SOURCES


def test_ot_source_reaches_the_session(bundles):  # noqa: F811
    d = bundles["dir"]
    for ot in OT_SOURCES:
        srv = Server(bundles["a"], "--once", "--ot", ot)
        try:
            res = client(bundles["a"], srv.addr, bundles["x"], d / f"ot_{ot}.json", "--quiet")
        finally:
            _, err = srv.stop()
        assert res.returncode == 0, res.stderr + err
        doc = json.loads((d / f"ot_{ot}.json").read_text())
        assert doc["cost"]["settings"] == {"linear": "auto", "ot": ot, "fuse": True}


def test_client_refuses_another_ot_source(bundles):  # noqa: F811
    d = bundles["dir"]
    other = [s for s in ("silent", "iknp") if s != OT_SOURCES[0]][0]
    srv = Server(bundles["a"], "--once", "--ot", OT_SOURCES[0])
    try:
        res = client(bundles["a"], srv.addr, bundles["x"], d / "refused.json", "--ot", other)
    finally:
        srv.stop()
    if other in OT_SOURCES:
        one_line_error(res, f"--ot {OT_SOURCES[0]}", f"--ot {other}")
    else:
        one_line_error(res, f"--ot {other}", "not available")
    assert not (d / "refused.json").exists()


@pytest.mark.skipif(not OT_PLANNED, reason="every OT source is built")
def test_unavailable_ot_source_is_one_clear_line(bundles):  # noqa: F811
    for source in OT_PLANNED:
        res = subprocess.run(
            [*TWOFOLD, "run", "server", str(bundles["a"]), "--listen", "127.0.0.1:0",
             "--ot", source],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        one_line_error(res, f"--ot {source}", "not available")
