"""Every linear layer of DenseNet-121, run for real: two OS processes over loopback TCP (one
thread each), the protocol ``--linear auto`` picks (HE for conv and FC, OT for the per-channel
BN affine), time and bytes per layer and their sum (issue 6's target: < 3 min, < 2 GiB).

    python benchmarks/densenet_linear.py [--json FILE] [--quick] [--size 224] [--ell 32]

``--quick`` runs the first 40 layers at 64x64 (same keys; under a minute).

Unlike ``benchmarks/linear.py`` (five representative layers and a cost model), nothing here is
extrapolated: the 120 convolutions, 62 affines (the pre-activation BNs the compiler cannot fold)
and the classifier run one after another on fresh random shares with random 13-bit weights, as
one image would see them. The server's prepared weights (kernel matrices or plaintexts) are
built before the timed region, as the generated program builds them once per model; each
layer's shares are checked against the cleartext product after its timed region.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _densenet_layers import densenet121_layers  # noqa: E402
from _twoproc import connect, run_workers  # noqa: E402

QUICK_LAYERS = 40  # --quick: conv0, dense block 1, transition 1, the start of block 2


def layers(size: int) -> list[tuple]:
    """DenseNet-121's linear layers (folded BN) for a size x size input."""
    out = []
    for lay in densenet121_layers(True):
        if lay[0] == "conv":
            _, c, h, w, o, k, s, p = lay
            h = w = max(1, h * size // 224)
            out.append(("conv", c, h, w, o, k, s, p))
        elif lay[0] == "affine":
            _, c, h, w = lay
            h = w = max(1, h * size // 224)
            out.append(("affine", c, h, w))
        else:
            out.append(lay)
    return out


def _kind(lay: tuple) -> str:
    if lay[0] == "conv":
        return f"conv{lay[5]}x{lay[5]}"
    return lay[0]


def _reference(lay: tuple, x: np.ndarray, w: np.ndarray, ell: int) -> np.ndarray:
    from twofold.runtime.linear.linear_local import conv2d_mod, matmul_mod

    m = np.uint64((1 << ell) - 1)
    if lay[0] == "conv":
        k, s, p = lay[5:]
        return conv2d_mod(x, w, strides=(s, s), pads=(p,) * 4, dilations=(1, 1), group=1, ell=ell)
    if lay[0] == "gemm":
        return matmul_mod(x, w.T, ell)
    g = w.astype(np.int64).astype(np.uint64)
    return (x * g[None, :, None, None]) & m


def worker(role: str, port: int, size: int, ell: int, n_layers: int | None = None) -> None:
    from twofold.runtime.linear import linear as L
    from twofold.runtime.linear import linear_he as he
    from twofold.runtime.linear.linear_he_seal import he_params
    from twofold.runtime.prg import PRG

    party = connect(role, port, "bench-densenet-linear")
    ch = party.chan
    srv = role == "server"
    prg = PRG()
    wrng = np.random.default_rng(11)  # benchmark weights are public test data
    with ch.section("he-keys") as st:
        he.keys(party, ell)
    rows = []
    cache = L.LinearCache()
    hp = he_params(ell)
    for i, lay in enumerate(layers(size)[:n_layers]):
        name = f"{i:03d}_{_kind(lay)}"
        if lay[0] == "conv":
            _, c, h, wd, o, k, s, p = lay
            xs, ws = (1, c, h, wd), (o, c, k, k)
        elif lay[0] == "gemm":
            xs, ws = (1, lay[1]), (lay[2], lay[1])
        else:
            xs, ws = (1, lay[1], lay[2], lay[3]), (lay[1],)
        w = wrng.integers(-(1 << 12), 1 << 12, ws)
        x = prg.ring(xs, ell)
        if srv and lay[0] == "conv":  # weights prepared once per model, before any image
            layout = L.conv_he_layout(xs, ws, (s, s), (p,) * 4, (1, 1), 1)
            L.prepare_conv_he(hp, layout, w, 1, ell, cache, name, xs)
        ch.send(b"go")
        ch.recv_bytes()
        cpu0 = time.process_time()
        with ch.section(name) as st:
            wv = w if srv else None
            if lay[0] == "conv":
                y = L.conv2d(party, x, wv, None, w_shape=ws, strides=(s, s), pads=(p,) * 4,
                             ell=ell, method="auto", cache=cache, name=name)  # fmt: skip
            elif lay[0] == "gemm":
                y = L.gemm(party, x, wv, None, w_shape=ws, ell=ell, method="auto", cache=cache,
                           name=name)  # fmt: skip
            else:
                y = L.affine(party, x, wv, None, ell=ell, method="auto", cache=cache, name=name)
            ch.send(b"done")
            ch.recv_bytes()
        cpu = time.process_time() - cpu0
        row = {"layer": name, "kind": _kind(lay), "shape": list(xs), "out": ws[0],
               "s": st.seconds, "bytes": st.bytes_sent + st.bytes_recv, "cpu_s": cpu}  # fmt: skip
        if srv:  # untimed check: the client sends its shares
            xc = ch.recv_array(np.uint64, x.shape)
            yc = ch.recv_array(np.uint64, y.shape)
            m = np.uint64((1 << ell) - 1)
            ref = _reference(lay, (x + xc) & m, w, ell)
            row["verified"] = bool(np.array_equal((y + yc) & m, ref.reshape(y.shape)))
            row["cpu_s_client"] = float(ch.recv_array(np.float64, 1)[0])
            rows.append(row)
        else:
            ch.send(x)
            ch.send(y)
            ch.send(np.array([cpu]))
            ch.flush()
    party.close()
    if srv:
        print(json.dumps({"layers": rows}), flush=True)


def summarize(rows: list[dict]) -> dict:
    kinds: dict = defaultdict(lambda: {"layers": 0, "s": 0.0, "bytes": 0})
    for r in rows:
        k = kinds[r["kind"]]
        k["layers"] += 1
        k["s"] += r["s"]
        k["bytes"] += r["bytes"]
    total = {
        "s": sum(r["s"] for r in rows),
        "bytes": sum(r["bytes"] for r in rows),
        "layers": len(rows),
        "verified": all(r["verified"] for r in rows),
        "cpu_s_server": sum(r["cpu_s"] for r in rows),
        "cpu_s_client": sum(r["cpu_s_client"] for r in rows),
    }
    total["GiB"] = total["bytes"] / 2**30
    return {"kinds": dict(kinds), "densenet121_total": total}


def run(size: int, ell: int, n_layers: int | None = None) -> dict:
    """Run every layer (or the first ``n_layers``) in two fresh worker processes; the
    per-layer rows and their sums."""
    extra = ["--ell", str(ell), "--size", str(size)]
    if n_layers is not None:
        extra += ["--layers", str(n_layers)]
    t0 = time.perf_counter()
    rows = run_workers(__file__, extra)["server"]["layers"]
    res = {"size": size, "ell": ell, "layers": rows, **summarize(rows)}
    res["wall_s"] = time.perf_counter() - t0
    res["loadavg_1min"] = os.getloadavg()[0]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument(
        "--quick", action="store_true", help=f"64x64 input, first {QUICK_LAYERS} layers only"
    )
    ap.add_argument("--size", type=int, default=224, help="input side (default 224)")
    ap.add_argument("--ell", type=int, default=32)
    ap.add_argument("--worker", choices=["server", "client"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--layers", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    size = 64 if a.quick else a.size
    n_layers = QUICK_LAYERS if a.quick else None
    if a.worker:
        worker(a.worker, a.port, size, a.ell, a.layers)
        return
    res = run(size, a.ell, n_layers)
    print(
        f"DenseNet-121 linear layers at {size}x{size} ({res['densenet121_total']['layers']} of "
        f"{len(layers(size))}), ell={a.ell}, two processes, loopback TCP"
    )
    print(f"{'kind':10} {'layers':>6} {'s':>9} {'MiB':>10}")
    for k, v in sorted(res["kinds"].items()):
        print(f"{k:10} {v['layers']:6d} {v['s']:9.1f} {v['bytes'] / 2**20:10.1f}")
    t = res["densenet121_total"]
    print(
        f"{'total':10} {t['layers']:6d} {t['s']:9.1f} {t['bytes'] / 2**20:10.1f}  "
        f"({t['GiB']:.2f} GiB; all exact: {t['verified']}; CPU server {t['cpu_s_server']:.0f} s,"
        f" client {t['cpu_s_client']:.0f} s; load average {res['loadavg_1min']:.2f})"
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
