"""``--ot silent|iknp`` on ``twofold run server|client``: the server chooses the OT source and
announces it with the session settings; the client records it, and refuses one it was not
asked for."""

from __future__ import annotations

import json

from test_run_cli import Server, bundles, client, one_line_error  # noqa: F401

from twofold.runtime.session import OT_SOURCES


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
    chosen, other = OT_SOURCES[:2]
    srv = Server(bundles["a"], "--once", "--ot", chosen)
    try:
        res = client(bundles["a"], srv.addr, bundles["x"], d / "refused.json", "--ot", other)
    finally:
        srv.stop()
    one_line_error(res, f"--ot {chosen}", f"--ot {other}")
    assert not (d / "refused.json").exists()
