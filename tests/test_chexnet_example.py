"""examples/chexnet: torchvision-compatible keys, checkpoint renaming, ONNX export CLI."""

import importlib.util
import subprocess
import sys

import pytest
import torch
import zoo

from twofold.frontends.onnx import load_onnx

cx = zoo.chexnet_model()


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_torchvision_key_layout_and_counts():
    m = cx.DenseNet121()
    keys = m.state_dict().keys()
    for k in (
        "features.conv0.weight",
        "features.norm0.running_var",
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock4.denselayer16.conv2.weight",
        "features.transition3.conv.weight",
        "features.norm5.bias",
        "classifier.weight",
    ):
        assert k in keys
    assert sum(p.numel() for p in m.parameters()) == 6_968_206  # torchvision's, 14 classes
    assert len(cx.CHEXNET_LABELS) == 14 and cx.CHEXNET_LABELS[-1] == "Hernia"


def _chexnet_style(state):
    """arnoweng/CheXNet checkpoint keys: DataParallel prefix, old norm.1 style, Sequential head."""
    out = {}
    for k, v in state.items():
        k = k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.")
        k = k.replace("classifier.", "classifier.0.")
        out["module.densenet121." + k] = v
    return {"epoch": 5, "state_dict": out}


def test_load_chexnet_and_xrv_style_checkpoints(tmp_path):
    src = cx.DenseNet121()
    with torch.no_grad():
        for p in src.parameters():
            p.normal_(0, 0.05)
    torch.save(_chexnet_style(src.state_dict()), tmp_path / "chexnet.pth.tar")
    dst = cx.load_weights(cx.DenseNet121(), tmp_path / "chexnet.pth.tar")
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k

    xrv = {k: v for k, v in src.state_dict().items() if not k.startswith("classifier")}
    xrv["features.conv0.weight"] = src.features.conv0.weight[:, :1].clone()
    xrv["classifier.weight"] = torch.arange(18.0)[:, None].repeat(1, 1024)
    xrv["classifier.bias"] = torch.arange(18.0)
    xrv["op_threshs"] = torch.zeros(18)
    torch.save(xrv, tmp_path / "xrv.pt")
    m = cx.load_weights(cx.DenseNet121(), tmp_path / "xrv.pt")
    want = [cx.XRV_PATHOLOGIES.index(lbl) for lbl in cx.CHEXNET_LABELS]
    assert m.classifier.bias.tolist() == want
    assert m.features.conv0.weight.shape == (64, 3, 7, 7)


def test_bad_checkpoints(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(cx.WeightsError, match="junk.pt is not a loadable torch checkpoint"):
        cx.load_weights(cx.DenseNet121(), tmp_path / "junk.pt")
    torch.save({"features.conv0.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "part.pt")
    with pytest.raises(cx.WeightsError, match="parameters missing after key renaming"):
        cx.load_weights(cx.DenseNet121(), tmp_path / "part.pt")
    state = cx.DenseNet121(num_classes=5).state_dict()
    torch.save(state, tmp_path / "five.pt")
    with pytest.raises(cx.WeightsError, match=r"classifier.weight has shape \[5, 1024\]"):
        cx.load_weights(cx.DenseNet121(), tmp_path / "five.pt")


def test_export_cli(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    r = subprocess.run(
        [sys.executable, "examples/chexnet/export.py", "--size", "32", "-o", str(out)],
        capture_output=True, text=True, cwd=zoo.ROOT, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    g = load_onnx(out)
    assert g.inputs()[0].type.shape == (1, 3, 32, 32)
    assert g["logits"].type.shape == (1, 14) and g.meta["output_function"] == {"logits": "sigmoid"}
    spec = importlib.util.spec_from_file_location(
        "cx_export", zoo.ROOT / "examples/chexnet/export.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--weights", str(tmp_path / "no.pt"), "-o", str(out)]) == 1
    assert "no.pt does not exist" in capsys.readouterr().err
