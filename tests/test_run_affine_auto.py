"""``twofold run`` on a model with a BatchNorm that cannot be folded (pre-activation, as in
DenseNet): with ``--linear auto`` the affine goes by OT (its traffic is the OT affine's, far
below one HE ciphertext), with ``--linear he`` by HE; both equal ``twofold simulate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_run_cli import Server, client
from torch import nn

from twofold.runtime.linear.linear_ot_cot import layout
from twofold.toolchain import compile_model, simulate_bundle

SIZE = 8


class PreAct(nn.Module):
    """BN -> ReLU -> conv (the BN has no conv before it: an affine layer), then conv-BN (folded)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(torch.relu(self.bn0(x)))
        return self.fc(torch.relu(self.bn1(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):  # noqa: ANN001, ANN201
    d = tmp_path_factory.mktemp("preact")
    torch.manual_seed(6)
    model = PreAct().eval()
    with torch.no_grad():
        for bn in (model.bn0, model.bn1):
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
        torch.onnx.export(
            model, (torch.zeros(1, 3, SIZE, SIZE),), str(d / "m.onnx"), input_names=["image"],
            output_names=["logits"], opset_version=17, dynamo=False,
        )  # fmt: skip
    rng = np.random.default_rng(7)
    x, cal = rng.normal(0, 1, (2, 1, 3, SIZE, SIZE)).clip(-3, 3)
    np.save(d / "x.npy", x)
    np.save(d / "cal.npy", cal)
    compile_model(
        d / "m.onnx", d / "bundle", preprocess="none", input_range=(-3.0, 3.0),
        calibrate=[d / "x.npy", d / "cal.npy"],
    )  # fmt: skip
    return d


@pytest.mark.parametrize("linear", ["auto", "he"])
def test_unfoldable_bn_runs_by_ot_under_auto(bundle, linear: str, tmp_path) -> None:  # noqa: ANN001
    srv = Server(bundle / "bundle", "--once", "--linear", linear)
    try:
        res = client(
            bundle / "bundle", srv.addr, bundle / "x.npy", tmp_path / "out.json", "--quiet"
        )
    finally:
        _, err = srv.stop()
    assert res.returncode == 0, res.stderr + err
    want = json.loads(json.dumps(simulate_bundle(bundle / "bundle", bundle / "x.npy")))
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["logits"] == want["logits"]
    aff = [r for r in got["cost"]["layers"] if r["op"] == "affine"]
    assert len(aff) == 1, [r["op"] for r in got["cost"]["layers"]]
    traffic = aff[0]["bytes_sent"] + aff[0]["bytes_recv"]
    ell = json.loads((bundle / "bundle" / "client" / "ir.json").read_text())["meta"]["ell"]
    fields = 3 * SIZE * SIZE * layout(ell).bytes_per_element  # the OT affine's packed fields
    if linear == "auto":
        assert fields <= traffic <= fields + 16 * 128 + 200  # + C*ell <= 128 OTs' IKNP columns
    else:
        assert traffic > 10 * fields  # BFV ciphertexts
