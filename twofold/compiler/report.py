"""Compile report: per-layer op, shape, ReLU/truncation counts, MACs, bits, communication.

Communication is estimated per element from the SCI anchors of DESIGN.md §7 (measured at
ℓ = 32, scaled by ℓ/32 since the millionaires' protocol is linear in ℓ): ReLU 4,316 bits,
faithful truncation 4,196, known-MSB truncation 1,720, truncate-and-reduce 1,308, and a
MaxPool window of k elements k − 1 ReLU-priced comparisons. Linear layers with server
weights use a documented HE estimate (Cheetah-style packing): every 4,096 input and
output elements cost one RLWE ciphertext of 2·4,096·109 bits, each way once. Sharing the
input and revealing the output cost ℓ bits per element.
"""

from __future__ import annotations

import math
from typing import Any

from ..ir import Graph, lut, newton
from ..ir.public import public_from_initializers

NONLINEAR_BITS_L32 = {"relu": 4316, "faithful": 4196, "msb0": 1720, "reduce": 1308}
# overflow check of a checked ReLU element: one DReLU (millionaire on ℓ−1 bits) + one AND of
# the OR tree (runtime/protocols/overflow.py); run inside the ReLU's millionaire
# (runtime/protocols/relu_check.py) it pays only for the 4-bit digits above the ReLU's grain
CHECK_BITS_L32, OR_AND_BITS = 3860, 148
CHECK_DIGIT_BITS = CHECK_BITS_L32 / 8
HE_SLOTS, HE_LOGQ = 4096, 109
_LINEAR = {"conv2d", "gemm", "affine", "mul"}


def _he_bytes(n_in: int, n_out: int, groups: int = 1) -> int:
    """Ciphertexts both ways; a grouped (e.g. depthwise) convolution packs each group apart,
    so a group of a few pixels still takes whole ciphertexts (linear.py's per-group plan)."""
    cts = groups * (math.ceil(n_in / groups / HE_SLOTS) + math.ceil(n_out / groups / HE_SLOTS))
    return cts * 2 * HE_SLOTS * HE_LOGQ // 8


def _macs(g: Graph, node) -> int:  # noqa: ANN001
    t = node.type
    if node.op == "conv2d":
        w = g[node.inputs[1]].type.shape
        return t.size * w[1] * w[2] * w[3]
    if node.op == "gemm":
        return t.size * g[node.inputs[0]].type.shape[-1]
    if node.op in ("affine", "mul", "mul_const"):
        return t.size
    return 0


def _lut_bits(node, ell: int) -> float:  # noqa: ANN001
    """Per element (runtime/protocols/lut.py): the clamp's two ReLUs, the index's known-MSB
    truncation, 2^m entries of k_a + k_b bits (each table's span + 1, one packed message), the
    (ell − k)-bit COT lifting them, the product b_i·r and its truncation (known-MSB when every
    b_i ≥ 0)."""
    fn, alpha, sc = node.attrs["fn"], float(node.attrs.get("alpha", 1.0)), node.type.dtype.scale
    a, b = lut.table(fn, alpha, sc)
    ks = [min(lut.entry_bits(t)[0], ell) for t in (a, b)]
    last = NONLINEAR_BITS_L32["msb0" if int(b.min()) >= 0 else "faithful"]
    bits = (2 * NONLINEAR_BITS_L32["relu"] + NONLINEAR_BITS_L32["msb0"] + last) * ell / 32
    return bits + (sum(ks) << lut.spec(fn).bits) + (ell - min(ks)) + 2 * ell * (ell + 128)


def layer_row(g: Graph, node, ell: int) -> dict[str, Any]:  # noqa: ANN001
    per = ell / 32
    n = node.type.size
    row: dict[str, Any] = {
        "name": node.name,
        "op": node.op,
        "shape": list(node.type.shape),
        "type": str(node.type.dtype),
        "relu": n if node.op == "relu" else 0,
        "checked": n if node.op == "relu" and len(node.inputs) == 2 else 0,
        "trunc": {node.attrs["kind"]: n} if node.op == "trunc" else {},
        "macs": _macs(g, node),
        "bits": node.meta.get("bits"),
        "range": node.meta.get("range"),
    }
    bits = 0.0
    if node.op == "relu":
        bits = n * NONLINEAR_BITS_L32["relu"] * per
        grain = node.attrs.get("grain")
        if len(node.inputs) == 2 and grain is not None and 0 <= grain < ell - 1:
            bits += n * (math.ceil((ell - 1 - grain) / 4) * CHECK_DIGIT_BITS + OR_AND_BITS)
        elif len(node.inputs) == 2:
            bits += n * (CHECK_BITS_L32 * per + OR_AND_BITS)
    elif node.op == "trunc":
        bits = n * NONLINEAR_BITS_L32[node.attrs["kind"]] * per
    elif node.op == "maxpool":
        k = node.attrs["kernel"][0] * node.attrs["kernel"][1]
        bits = n * (k - 1) * NONLINEAR_BITS_L32["relu"] * per
    elif node.op == "lut":  # clamp (2 ReLUs), 2 truncs, two 2^m-entry tables, a product
        bits = n * _lut_bits(node, ell)
    elif node.op in newton.KINDS:  # ir/newton.py: clamp, |J| DReLU+B2A, products, truncs, LUT
        s_in = g[node.inputs[0]].type.dtype.scale
        pl = newton.plan(node.op, ell, s_in, node.type.dtype.scale, float(node.attrs["floor"]))
        drelu = NONLINEAR_BITS_L32["relu"] - 2 * 32  # a ReLU is a DReLU plus its MUX
        products = {"reciprocal": 6, "rsqrt": 7, "log": 1}[node.op]  # x·f, Newton, output
        truncs = {"reciprocal": 5, "rsqrt": 6, "log": 1}[node.op]
        nonlin = NONLINEAR_BITS_L32["relu"] + truncs * NONLINEAR_BITS_L32["msb0"]
        bits = n * (
            (nonlin + len(pl.exps) * drelu) * per
            + len(pl.exps) * (ell + 128)
            + products * ell * (ell + 128)
            + (ell << newton.M)
        )
    elif node.op == "mul" and not any(g[i].op in ("weight", "const") for i in node.inputs):
        bits = n * 2 * ell * (ell + 128)  # two cross terms: ell COTs of ell bits (+ extension)
    elif node.op == "sign_affine":  # the client's channel vector as an (ℓ−1)-bit correlation
        bits = n * (ell - 1)
    elif node.op == "input":
        bits = n * ell
    comm = int(bits // 8)
    if node.op in _LINEAR and any(g[i].op == "weight" for i in node.inputs):
        groups = node.attrs.get("group", 1) * node.type.shape[0] if node.op == "conv2d" else 1
        comm += _he_bytes(g[node.inputs[0]].type.size, n, groups)
    if g.is_output(node.name):
        comm += n * ell // 8
    row["comm_bytes"] = comm
    return row


def _onnx_note(g: Graph) -> dict[str, Any] | None:
    """The model's ONNX opset, and the one it was raised from by onnx.version_converter."""
    if "onnx_opset" not in g.meta:
        return None
    note: dict[str, Any] = {"opset": g.meta["onnx_opset"]}
    if "onnx_opset_converted_from" in g.meta:
        note["converted_from"] = g.meta["onnx_opset_converted_from"]
    return note


def build_report(g: Graph) -> dict[str, Any]:
    ell = g.meta.get("ell", 64)
    rows = [layer_row(g, n, ell) for n in g.nodes if n.op not in ("weight", "const")]
    trunc_ops: dict[str, int] = {}
    trunc_elems: dict[str, int] = {}
    for r in rows:
        for k, v in r["trunc"].items():
            trunc_ops[k] = trunc_ops.get(k, 0) + 1
            trunc_elems[k] = trunc_elems.get(k, 0) + v
    return {
        "ell": ell,
        "scale": g.meta.get("scale"),
        "bits_needed": g.meta.get("bits_needed"),
        "range_model": g.meta.get("range_model"),
        "unchecked": bool(g.meta.get("unchecked")),
        "overflow_checked": g.meta.get("overflow_checked", True),
        "bitlength_auto": g.meta.get("compile", {}).get("bitlength") == "auto",
        "calibrated": bool(g.meta.get("compile", {}).get("calibration_inputs")),
        "public_from_initializers": public_from_initializers(g),
        "fidelity": g.meta.get("compile", {}).get("fidelity"),
        "widest_tensor": g.meta.get("widest_tensor"),
        "input": g.meta.get("input"),
        "onnx": _onnx_note(g),
        "output_function": g.meta.get("output_function"),
        "totals": {
            "relu_elements": sum(r["relu"] for r in rows),
            "relu_layers": sum(1 for r in rows if r["relu"]),
            "checked_elements": sum(r["checked"] for r in rows),
            "maxpool_layers": sum(1 for r in rows if r["op"] == "maxpool"),
            "affine_layers": sum(1 for r in rows if r["op"] == "affine"),
            "sign_affine_layers": sum(1 for r in rows if r["op"] == "sign_affine"),
            "truncations": trunc_ops,
            "truncation_elements": trunc_elems,
            "macs": sum(r["macs"] for r in rows),
            "comm_bytes": sum(r["comm_bytes"] for r in rows),
        },
        "estimate": (
            "communication from DESIGN.md §7 per-element anchors scaled by l/32; "
            f"linear layers: {HE_SLOTS}-slot RLWE ciphertexts of 2*{HE_SLOTS}*{HE_LOGQ} bits"
        ),
        "layers": rows,
    }


def format_summary(report: dict[str, Any]) -> str:
    """Human-readable totals for ``twofold inspect DIR``."""
    t = report["totals"]
    lines = [
        f"ring l = {report['ell']}, scale s = {report['scale']}"
        + (
            f", bits needed {report['bits_needed']} (widest %{report['widest_tensor']})"
            if report.get("bits_needed") is not None
            else ""
        ),
        f"ReLU elements: {t['relu_elements']:,} in {t['relu_layers']} layers"
        + (f", {t['checked_elements']:,} overflow-checked" if t.get("checked_elements") else ""),
        "truncations: "
        + (
            ", ".join(
                f"{k} {t['truncations'][k]} ops / {t['truncation_elements'][k]:,} elements"
                for k in sorted(t["truncations"])
            )
            or "none"
        ),
        f"affine (non-folded BN) layers: {t['affine_layers']}, "
        f"sign flips (BN folded forward): {t.get('sign_affine_layers', 0)}, "
        f"maxpool layers: {t['maxpool_layers']}",
        f"MACs: {t['macs']:,}",
        f"estimated communication: {t['comm_bytes'] / 2**20:,.1f} MiB ({report['estimate']})",
        f"output function: {report['output_function']}",
    ]
    onnx = report.get("onnx") or {}
    if "converted_from" in onnx:
        lines.append(
            f"ONNX opset {onnx['converted_from']} raised to {onnx['opset']} "
            "by onnx.version_converter"
        )
    return "\n".join(lines) + "\n"
