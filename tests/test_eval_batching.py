"""``twofold eval --batch N`` classifies every image exactly as the per-image run does: an
input out of range is a secure failure (not an unreadable image), non-finite plaintext and
secure outputs are caught, and a batch whose secure run overflows is rerun one image at a
time so that only the culprit fails, with its own failure kind."""

import json

import numpy as np
import onnx
import pytest
from evalnet import export_eval_net

from twofold.eval import engines
from twofold.eval.runner import EvalConfig, run_eval
from twofold.toolchain import compile_model

SIZE = 8
PLAIN_INF = 0.25  # an image of this constant gets an infinite plaintext output (patched)
SECURE_NAN = 0.5  # ... and this one a NaN secure output, in its own row of a batch


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A batch-symbolic ONNX model, compiled for batch 1 and for batch 2, calibrated on small
    inputs so that an in-range input can overflow (as with real calibrated models)."""
    tmp = tmp_path_factory.mktemp("batching")
    conv, _ = export_eval_net(tmp / "m.onnx", SIZE)
    m = onnx.load(str(tmp / "m.onnx"))
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(m, str(tmp / "m.onnx"))
    rng = np.random.default_rng(5)
    np.save(tmp / "cal.npy", rng.uniform(-1, 1, (1, 3, SIZE, SIZE)))
    for n in (1, 2):
        compile_model(tmp / "m.onnx", tmp / f"b{n}", input_shape=(n, 3, SIZE, SIZE),
                      calibrate=[tmp / "cal.npy"], preprocess="none",
                      input_range=(-3, 3))  # fmt: skip
    img = tmp / "img"
    img.mkdir()
    for i in range(5):
        np.save(img / f"x{i}.npy", rng.uniform(-1, 1, (1, 3, SIZE, SIZE)))
    w = conv.weight.detach().numpy()[0]  # in range, but every window matches the filter
    np.save(img / "hot.npy", np.tile(3 * np.sign(w), (1, 1, 3, 3))[:, :, :SIZE, :SIZE])
    np.save(img / "oor.npy", np.full((1, 3, SIZE, SIZE), 10.0))
    np.save(img / "plain_inf.npy", np.full((1, 3, SIZE, SIZE), PLAIN_INF))
    np.save(img / "secure_nan.npy", np.full((1, 3, SIZE, SIZE), SECURE_NAN))
    (img / "broken.npy").write_bytes(b"not an array")
    # batches of 2: [x0, hot] overflows as a whole; [x1, oor] runs x1 alone; [secure_nan, x2]
    # has one bad row; [plain_inf, broken] never reaches the secure run; [x3, x4] is clean
    ids = ["x0", "hot", "x1", "oor", "secure_nan", "x2", "plain_inf", "broken", "x3", "x4"]
    rows = ["path,Cardiomegaly"] + [f"{k}.npy,{i % 2}" for i, k in enumerate(ids)]
    (tmp / "d.csv").write_text("\n".join(rows) + "\n")
    return tmp


@pytest.fixture()
def faults(monkeypatch):
    """Non-finite outputs on the marked images, row by row (a batch holds several images)."""
    plain_call, sim_call = engines.Plaintext.__call__, engines.Simulate.__call__

    def plain(self, x, output=None):
        r = plain_call(self, x, output)
        if np.all(np.asarray(x) == PLAIN_INF):
            r.values[0] = np.inf
        return r

    def sim(self, x, measure_memory=True):
        r = sim_call(self, x, measure_memory)
        rows = r.values.reshape(x.shape[0], -1)
        for i in range(x.shape[0]):
            if np.all(x[i] == SECURE_NAN):
                rows[i, 3] = np.nan
        return r

    monkeypatch.setattr(engines.Plaintext, "__call__", plain)
    monkeypatch.setattr(engines.Simulate, "__call__", sim)


def _records(out):
    lines = (out / "results.jsonl").read_text().splitlines()[1:]
    return {r["id"]: r for r in map(json.loads, lines)}


def _class(rec):
    """What a record says about its image, without timings, cost and the batch figures."""
    keys = ("error", "failure", "secure_error", "plain", "secure")
    return {k: rec[k] for k in keys if k in rec}


def test_batches_classify_every_image_as_the_per_image_run(bundles, faults, tmp_path):
    cfg = dict(model=bundles / "m.onnx", dataset=bundles / "d.csv", fmt="plain",
               images=bundles / "img")  # fmt: skip
    one = run_eval(EvalConfig(bundle=bundles / "b1", out=tmp_path / "o1", **cfg))
    msgs: list[str] = []
    two = run_eval(EvalConfig(bundle=bundles / "b2", out=tmp_path / "o2", batch=2, **cfg),
                   msgs.append)  # fmt: skip
    r1, r2 = _records(tmp_path / "o1"), _records(tmp_path / "o2")
    assert r1.keys() == r2.keys()
    for k in r1:
        assert _class(r2[k]) == _class(r1[k]), k
    kinds = {k: r.get("failure") or ("error" if "error" in r else "ok") for k, r in r2.items()}
    assert kinds == {
        "x0.npy": "ok", "hot.npy": "overflow", "x1.npy": "ok", "oor.npy": "input out of range",
        "secure_nan.npy": "non-finite output", "x2.npy": "ok", "plain_inf.npy": "error",
        "broken.npy": "error", "x3.npy": "ok", "x4.npy": "ok",
    }  # fmt: skip
    assert r2["plain_inf.npy"]["error"].startswith("plaintext output for")
    assert r2["broken.npy"]["error"].startswith("unreadable image")
    assert r2["x0.npy"]["batch_rerun"] == "alone" and "batch_rerun" not in r2["x3.npy"]
    assert any("failed as a whole" in m and "one at a time" in m for m in msgs)
    for s in (one, two):
        f = s["secure_failures"]
        assert (f["attempted"], f["failed"]) == (8, 3)
        assert s["dataset"]["evaluated"] == 5 and len(s["dataset"]["bad_rows"]) == 2
