"""Issue 13: a failed compile never damages a good bundle already in the same directory.

(The atomic write of both sub-bundles is the "bundle" engineer's fix, issue 12; this is the
regression test from the command line.)"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from twofold.cli import cli


def _digests(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def test_failed_recompile_leaves_the_good_bundle_intact(tmp_path: Path, zoo_onnx) -> None:  # noqa: ANN001
    onnx = zoo_onnx("resnet", 16)
    x = np.random.default_rng(4).uniform(-2.0, 2.5, (1, 3, 16, 16))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "bundle"
    run = CliRunner().invoke
    res = run(cli, ["compile", str(onnx), "-o", str(out), "--calibrate", str(tmp_path / "x.npy")])
    assert res.exit_code == 0, res.output
    before = _digests(out)
    good = run(cli, ["simulate", str(out), "--input", str(tmp_path / "x.npy")])
    assert good.exit_code == 0, good.output
    for bad in (["--disable-pass", "quantize"], ["--calibration-margin", "0"],
                ["--bitlength", "8"]):  # fmt: skip
        res = run(cli, ["compile", str(onnx), "-o", str(out), *bad])
        assert res.exit_code != 0, (bad, res.output)
        assert res.output.startswith("twofold: error: ") and res.output.count("\n") == 1, bad
        assert _digests(out) == before, f"compile {bad} changed the bundle"
        again = run(cli, ["simulate", str(out), "--input", str(tmp_path / "x.npy")])
        assert again.exit_code == 0 and again.output == good.output, (bad, again.output)
