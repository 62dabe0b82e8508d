"""ONNX conformance table: the `onnx` package's pytorch-converted, pytorch-operator and light
models through compile + simulate (tests/onnx_suite.py says how), as a markdown table.

    python benchmarks/onnx_conformance.py [--markdown docs/ONNX_CONFORMANCE.md] [--json FILE]
                                          [--quick] [-k SUBSTRING]

``--quick`` skips the cases marked slow (the light ResNet-50 and VGG-19, about 80 s).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import onnx_suite  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", type=Path, help="write the table here")
    ap.add_argument("--json", type=Path, help="write the outcomes as JSON here")
    ap.add_argument("--quick", action="store_true", help="skip the slow cases")
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    args = ap.parse_args()
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)
    outcomes = []
    for case in onnx_suite.cases():
        if args.k not in case.name or (args.quick and case.name in onnx_suite.SLOW):
            continue
        o = onnx_suite.run_case(case)
        outcomes.append(o)
        print(f"{o.status:9s} {o.seconds:6.1f}s {case.suite:17s} {case.name:44s} {o.detail[:90]}")
    print(dict(Counter(o.status for o in outcomes)))
    if args.markdown:
        args.markdown.write_text(onnx_suite.table(outcomes))
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=1))


if __name__ == "__main__":
    main()
