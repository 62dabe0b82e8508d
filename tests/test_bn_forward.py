"""Pass ``bn_forward`` (BN → ReLU → linear: |a| into the next weights, sign flip + shift): exact
in float with negative, tiny and zero BN scales, clamped shifts exact on the calibrated range,
no wider ring, and 2PC between two processes equal to simulate bit for bit."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from preact import export
from test_run_zoo import run_and_simulate

from twofold.backends.float_ref import channel_stats, run_float
from twofold.compiler.bn_forward import CLAMP_FACTOR, bn_forward, split
from twofold.compiler.canonicalize import canonicalize
from twofold.compiler.fold_bn import fold_bn
from twofold.frontends.onnx import load_onnx
from twofold.toolchain import compile_model

RNG = np.random.default_rng(16)  # public test data only
SIZE = 8


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("preact")
    path = export(d / "preact.onnx", SIZE)
    return path, fold_bn(canonicalize(load_onnx(str(path))))


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (1, 3, SIZE, SIZE)).clip(-3, 3) for _ in range(n)]


def _logits(g, x):  # noqa: ANN001, ANN202
    return run_float(g, {"image": x}, dtype=np.float64)["logits"]


def test_split_identity_incl_negative_tiny_and_zero_scales() -> None:
    a = np.array([1.3, -0.7, 1e-6, -1e-6, 0.0, 0.0, 2.0, -2.0, 1e-9, -1e-9])
    b = np.array([0.2, -0.4, 0.5, -0.5, 0.3, -0.3, -9.0, 9.0, -0.1, 0.1])
    bound = np.full(a.size, 1.5)
    x = np.linspace(-CLAMP_FACTOR * 1.5, CLAMP_FACTOR * 1.5, 301)[:, None]
    want = np.maximum(a * x + b, 0)
    for bnd in (None, bound):
        sigma, p, c, kappa = split(a, b, bnd)
        assert set(np.unique(sigma)) <= {-1.0, 1.0} and (p >= 0).all()
        got = p * np.maximum(sigma * (x + c), 0) + kappa
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # with a bound, every shift lies inside it (the ring does not widen)
    _, _, c, _ = split(a, b, bound)
    assert np.abs(c).max() <= CLAMP_FACTOR * 1.5
    # without, a tiny scale leaves a huge shift
    assert np.abs(split(a, b, None)[2]).max() > 1e5


@pytest.mark.parametrize("into_gemm", [False, True])
def test_rewrite_exact_in_float(model, into_gemm) -> None:
    _, g = model
    h = bn_forward(g, into_gemm=into_gemm)
    ops = Counter(n.op for n in h.nodes)
    # bn1, bn3 rewritten (bn4 -> pool -> flatten -> gemm too with into_gemm); bn2 reads into a
    # padded 3x3 conv and stays an affine
    assert (ops["sign_affine"], ops["affine"]) == ((3, 1) if into_gemm else (2, 2))
    signs = np.concatenate([h.params[h[n.inputs[1]].attrs["key"]] for n in h.nodes
                            if n.op == "sign_affine"])  # fmt: skip
    assert set(signs.tolist()) == {-1.0, 1.0}
    for x in _images(4):
        np.testing.assert_allclose(_logits(h, x), _logits(g, x), rtol=1e-5, atol=1e-5)


def test_clamped_shifts_exact_on_calibrated_range(model) -> None:
    _, g = model
    cal = _images(3, seed=1)
    h = bn_forward(g, lambda gg, names: channel_stats(gg, cal, names), into_gemm=True)
    stats = channel_stats(g, cal, [n.inputs[0] for n in h.nodes if n.op == "sign_affine"])
    for n in (n for n in h.nodes if n.op == "sign_affine"):
        shift = np.abs(h.params[h[n.inputs[2]].attrs["key"]])
        assert (shift <= CLAMP_FACTOR * stats[n.inputs[0]][0] * (1 + 1e-6) + 1e-6).all()
    unclamped = bn_forward(g, into_gemm=True)
    assert max(np.abs(unclamped.params[unclamped[n.inputs[2]].attrs["key"]]).max()
               for n in unclamped.nodes if n.op == "sign_affine") > 1e3  # fmt: skip
    for x in cal:  # inside the calibrated range: the same function as the BN model
        np.testing.assert_allclose(_logits(h, x), _logits(g, x), rtol=1e-5, atol=1e-5)


def test_ring_not_wider_and_fidelity(model, tmp_path) -> None:
    path, g0 = model
    xs = _images(3, seed=2)
    for i, x in enumerate(xs):
        np.save(tmp_path / f"c{i}.npy", x)
    cal = [tmp_path / f"c{i}.npy" for i in range(3)]
    kw = {"preprocess": "none", "input_range": (-3.0, 3.0), "calibrate": cal, "scale": 12}
    on, rep_on = compile_model(path, None, **kw)
    off, rep_off = compile_model(path, None, disabled=["bn_forward"], **kw)
    assert rep_on["totals"]["sign_affine_layers"] == 2 and rep_off["totals"]["affine_layers"] == 4
    assert on.meta["ell"] <= off.meta["ell"]
    from twofold.backends.cleartext import simulate

    g = load_onnx(str(path))
    for x in xs:
        want = _logits(g, x).ravel()
        for sg in (on, off):
            doc = simulate(sg, x)
            assert doc["valid"]
            (got,) = doc["outputs"].values()
            assert np.abs(np.array(got["values"]).ravel() - want).max() < 0.05


def test_two_processes_equal_simulate_with_negative_scales(model, tmp_path) -> None:
    path, _ = model
    x, cal = _images(2, seed=3)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "cal.npy", cal)
    bundle = tmp_path / "bundle"
    compile_model(
        path, bundle, preprocess="none", input_range=(-3.0, 3.0), scale=12,
        calibrate=[tmp_path / "x.npy", tmp_path / "cal.npy"],
    )  # fmt: skip
    got, want = run_and_simulate(bundle, tmp_path / "x.npy", tmp_path / "out.json")
    assert want["valid"] and got["outputs"] == want["outputs"]
    flips = [r for r in got["cost"]["layers"] if r["op"] == "sign_affine"]
    assert len(flips) == 2 and all(r["bytes_sent"] + r["bytes_recv"] > 0 for r in flips)


def test_rounding_error_of_the_scaled_weights_goes_into_the_bias(model) -> None:
    """With calibration means and the scale, the expected error of rounding W' = W·|a| is
    compensated in the consumer's bias: on the calibration inputs, the logits of the graph with
    W' rounded (as quantize will) are closer to the BN model's than without the correction."""
    _, g = model
    cal = _images(4, seed=4)
    s = 5  # coarse, so that rounding dominates

    def stats(gg, names):  # noqa: ANN001, ANN202
        return channel_stats(gg, cal, names)

    def rounded(h):  # noqa: ANN001, ANN202
        h = h.copy()
        for n in h.nodes:
            if n.op == "weight" and ".w_fwd" in n.name:
                w = np.asarray(h.params[n.attrs["key"]], np.float64)
                h.params[n.attrs["key"]] = np.rint(w * 2.0**s) / 2.0**s
        return h

    def error(h):  # noqa: ANN001, ANN202
        return np.mean([np.abs(_logits(h, x) - _logits(g, x)).mean() for x in cal])

    plain, corrected = (rounded(bn_forward(g, stats, scale=k, into_gemm=True)) for k in (None, s))
    assert error(corrected) < 0.7 * error(plain)
