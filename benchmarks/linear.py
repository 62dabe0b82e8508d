"""Linear layers with server-private weights: time and bytes per DenseNet-121 layer type, HE and
OT, two OS processes over loopback TCP (one thread each), and the DenseNet-121 total.

    python benchmarks/linear.py [--json FILE] [--quick] [--ell 32] [--profile DIR]

``--profile DIR`` writes a cProfile dump per party and OT affine layer
(``DIR/{server,client}_{layer}.prof``; read with ``python -m pstats``).

HE layers run at full size. OT conv layers run on a slice of output positions and are scaled
linearly (their cost is exactly linear in output positions: ell COTs per im2col entry); these
figures are marked ``"extrapolated_from"``. BN affine and FC run in full for both; the extra BN
affine layers (``OT_ONLY``: a big 256x56x56 one, a mid-sized one) run by OT only, the protocol
``--linear auto`` uses for them.
``densenet121_total`` is the sum over all 183 linear layers of DenseNet-121 at 224x224, each run
for real after the layer types above (``benchmarks/densenet_linear.py``: two processes, the
protocol ``--linear auto`` picks, every layer checked; ``"measured": true``). With ``--quick``
(and as ``densenet121_total_model`` otherwise) it is estimated from per-layer figures: HE bytes
from the exact message sizes of the chosen packing (checked against the measured layers), HE
time from a non-negative least-squares fit over the measured HE layers of seconds ~
a*input_cts + b*output_cts + c*coef_units + d*ntt_products (coef_units: output channels x
shifted input rows of the coefficient-domain path; ntt_products: SEAL ct x pt products).
Affine layers go by OT (as ``auto`` runs them): bytes exact (``ot_affine_bytes``, checked
against the measured layers), seconds from a non-negative least-squares fit over the measured
OT affine layers of seconds ~ a + b*elements + c*channels (``"affine_time_model"``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _densenet_layers import densenet121_layers  # noqa: E402
from _twoproc import connect, run_workers  # noqa: E402

# name: (kind, x shape, w shape, strides, pads, full-size spatial for --quick scaling)
LAYERS = {
    "conv1x1_256_128_56": ("conv", (1, 256, 56, 56), (128, 256, 1, 1), (1, 1), (0, 0, 0, 0)),
    "conv3x3_128_32_56": ("conv", (1, 128, 56, 56), (32, 128, 3, 3), (1, 1), (1, 1, 1, 1)),
    "conv1x1_1024_512_14": ("conv", (1, 1024, 14, 14), (512, 1024, 1, 1), (1, 1), (0, 0, 0, 0)),
    # 32 channels x 9 taps per kernel polynomial: SEAL NTT products (the others: coefficient path)
    "conv3x3_128_32_14": ("conv", (1, 128, 14, 14), (32, 128, 3, 3), (1, 1), (1, 1, 1, 1)),
    "bn_affine_1024_7": ("affine", (1, 1024, 7, 7), (1024,), None, None),
    "fc_1024_14": ("gemm", (1, 1024), (14, 1024), None, None),
    "bn_affine_256_56": ("affine", (1, 256, 56, 56), (256,), None, None),
    "bn_affine_512_28": ("affine", (1, 512, 28, 28), (512,), None, None),
    "bn_affine_1024_14": ("affine", (1, 1024, 14, 14), (1024,), None, None),
}
OT_ONLY = ("bn_affine_256_56", "bn_affine_512_28", "bn_affine_1024_14")  # the OT affine fit
QUICK = {
    "conv1x1_256_128_56": (1, 256, 14, 14),
    "conv3x3_128_32_56": (1, 128, 14, 14),
    "conv1x1_1024_512_14": (1, 1024, 7, 7),
    "conv3x3_128_32_14": (1, 128, 7, 7),
    "bn_affine_1024_7": (1, 256, 7, 7),
    "fc_1024_14": (1, 1024),
    "bn_affine_256_56": (1, 256, 28, 28),
    "bn_affine_512_28": (1, 512, 14, 14),
    "bn_affine_1024_14": (1, 1024, 7, 7),
}


def _ot_slice(kind: str, xs: tuple, pads) -> tuple[tuple, tuple, float]:  # noqa: ANN001
    """Input slice for the OT conv measurement: (x shape, pads, scale to the full layer)."""
    if kind != "conv":
        return xs, pads, 1.0
    B, C, H, W = xs  # noqa: N806
    pos = 1 if C >= 512 else 8
    sl = (B, C, 1 + (2 if pads[0] else 0), pos + (2 if pads[0] else 0))
    return sl, (0, 0, 0, 0), (H * W) / pos


def _layer_call(party, kind, x, w, b, spec, ell, method, cache, name):  # noqa: ANN001, ANN202
    from twofold.runtime.linear import linear as L

    srv = party.role == "server"
    if kind == "conv":
        _, _, ws, st, pd = spec
        return L.conv2d(party, x, w if srv else None, b if srv else None, w_shape=ws,
                        strides=st, pads=pd, ell=ell, method=method, cache=cache,
                        name=name)  # fmt: skip
    if kind == "gemm":
        return L.gemm(party, x, w if srv else None, b if srv else None, w_shape=spec[2],
                      ell=ell, method=method, cache=cache, name=name)  # fmt: skip
    return L.affine(party, x, w if srv else None, b if srv else None, ell=ell, method=method,
                    cache=cache, name=name)  # fmt: skip


def _reference(kind, x, w, b, spec, ell):  # noqa: ANN001, ANN202
    from twofold.runtime.linear.linear_local import conv2d_mod, matmul_mod

    m = np.uint64((1 << ell) - 1)
    bb = b.astype(np.int64).astype(np.uint64)
    if kind == "conv":
        y = conv2d_mod(x, w, strides=spec[3], pads=spec[4], dilations=(1, 1), group=1, ell=ell)
        return (y + bb[None, :, None, None]) & m
    if kind == "gemm":
        return (matmul_mod(x, w.T, ell) + bb[None, :]) & m
    g = w.astype(np.int64).astype(np.uint64)
    return (x * g[None, :, None, None] + bb[None, :, None, None]) & m


def worker(role: str, port: int, quick: bool, ell: int, profile: str | None = None) -> None:
    from twofold.runtime.linear import linear as L
    from twofold.runtime.linear import linear_he as he
    from twofold.runtime.prg import PRG

    party = connect(role, port, "bench-linear")
    ch = party.chan
    prg = PRG()
    wrng = np.random.default_rng(7)  # benchmark weights are public test data
    out: dict = {"layers": {}}
    with ch.section("he-keys") as st:
        he.keys(party, ell)
    out["he_keys"] = {"s": st.seconds, "bytes": st.bytes_sent + st.bytes_recv}
    cache = L.LinearCache()
    for name, spec in LAYERS.items():
        kind, xs, ws, _, pads = spec
        if quick:
            xs = QUICK[name]
            ws = (xs[1],) if kind == "affine" else ws[:1] + (xs[1],) + ws[2:]
            spec = (kind, xs, ws, spec[3], pads)
        w = wrng.integers(-(1 << 12), 1 << 12, ws)
        b = wrng.integers(-(1 << 20), 1 << 20, ws[:1])
        res = {}
        for method in ("ot",) if name in OT_ONLY else ("he", "ot"):
            xsh, pd, scale = (xs, pads, 1.0) if method == "he" else _ot_slice(kind, xs, pads)
            sp = (kind, xsh, ws, spec[3], pd)
            x = prg.ring(xsh, ell)
            ch.send(b"go")
            ch.recv_bytes()
            if role == "server" and method == "he":  # weights prepared once per model
                t0, cpu_p = time.perf_counter(), time.process_time()
                _layer_call_prep(party, kind, w, sp, ell, cache, name)
                prep = time.perf_counter() - t0
                prep_cpu = time.process_time() - cpu_p
            n_cached = len(cache)
            cpu0 = time.process_time()
            prof = None
            if profile and kind == "affine" and method == "ot":
                import cProfile

                prof = cProfile.Profile()
            with ch.section(f"{name}/{method}") as st:
                if prof is not None:
                    prof.enable()
                y = _layer_call(party, kind, x, w, b, sp, ell, method, cache, name)
                if prof is not None:
                    prof.disable()
                    prof.dump_stats(os.path.join(profile, f"{role}_{name}.prof"))
                ch.send(b"done")
                ch.recv_bytes()
            cpu = time.process_time() - cpu0
            r = {"s": st.seconds * scale, "bytes": (st.bytes_sent + st.bytes_recv) * scale}
            r["cpu_s"] = cpu * scale
            # the client's CPU time comes over after the timed region
            if role == "client":
                ch.send(np.array([cpu * scale]))
            else:
                r["cpu_s_client"] = float(ch.recv_array(np.float64, 1)[0])
                r["cpu_s_server"] = r.pop("cpu_s")
                r["cpu_s"] = max(r["cpu_s_server"], r["cpu_s_client"])
            if scale != 1.0:
                r["extrapolated_from"] = {"x_shape": list(xsh), "scale": scale}
            if role == "server" and method == "he":
                r["weight_prep_s"] = prep
                r["weight_prep_cpu_s"] = prep_cpu
                if len(cache) != n_cached:
                    raise RuntimeError(f"{name}: prepared plaintexts were not reused")
            # verify (untimed): the client sends x and y shares
            if role == "client":
                ch.send(x)
                ch.send(y)
                ch.flush()
            else:
                x1 = ch.recv_array(np.uint64, x.shape)
                y1 = ch.recv_array(np.uint64, y.shape)
                m = np.uint64((1 << ell) - 1)
                ref = _reference(kind, (x + x1) & m, w, b, sp, ell)
                r["verified"] = bool(np.array_equal((y + y1) & m, ref))
            res[method] = r
        out["layers"][name] = res
    party.close()
    print(json.dumps(out), flush=True)


def _layer_call_prep(party, kind, w, spec, ell, cache, name) -> None:  # noqa: ANN001
    """Server: build the layer's plaintexts into the cache outside the timed region (the
    generated program does this once per model, before the first image)."""
    from twofold.runtime.linear import linear as L
    from twofold.runtime.linear import linear_he as he
    from twofold.runtime.linear import linear_he_pack as pk
    from twofold.runtime.linear.linear import _key
    from twofold.runtime.linear.linear_he_seal import he_params

    hp = he_params(ell)
    xs = spec[1]
    if kind == "conv":
        lay = L.conv_he_layout(xs, spec[2], spec[3], spec[4], (1, 1), 1)
        L.prepare_conv_he(hp, lay, w, 1, ell, cache, name, xs)
    elif kind == "gemm":
        plan = pk.plan_fc(xs[1], w.shape[0])
        cache.get(
            _key(cache, name, "he", ell, xs),
            lambda: he.weight_plaintexts(hp, pk.fc_pack_weights(plan, w, ell)),
        )
    else:
        plan = pk.plan_affine(xs[1], int(np.prod(xs[2:])))
        cache.get(
            _key(cache, name, "he", ell, xs),
            lambda: he.weight_plaintexts(hp, pk.affine_pack_weights(plan, w, ell)),
        )


# ---- DenseNet-121 (224x224) linear layers and the cost model -------------------------------
def he_counts(layer: tuple, ell: int) -> dict:
    """Ciphertext counts and exact bytes of the HE protocol for one layer (N = 8192)."""
    from twofold.runtime import bitpack
    from twofold.runtime.linear import linear as L  # noqa: N812
    from twofold.runtime.linear import linear_he as he
    from twofold.runtime.linear import linear_he_coef as coef
    from twofold.runtime.linear import linear_he_pack as pk
    from twofold.runtime.linear.linear_he_seal import N, he_params

    hp = he_params(ell)
    hdr = 9  # frame header
    in_ct = he.packed_c0_size(hp) + hdr
    seed = 16 + hdr  # one per layer: the c1 of every input ciphertext is expanded from it
    b1, b0 = he.reply_bits(hp)

    def out_bytes(useful: int) -> int:
        return bitpack.packed_size(N, b1) + bitpack.packed_size(useful, b0) + 2 * hdr

    kind = layer[0]
    if kind == "conv":
        _, C, H, W, O, k, s, p = layer
        lay = L.conv_he_layout((1, C, H, W), (O, C, k, k), (s, s), (p,) * 4, (1, 1), 1)
        plan, k = lay.plan, lay.kh  # (polyphase for strided kernels)
        useful = [u[0].size for u in L.conv_kept_outputs(lay)]
        n_in, n_out = plan.n_cb * plan.n_sp, O * plan.n_sp
        nbytes = seed + n_in * in_ct + O * sum(out_bytes(u) for u in useful)
        if coef.prefer_coef(plan, k, k):  # W @ shifted inputs: O x rows per spatial block
            rows = plan.n_cb * plan.Cb * k * k
            return {"in_cts": n_in, "out_cts": n_out, "coef_units": O * rows * plan.n_sp,
                    "mults": 0, "plaintexts": 0, "bytes": nbytes, "path": "coef"}  # fmt: skip
        mults = O * plan.n_cb * plan.n_sp
        # NTT plaintexts only: kernel polynomials with <= MONO_MAX terms stay monomials
        nnz = [min(plan.Cb, plan.C - cb * plan.Cb) * k * k for cb in range(plan.n_cb)]
        pts = O * sum(1 for z in nnz if z > he.MONO_MAX)
    elif kind == "gemm":
        _, n_i, n_o = layer
        plan = pk.plan_fc(n_i, n_o)
        n_in, n_out = plan.n_ib, plan.n_obk
        mults = pts = n_in * n_out
        nbytes = (
            seed
            + n_in * in_ct
            + sum(out_bytes(pk.fc_useful(plan, o)[0].size) for o in range(n_out))
        )
    else:
        _, C, H, W = layer
        plan = pk.plan_affine(C, H * W)
        n_in = n_out = mults = plan.n_cb * plan.n_mc
        pts = plan.n_cb
        nbytes = (
            seed
            + n_in * in_ct
            + sum(
                out_bytes(pk.affine_useful(plan, cb, mc)[0].size)
                for cb in range(plan.n_cb)
                for mc in range(plan.n_mc)
            )
        )
    return {"in_cts": n_in, "out_cts": n_out, "coef_units": 0, "mults": mults, "plaintexts": pts,
            "bytes": nbytes, "path": "ntt"}  # fmt: skip


def ot_affine_bytes(C: int, M: int, ell: int) -> int:  # noqa: N803
    """Exact traffic of the OT affine (``linear_ot_cot``) on C channels of M elements: the
    IKNP extension of C*ell random OTs (its batch size, then 128 bit columns per OT, padded to
    64 OTs per extension chunk) and the client's packed fields (ell(ell+1)/2 bits per element,
    rounded up to bytes), one frame (9-byte header) per chunk."""
    from twofold.runtime.linear import linear_ot_cot as aff
    from twofold.runtime.ot.iknp import chunks as ot_chunks

    hdr = 9
    iknp = hdr + 8 + sum(hdr + 16 * (hp - lo) for lo, _, hp in ot_chunks(C * ell))
    bpe = aff.layout(ell).bytes_per_element
    fields = sum(hdr + (c1 - c0) * (e1 - e0) * bpe for c0, c1, e0, e1 in aff.chunks(C, M))
    return iknp + fields


def layer_shape(name: str, quick: bool) -> tuple:
    """The measured input shape of a layer (smaller with ``--quick``)."""
    return QUICK[name] if quick else LAYERS[name][1]


def affine_time_model(meas: dict, quick: bool, ell: int) -> dict:
    """Seconds (wall and busier party's CPU) of one OT affine layer as a + b*elements +
    c*channels, non-negative least squares over the measured OT affine layers; their bytes are
    checked against :func:`ot_affine_bytes` (the measurement adds the 2 x 13-byte sync)."""
    from scipy.optimize import nnls

    rows, ts, cs, names = [], [], [], []
    for name, r in meas.items():
        if LAYERS[name][0] != "affine":
            continue
        xs = layer_shape(name, quick)
        C, M = xs[1], int(np.prod(xs[2:]))  # noqa: N806
        rows.append([1.0, C * M, C])
        ts.append(r["ot"]["s"])
        cs.append(r["ot"]["cpu_s"])
        names.append(name)
        r["ot"]["model_bytes"] = ot_affine_bytes(C, M, ell)
    a = np.asarray(rows, float)
    scale = a.max(axis=0)  # conditioning: fit on columns scaled to <= 1
    wall = nnls(a / scale, np.asarray(ts, float))[0] / scale
    cpu = nnls(a / scale, np.asarray(cs, float))[0] / scale
    keys = ("per_layer_s", "per_element_s", "per_channel_s")
    return {
        "form": "s = a + b*elements + c*channels (non-negative least squares)",
        "fit_layers": names,
        "wall": dict(zip(keys, wall.tolist(), strict=True)),
        "cpu": dict(zip(keys, cpu.tolist(), strict=True)),
        "max_rel_residual_wall": float(np.max(np.abs(a @ wall - ts) / np.asarray(ts))),
    }


def layer_he_shape(name: str, quick: bool) -> tuple:
    kind, xs, ws, st, pd = LAYERS[name]
    if quick:
        xs = QUICK[name]
    if kind == "conv":
        return ("conv", xs[1], xs[2], xs[3], ws[0], ws[2], st[0], pd[0])
    if kind == "gemm":
        return ("gemm", xs[1], ws[0])
    return ("affine", xs[1], xs[2], xs[3])


def densenet_total(meas: dict, quick: bool, ell: int) -> dict:
    from scipy.optimize import nnls

    rows, ts, cs = [], [], []
    he_meas = {n: r for n, r in meas.items() if "he" in r}
    for name, r in he_meas.items():
        c = he_counts(layer_he_shape(name, quick), ell)
        rows.append([c["in_cts"], c["out_cts"], c["coef_units"], c["mults"]])
        ts.append(r["he"]["s"])
        cs.append(r["he"]["cpu_s"])
        r["he"]["model_bytes"] = c["bytes"]
    a = np.asarray(rows, float)
    scale = np.maximum(a.max(axis=0), 1.0)  # conditioning: fit on columns scaled to <= 1
    coef = nnls(a / scale, np.asarray(ts, float))[0] / scale
    coef_cpu = nnls(a / scale, np.asarray(cs, float))[0] / scale
    prep_rate = sum(r["he"]["weight_prep_cpu_s"] for r in he_meas.values()) / max(
        1, sum(he_counts(layer_he_shape(n, quick), ell)["plaintexts"] for n in he_meas)
    )
    aff = affine_time_model(meas, quick, ell)
    aw, ac = list(aff["wall"].values()), list(aff["cpu"].values())
    res = {}
    for fold in (True, False):
        tot = {"s": 0.0, "cpu_s": 0.0, "bytes": 0.0}
        part = {"conv_gemm_he": dict(tot), "affine_ot": dict(tot)}
        n_aff = aff_elems = n_pts = 0
        for layer in densenet121_layers(fold):
            if layer[0] == "affine":  # method "auto": OT for the per-channel affine
                n_aff += 1
                M = layer[1] * layer[2] * layer[3]  # noqa: N806
                aff_elems += M
                v = [1.0, M, layer[1]]
                fig = {
                    "s": float(np.dot(aw, v)),
                    "cpu_s": float(np.dot(ac, v)),
                    "bytes": ot_affine_bytes(layer[1], layer[2] * layer[3], ell),
                }
                key = "affine_ot"
            else:
                c = he_counts(layer, ell)
                n_pts += c["plaintexts"]
                v = [c["in_cts"], c["out_cts"], c["coef_units"], c["mults"]]
                fig = {
                    "s": float(np.dot(coef, v)),
                    "cpu_s": float(np.dot(coef_cpu, v)),
                    "bytes": c["bytes"],
                }
                key = "conv_gemm_he"
            for k2 in tot:
                tot[k2] += fig[k2]
                part[key][k2] += fig[k2]
        key = "densenet121_total" if fold else "densenet121_total_unfolded_bn"
        res[key] = {
            **tot,
            "measured": False,
            "GiB": tot["bytes"] / 2**30,
            "affine_layers": n_aff,
            "affine_elements": aff_elems,
            "parts": part,
            # the server's NTT weight plaintexts: built once per model if they fit in memory,
            # else rebuilt per image (extra server CPU below); not included in s / cpu_s
            "weight_plaintexts": n_pts,
            "weight_plaintexts_GiB": n_pts * 3 * 8192 * 8 / 2**30,
            "weight_prep_cpu_s": n_pts * prep_rate,
        }
    res["affine_time_model"] = aff
    names = ("per_input_ct", "per_output_ct", "per_coef_unit", "per_ntt_product")
    res["he_time_model_ms"] = {
        "wall": dict(zip(names, (coef * 1e3).tolist(), strict=True)),
        "cpu": dict(zip(names, (coef_cpu * 1e3).tolist(), strict=True)),
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--quick", action="store_true", help="smaller spatial sizes (< 1 minute)")
    ap.add_argument("--ell", type=int, default=32)
    ap.add_argument("--profile", metavar="DIR", help="cProfile dumps of the OT affine layers")
    ap.add_argument("--worker", choices=["server", "client"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.port, a.quick, a.ell, a.profile)
        return
    extra = ["--ell", str(a.ell)] + (["--quick"] if a.quick else [])
    if a.profile:
        os.makedirs(a.profile, exist_ok=True)
        extra += ["--profile", os.path.abspath(a.profile)]
    rep = run_workers(__file__, extra)
    meas = rep["server"]["layers"]
    result = {
        "ell": a.ell,
        "quick": a.quick,
        "he_keys": rep["server"]["he_keys"],
        "layers": meas,
    }
    result.update(densenet_total(meas, a.quick, a.ell))
    if not a.quick:  # the real sum: every layer of the network, run one after another
        import densenet_linear

        sweep = densenet_linear.run(224, a.ell)
        t = sweep["densenet121_total"]
        result["densenet121_total_model"] = result["densenet121_total"]
        result["densenet121_total"] = {
            "measured": True,
            "s": t["s"],
            "cpu_s": max(t["cpu_s_server"], t["cpu_s_client"]),
            "bytes": t["bytes"],
            "GiB": t["GiB"],
            "layers": t["layers"],
            "verified": t["verified"],
            "parts": sweep["kinds"],
            "per_layer": sweep["layers"],
        }
    print(f"ell={a.ell}{' (quick sizes)' if a.quick else ''}; two processes over loopback TCP")
    print(f"{'layer':22} {'HE s':>8} {'HE cpu':>7} {'HE MiB':>9} {'OT s':>10} {'OT MiB':>11}  ok")
    for name, r in meas.items():
        o = r["ot"]
        h = r.get("he", {"s": float("nan"), "cpu_s": float("nan"), "bytes": float("nan")})
        ex = "*" if "extrapolated_from" in o else " "
        print(
            f"{name:22} {h['s']:8.2f} {h['cpu_s']:7.2f} {h['bytes'] / 2**20:9.1f} "
            f"{o['s']:9.2f}{ex} "
            f"{o['bytes'] / 2**20:10.1f}{ex}  {h.get('verified', True) and o['verified']}"
        )
    print("* OT conv extrapolated linearly from a slice of output positions")
    am = result["affine_time_model"]
    print(
        f"OT affine time model ({am['form']}): "
        + ", ".join(f"{k} {v * 1e6:.3g} us" for k, v in am["wall"].items())
        + f"; max relative residual {am['max_rel_residual_wall']:.2f}"
    )
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    result["loadavg_1min"] = os.getloadavg()[0]
    t = result["densenet121_total"]
    if t["measured"]:
        print(
            f"densenet121_total (all {t['layers']} layers run, benchmarks/densenet_linear.py): "
            f"{t['s']:.1f} s wall, {t['cpu_s']:.1f} s CPU (busier party), {t['GiB']:.2f} GiB, "
            f"all exact: {t['verified']}; "
            + ", ".join(f"{k} {v['s']:.1f} s" for k, v in sorted(t["parts"].items()))
        )
    for key in ("densenet121_total", "densenet121_total_model", "densenet121_total_unfolded_bn"):
        t = result.get(key)
        if t is None or t["measured"]:
            continue
        print(
            f"{key} (estimated from the layers above): "
            f"{t['s']:.1f} s wall, {t['cpu_s']:.1f} s CPU (busier party), "
            f"{t['GiB']:.2f} GiB ({t['affine_layers']} affine layers by OT, "
            f"{t['affine_elements'] / 1e6:.1f} M elements: "
            f"{t['parts']['affine_ot']['s']:.1f} s, "
            f"{t['parts']['affine_ot']['bytes'] / 2**30:.2f} GiB); weight plaintexts "
            f"{t['weight_plaintexts_GiB']:.0f} GiB if all cached, else +"
            f"{t['weight_prep_cpu_s']:.0f} s server CPU per image to rebuild them"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
