"""Both parties walk the public IR (issue 12): no vendor code on the client, reveals checked
before connecting, the server's weights bound to the compiled program."""

from __future__ import annotations

import inspect
import json
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from test_python2pc import compiled, load, local_ops_graph

from twofold.backends.cleartext import Cleartext
from twofold.backends.python2pc import emit_program
from twofold.ir import program_hash
from twofold.runtime.errors import RuntimeProtocolError
from twofold.runtime.executor import Executor
from twofold.runtime.program import Program, ProgramError
from twofold.runtime.runner import RunError, load_program, load_weights, run_client, serve
from twofold.runtime.session import run_parties
from twofold.toolchain import compile_model, simulate_bundle


def _plain(fn) -> dict:  # noqa: ANN001
    """Loopback tests run without TLS (the keyword exists once TLS is the default)."""
    return (
        {"insecure_plaintext": True}
        if "insecure_plaintext" in inspect.signature(fn).parameters
        else {}
    )


@pytest.fixture()
def bundle(tmp_path) -> Path:
    out = tmp_path / "b"
    compile_model(None, out, graph=local_ops_graph(), preprocess="none", input_range=(-3, 3),
                  scale=10)  # fmt: skip
    np.save(tmp_path / "x.npy", np.random.default_rng(3).uniform(-3, 3, (1, 2, 8, 8)))
    return out


def test_walker_makes_the_calls_of_the_emitted_listing():
    """Program.run and the emitted program.py drive the Executor identically (same costs per
    layer, same revealed output, equal to the cleartext backend)."""
    g = compiled()
    prog, mod = Program(g), load(emit_program(g, "m"))
    assert (prog.PROGRAM_HASH, prog.ELL, prog.STEPS) == (mod.PROGRAM_HASH, mod.ELL, mod.STEPS)
    assert (prog.INPUTS, prog.OUTPUTS) == (mod.INPUTS, mod.OUTPUTS)
    x = np.random.default_rng(1).uniform(-3, 3, (1, 2, 8, 8))
    ref = Cleartext(g).run(x)
    outs = []
    for runner in (prog.run, mod.run):

        def server(party, runner=runner):  # noqa: ANN001
            return runner(Executor(party, prog.ELL, weights=dict(g.params)))

        def client(party, runner=runner):  # noqa: ANN001
            rt = Executor(party, prog.ELL, inputs={"image": x})
            return runner(rt), [(c.name, c.op, c.bytes_sent, c.rounds) for c in rt.cost.layers]

        srv, (out, layers) = run_parties(server, client, program_hash=prog.PROGRAM_HASH)
        assert srv == {o: None for o in g.outputs}
        outs.append((out, layers))
    (a, la), (b, lb) = outs
    assert la == lb
    for o in g.outputs:
        assert np.array_equal(a[o], b[o])
        assert np.array_equal(np.asarray(a[o]) % 2**prog.ELL, ref[o])


def _run_tcp(server_dir: Path, client_dir: Path, x: np.ndarray) -> tuple[dict, int]:
    """``run server --once`` on a thread and ``run client`` here, over loopback TCP."""
    ports: list[int] = []
    ready = threading.Event()
    status: list[int] = []

    def srv() -> None:
        def up(port: int) -> None:
            ports.append(port)
            ready.set()

        status.append(serve(server_dir, "127.0.0.1", 0, once=True, progress=False, ready=up,
                            timeout=60, **_plain(serve)))  # fmt: skip

    t = threading.Thread(target=srv, daemon=True)
    t.start()
    assert ready.wait(30)
    doc = run_client(client_dir, "127.0.0.1", ports[0], {"image": x}, progress=False,
                     timeout=60, **_plain(run_client))  # fmt: skip
    t.join(60)
    return doc, status[0]


EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("vendor code ran on the {side}")
PROGRAM_HASH, ELL, INPUTS, OUTPUTS, LABELS, STEPS = {hash!r}, {ell}, {{}}, {{}}, [], 1


def run(rt):  # would send the raw image to the server / print what it receives
    if rt.party.role == "client":
        rt.party.chan.send(rt.inputs["image"].astype("float64"))
    else:
        pathlib.Path({marker!r} + ".image").write_bytes(rt.party.chan.recv_bytes())
    return {{}}
"""


def test_tampered_program_py_is_never_run(bundle, tmp_path):
    """A program.py edited to send the raw image — in the server bundle (where the listing
    lives) and dropped into the client bundle — changes nothing: nobody imports it."""
    x = np.load(tmp_path / "x.npy")
    prog = load_program(bundle / "client")
    for side in ("server", "client"):
        marker = tmp_path / f"ran-{side}"
        src = EVIL.format(marker=str(marker), side=side, hash=prog.PROGRAM_HASH, ell=prog.ELL)
        load(src)  # the file really would do it if imported ...
        assert marker.exists()
        marker.unlink()
        (bundle / side / "program.py").write_text(src)
    doc, status = _run_tcp(bundle / "server", bundle / "client", x)
    assert status == 0
    assert not list(tmp_path.glob("ran-*"))  # ... and nobody imported it
    want = simulate_bundle(bundle, tmp_path / "x.npy")
    assert doc["logits"] == json.loads(json.dumps(want["logits"]))


def _tamper(bundle: Path, edit) -> None:  # noqa: ANN001
    """Apply ``edit`` to the IR of both parts and re-sign their manifests (a consistent
    malicious bundle: only the reveal check stands in the way)."""
    for part in ("client", "server"):
        f = bundle / part / "ir.json"
        doc = json.loads(f.read_text())
        edit(doc)
        f.write_text(json.dumps(doc))
    from twofold.ir.bundle import load_ir

    h = program_hash(load_ir(bundle / "client"))
    assert h == program_hash(load_ir(bundle / "server"))
    for part in ("client", "server"):
        m = bundle / part / "manifest.json"
        m.write_text(json.dumps(json.loads(m.read_text()) | {"program_hash": h}))


def _reveal_to_server(doc: dict) -> None:
    doc["meta"]["reveal"] = {o: "server" for o in doc["outputs"]}


def _reveal_intermediate(doc: dict) -> None:
    relu = next(n["name"] for n in doc["nodes"] if n["op"] == "relu")
    doc["outputs"].append(relu)
    doc["meta"]["reveal"][relu] = "client"


def _reveal_input(doc: dict) -> None:
    doc["outputs"] = ["x"]
    doc["meta"]["reveal"] = {"x": "client"}


def _undeclared_reveal(doc: dict) -> None:
    doc["meta"]["reveal"] = {}


def _unknown_op(doc: dict) -> None:
    relu = next(n for n in doc["nodes"] if n["op"] == "relu")
    relu["op"] = "open"


def _bad_shape(doc: dict) -> None:
    relu = next(n for n in doc["nodes"] if n["op"] == "relu")
    relu["type"] = relu["type"].split("[")[0] + "[1,1,1,1] @secret"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_reveal_to_server, "reveals it to 'server'"),
        (_reveal_intermediate, "reveals an intermediate value"),
        (_reveal_input, "reveals its input directly"),
        (_undeclared_reveal, "no recipient declared"),
        (_unknown_op, "op 'open' has no 2PC form"),
        (_bad_shape, "declared shape \\[1, 1, 1, 1\\]"),
    ],
)
def test_tampered_ir_refused_before_connecting(bundle, tmp_path, edit, message):
    """The client refuses before any connection: a listener on the address it is given sees
    none (the server holds the same tampered IR, so the program-hash handshake would pass)."""
    _tamper(bundle, edit)
    lst = socket.create_server(("127.0.0.1", 0))
    lst.settimeout(0.5)
    port = lst.getsockname()[1]
    with pytest.raises(ProgramError, match=message):
        run_client(bundle, "127.0.0.1", port, {"image": np.load(tmp_path / "x.npy")},
                   progress=False, **_plain(run_client))  # fmt: skip
    with pytest.raises(TimeoutError):
        lst.accept()
    lst.close()
    with pytest.raises(RuntimeProtocolError, match=message):  # the server will not serve it
        serve(bundle, "127.0.0.1", 0, once=True, progress=False, **_plain(serve))


def test_edited_ir_without_manifest_refused(bundle):
    f = bundle / "client" / "ir.json"
    doc = json.loads(f.read_text())
    doc["meta"]["labels"] = ["edited"]
    f.write_text(json.dumps(doc))
    with pytest.raises(RunError, match="not the program .* names .* the bundle was modified"):
        load_program(bundle / "client")


def test_weights_of_another_compile_refused(tmp_path):
    """weights.npz from a compile of the same model at another scale: the server, simulate
    and read_bundle refuse it, naming the file; the compiled weights load."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d, s in ((a, 10), (b, 12)):
        compile_model(None, d, graph=local_ops_graph(), preprocess="none",
                      input_range=(-3, 3), scale=s)  # fmt: skip
    assert load_weights(a)  # the compiled ones
    shutil.copy(b / "server" / "weights.npz", a / "server" / "weights.npz")
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 8, 8)))
    with pytest.raises(RunError, match="weights.npz is not the weights this program was compiled"):
        serve(a, "127.0.0.1", 0, once=True, progress=False, **_plain(serve))
    with pytest.raises(ValueError, match="weights.npz is not the weights this program was"):
        simulate_bundle(a, tmp_path / "x.npy")
    # one value changed, same keys and shapes: refused too
    shutil.copy(b / "server" / "weights.npz", a / "server" / "weights.npz")
    with np.load(b / "server" / "weights.npz") as z:
        w = {k: z[k] for k in z.files}
    k = next(iter(w))
    w[k] = w[k].copy()
    w[k].flat[0] += 1
    np.savez(b / "server" / "weights.npz", **w)
    with pytest.raises(RunError, match="not the weights"):
        load_weights(b)


def test_eval_2pc_needs_only_the_client_bundle(bundle, tmp_path):
    """The hospital's eval --mode 2pc reads the client bundle alone (no simulate oracle then);
    --mode simulate says it needs the server bundle."""
    from twofold.eval.engines import EngineError, Simulate, TwoParty
    from twofold.eval.runner import _has_server_part

    hospital = tmp_path / "hospital"
    shutil.copytree(bundle / "client", hospital / "client")
    params = inspect.signature(TwoParty).parameters
    kw = {"connect_options": {"insecure_plaintext": True}} if "connect_options" in params else {}
    tp = TwoParty(hospital, "127.0.0.1:9", **kw)
    assert tp.input_name == "image" and tp.meta["range"] == [-3.0, 3.0]
    assert tp.digest() == load_program(bundle).PROGRAM_HASH
    assert not _has_server_part(hospital) and _has_server_part(bundle)
    with pytest.raises(EngineError, match="only the client bundle; eval --mode simulate needs"):
        Simulate(hospital)
