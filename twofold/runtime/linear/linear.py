"""Linear layers with server-private weights: conv2d, gemm, per-channel affine (DESIGN.md §5).

Shares are uint64 residues mod 2^ell; x = x_s + x_c. The server computes W*x_s (+ b) locally;
W*x_c goes through an oblivious protocol:

* ``method="he"``: Cheetah-style BFV with coefficient encoding (``linear_he``); one batched
  exchange per layer (all groups and images together);
* ``method="ot"``: SCI_OT-style correlated OT (``linear_ot``);
* ``method="auto"``: HE for conv2d/gemm; OT for the per-channel affine when the party has an
  OT extension (``party.ot``), since coefficient encoding cannot pack a per-channel scaling
  densely and OT costs ell(ell+1)/2 bits per element there (docs/SECURITY.md).

Both end with additive shares of the exact W*x (+ b) mod 2^ell (no truncation). The server's
weights are signed int64 fixed-point integers; the client passes ``w=None`` and the public
``w_shape``. ``cache`` (a :class:`LinearCache`) keeps the server's weight plaintexts (NTT form)
per layer key so they are built once per model and reused across images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import linear_he as he
from . import linear_he_coef as coef
from . import linear_he_pack as pk
from . import linear_ot as ot
from .linear_he_seal import he_params, he_supports
from .linear_local import conv2d_mod, matmul_mod, pad_nchw

METHODS = ("he", "ot", "auto")


class LinearCache:
    """Per-model store of prepared weights (e.g. NTT plaintexts), keyed by layer."""

    def __init__(self) -> None:
        self._d: dict[Any, Any] = {}

    def get(self, key: Any, build: Callable[[], Any]) -> Any:  # noqa: ANN401
        if key is None:
            return build()
        if key not in self._d:
            self._d[key] = build()
        return self._d[key]

    def __len__(self) -> int:
        return len(self._d)


def _check(party, x: np.ndarray, w, ell: int, method: str, what: str) -> None:  # noqa: ANN001
    if method not in METHODS:
        raise ValueError(f"{what}: method must be one of {METHODS}, got {method!r}")
    if x.dtype != np.uint64:
        raise TypeError(f"{what}: share must be uint64, got {x.dtype}")
    if ell < 64 and x.size and int(x.max()) >> ell:
        raise ValueError(f"{what}: share has elements >= 2^{ell}")
    if party.role == "server" and w is None:
        raise ValueError(f"{what}: the server must pass the weights")
    if party.role == "client" and w is not None:
        raise ValueError(f"{what}: the client must not hold the weights (pass None)")


def _pick(party, method: str, kind: str, ell: int) -> str:  # noqa: ANN001
    """``auto``: OT for the per-channel affine when the session has OT, and for conv/gemm when
    the BFV parameters do not support ell; else HE (decided from public data only)."""
    if method != "auto":
        return method
    if kind == "affine" and getattr(party, "ot", None) is not None:
        return "ot"
    return "he" if he_supports(ell) else "ot"


def _key(cache, name, *parts):  # noqa: ANN001, ANN002, ANN202
    return None if cache is None or name is None else (name, *parts)


def _add_bias(y: np.ndarray, b, axis_shape: tuple[int, ...], ell: int) -> np.ndarray:  # noqa: ANN001
    if b is None:
        return y
    bb = np.asarray(b).astype(np.int64).astype(np.uint64).reshape(axis_shape)
    return (y + bb) & np.uint64((1 << ell) - 1)


def conv2d(
    party,  # noqa: ANN001
    x_share: np.ndarray,
    w: np.ndarray | None,
    b: np.ndarray | None,
    *,
    w_shape: tuple[int, int, int, int],
    strides: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilations: tuple[int, int] = (1, 1),
    group: int = 1,
    ell: int,
    method: str = "he",
    cache: LinearCache | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Shares of conv2d(x, w) + b mod 2^ell; x_share [B, C, H, W], w [O, C/group, kh, kw]."""
    _check(party, x_share, w, ell, method, f"conv2d {name or ''}".strip())
    method = _pick(party, method, "conv2d", ell)
    O, cg, kh, kw = (int(v) for v in w_shape)  # noqa: N806
    B, C, H, W = x_share.shape  # noqa: N806
    if w is not None and tuple(w.shape) != (O, cg, kh, kw):
        raise ValueError(f"conv2d {name}: weight shape {w.shape} != declared {w_shape}")
    if C != cg * group or O % group:
        raise ValueError(f"conv2d {name}: {C} input channels, kernel {w_shape}, group {group}")
    strides, pads, dilations = tuple(strides), tuple(pads), tuple(dilations)
    local = None
    if party.role == "server":
        local = conv2d_mod(
            x_share, w, strides=strides, pads=pads, dilations=dilations, group=group, ell=ell
        )
    if method == "ot":
        remote = ot.conv2d(party, x_share, w, w_shape, strides, pads, dilations, group, ell)
    else:
        remote = _conv_he(
            party, x_share, w, w_shape, strides, pads, dilations, group, ell, cache, name
        )
    y = remote if local is None else (local + remote) & np.uint64((1 << ell) - 1)
    if party.role == "server":
        y = _add_bias(y, b, (1, O, 1, 1), ell)
    return y


@dataclass
class ConvLayout:
    """How a conv goes through HE: the blocking ``plan`` of a stride-1 problem derived from it.

    * 1x1 kernels with stride > 1: the padded input is subsampled first (``sub``);
    * larger kernels with stride s > 1 (dilation 1): polyphase (space-to-depth) form, input
      channel (c, a, b) = x[c, a::s_h, b::s_w] and kernel w'[o, (c, a, b), l, m] =
      w[o, c, l*s_h + a, m*s_w + b], a stride-1 conv with s_h*s_w times the channels and a
      ceil(k/s) kernel that computes only the kept outputs (``phase``);
    * ``Ho`` x ``Wo`` is the conv's output: the plan's extra stride-1 outputs are dropped."""

    plan: pk.ConvPlan
    sub: tuple[int, int]
    phase: tuple[int, int]
    Ho: int  # noqa: N815
    Wo: int  # noqa: N815
    H1: int  # noqa: N815 - input height after the transform (zero padded)
    W1: int  # noqa: N815
    kh: int
    kw: int
    dil: tuple[int, int]


def conv_he_layout(x_shape, w_shape, strides, pads, dil, group) -> ConvLayout:  # noqa: ANN001
    """The HE layout of a conv (public: both parties derive the same)."""
    O, cg, kh, kw = w_shape  # noqa: N806
    dil, st = tuple(dil), tuple(strides)
    khe, kwe = (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1
    Hp, Wp = x_shape[2] + pads[0] + pads[2], x_shape[3] + pads[1] + pads[3]  # noqa: N806
    Ho, Wo = (Hp - khe) // st[0] + 1, (Wp - kwe) // st[1] + 1  # noqa: N806
    sub = phase = (1, 1)
    if khe == 1 and kwe == 1 and st != (1, 1):
        sub, st = st, (1, 1)
        Hp, Wp = -(-Hp // sub[0]), -(-Wp // sub[1])  # noqa: N806
    elif st != (1, 1) and dil == (1, 1):
        phase, st = st, (1, 1)
        kh, kw = -(-kh // phase[0]), -(-kw // phase[1])
        Hp, Wp = max(-(-Hp // phase[0]), Ho + kh - 1), max(-(-Wp // phase[1]), Wo + kw - 1)  # noqa: N806
        cg *= phase[0] * phase[1]
        khe, kwe = kh, kw
    plan = pk.plan_conv(cg, Hp, Wp, O // group, khe, kwe, st)
    return ConvLayout(plan, sub, phase, Ho, Wo, Hp, Wp, kh, kw, dil if phase == (1, 1) else (1, 1))


def _phase_input(lay: ConvLayout, xp: np.ndarray) -> np.ndarray:
    """Padded input [B, C, Hp, Wp] -> [B, C*s_h*s_w, H1, W1], channel (c, a, b) first-major."""
    xp = xp[:, :, :: lay.sub[0], :: lay.sub[1]]
    sh, sw = lay.phase
    if (sh, sw) == (1, 1):
        return xp
    B, C = xp.shape[:2]  # noqa: N806
    full = np.zeros((B, C, lay.H1 * sh, lay.W1 * sw), xp.dtype)
    h, w = min(xp.shape[2], full.shape[2]), min(xp.shape[3], full.shape[3])
    full[:, :, :h, :w] = xp[:, :, :h, :w]
    full = full.reshape(B, C, lay.H1, sh, lay.W1, sw).transpose(0, 1, 3, 5, 2, 4)
    return full.reshape(B, C * sh * sw, lay.H1, lay.W1)


def _phase_weights(lay: ConvLayout, w: np.ndarray) -> np.ndarray:
    """Kernel [O, C, kh, kw] -> [O, C*s_h*s_w, ceil(kh/s_h), ceil(kw/s_w)] (zero taps added)."""
    sh, sw = lay.phase
    if (sh, sw) == (1, 1):
        return w
    O, C, kh, kw = w.shape  # noqa: N806
    full = np.zeros((O, C, lay.kh * sh, lay.kw * sw), w.dtype)
    full[:, :, :kh, :kw] = w
    full = full.reshape(O, C, lay.kh, sh, lay.kw, sw).transpose(0, 1, 3, 5, 2, 4)
    return full.reshape(O, C * sh * sw, lay.kh, lay.kw)


def conv_kept_outputs(lay: ConvLayout) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per spatial block: (coefficients, flat indices into the conv's Ho x Wo output) of the
    plan's outputs that the conv keeps."""
    res = []
    for coef_idx, flat in pk.conv_useful(lay.plan):
        r, c = flat // lay.plan.Wo, flat % lay.plan.Wo
        keep = (r < lay.Ho) & (c < lay.Wo)
        res.append((coef_idx[keep], (r * lay.Wo + c)[keep]))
    return res


def prepare_conv_he(hp, lay: ConvLayout, w, group: int, ell: int, cache, name, x_shape) -> list:  # noqa: ANN001, PLR0913
    """Server: one group's prepared weights per group, built once per model when ``cache`` is
    given: kernel matrices (``linear_he_coef``) when the coefficient domain is cheaper, else
    SEAL weight plaintexts."""
    what = f"conv2d {name or ''}".strip()
    plan = lay.plan

    def build() -> list:
        wl = _phase_weights(lay, np.asarray(w))
        og = wl.shape[0] // group
        if not coef.prefer_coef(plan, lay.kh, lay.kw):
            return conv_plaintexts(hp, plan, wl, lay.dil, group, ell, what)
        kms = [
            coef.kernel_matrix(plan, wl[g * og : (g + 1) * og], lay.dil, ell) for g in range(group)
        ]
        for km in kms:
            he.check_flooding(hp, km.l1_max, what)
        return kms

    return (cache if cache is not None else LinearCache()).get(
        _key(cache, name, "he", ell, tuple(x_shape)), build
    )


def _conv_he(party, x, w, w_shape, strides, pads, dil, group, ell, cache, name):  # noqa: ANN001, ANN202, PLR0913
    O = w_shape[0]  # noqa: N806
    og = O // group
    lay = conv_he_layout(x.shape, w_shape, strides, pads, dil, group)
    plan = lay.plan
    cg = plan.C
    B = x.shape[0]  # noqa: N806
    useful = conv_kept_outputs(lay)
    per = plan.n_cb * plan.n_sp
    idx = [useful[sp][0] for _ in range(B * group * og) for sp in range(plan.n_sp)]
    if party.role == "client":
        xp = _phase_input(lay, pad_nchw(x, pads))
        polys = np.concatenate(
            [
                pk.conv_pack_input(plan, xp[n, g * cg : (g + 1) * cg]).reshape(-1, pk.N)
                for n in range(B)
                for g in range(group)
            ]
        )
        vals = he.client_run(party, ell, polys, idx)
    else:
        hp = he_params(ell)
        prep = prepare_conv_he(hp, lay, w, group, ell, cache, name, x.shape)
        if isinstance(prep[0], coef.KernelMatrix):
            sp_idx = [u[0] for u in useful]

            def compute(cts: np.ndarray):  # noqa: ANN202
                for n in range(B):
                    for g in range(group):
                        base = (n * group + g) * per
                        blk = cts[base : base + per].reshape(plan.n_cb, plan.n_sp, *cts.shape[1:])
                        yield from coef.conv_outputs(prep[g], blk, hp.q, sp_idx)

            vals = he.server_run_arrays(party, ell, B * group * per, idx, compute)
        else:
            outs = []
            for n in range(B):
                for g in range(group):
                    base = (n * group + g) * per
                    for o in range(og):
                        for sp in range(plan.n_sp):
                            terms = [
                                (base + cb * plan.n_sp + sp, prep[g][o, cb])
                                for cb in range(plan.n_cb)
                                if prep[g][o, cb] is not None
                            ]
                            outs.append(he.Output(terms, useful[sp][0]))
            vals = he.server_run(party, ell, B * group * per, outs)
    y = np.zeros((B, O, lay.Ho * lay.Wo), np.uint64)
    it = iter(vals)
    for n in range(B):
        for g in range(group):
            for o in range(og):
                for sp in range(plan.n_sp):
                    y[n, g * og + o, useful[sp][1]] = next(it)
    return y.reshape(B, O, lay.Ho, lay.Wo)


def conv_plaintexts(hp, plan, w, dil, group: int, ell: int, what: str) -> list:  # noqa: ANN001
    """Server: per group, the object array [O/group, n_cb] of weight plaintexts, packed a few
    output channels at a time (the dense [O, n_cb, N] polynomials would need ~1 GiB at 56x56)."""
    og = w.shape[0] // group
    res = []
    for g in range(group):
        parts = []
        for o0 in range(0, og, _O_CHUNK):
            o1 = min(og, o0 + _O_CHUNK)
            polys = pk.conv_pack_weights(plan, w[g * og + o0 : g * og + o1], dil, ell)
            he.check_flooding(hp, int(pk_l1(polys, ell).max()), what)
            parts.append(he.weight_plaintexts(hp, polys))
        res.append(np.concatenate(parts, axis=0))
    return res


_O_CHUNK = 16


def pk_l1(polys: np.ndarray, ell: int) -> np.ndarray:
    """Per output: sum over input blocks of the weight polynomials' centred l1 norms."""
    return he.centered_l1(polys, ell).sum(axis=-1)


def gemm(
    party,  # noqa: ANN001
    x_share: np.ndarray,
    w: np.ndarray | None,
    b: np.ndarray | None,
    *,
    w_shape: tuple[int, int],
    ell: int,
    method: str = "he",
    cache: LinearCache | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Shares of x @ w.T + b mod 2^ell; x_share [B, n_in], w [n_out, n_in]."""
    what = f"gemm {name or ''}".strip()
    _check(party, x_share, w, ell, method, what)
    method = _pick(party, method, "gemm", ell)
    n_out, n_in = (int(v) for v in w_shape)
    if x_share.ndim != 2 or x_share.shape[1] != n_in:
        raise ValueError(f"{what}: input shape {x_share.shape} does not match weights {w_shape}")
    if w is not None and tuple(w.shape) != (n_out, n_in):
        raise ValueError(f"{what}: weight shape {w.shape} != declared {w_shape}")
    B = x_share.shape[0]  # noqa: N806
    if method == "ot":
        remote = ot.gemm(party, x_share, w, w_shape, ell)
    else:
        plan = pk.plan_fc(n_in, n_out)
        useful = [pk.fc_useful(plan, ob) for ob in range(plan.n_obk)]
        if party.role == "client":
            polys = np.concatenate([pk.fc_pack_input(plan, x_share[n]) for n in range(B)])
            vals = he.client_run(party, ell, polys, [u[0] for _ in range(B) for u in useful])
        else:
            hp = he_params(ell)

            def build():  # noqa: ANN202
                polys = pk.fc_pack_weights(plan, w, ell)
                he.check_flooding(hp, int(pk_l1(polys, ell).max()), what)
                return he.weight_plaintexts(hp, polys)

            pts = (cache if cache is not None else LinearCache()).get(
                _key(cache, name, "he", ell, x_share.shape), build
            )
            outs = [
                he.Output(
                    [
                        (n * plan.n_ib + ib, pts[ob, ib])
                        for ib in range(plan.n_ib)
                        if pts[ob, ib] is not None
                    ],  # noqa: E501
                    useful[ob][0],
                )
                for n in range(B)
                for ob in range(plan.n_obk)
            ]
            vals = he.server_run(party, ell, B * plan.n_ib, outs)
        remote = np.zeros((B, n_out), np.uint64)
        it = iter(vals)
        for n in range(B):
            for ob in range(plan.n_obk):
                remote[n, useful[ob][1]] = next(it)
    if party.role == "client":
        return remote
    y = (matmul_mod(x_share, np.asarray(w).T, ell) + remote) & np.uint64((1 << ell) - 1)
    return _add_bias(y, b, (1, n_out), ell)


def affine(
    party,  # noqa: ANN001
    x_share: np.ndarray,
    mul: np.ndarray | None,
    add: np.ndarray | None,
    *,
    ell: int,
    method: str = "he",
    cache: LinearCache | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Shares of mul[c] * x[:, c, ...] + add[c] mod 2^ell (per-channel, axis 1)."""
    what = f"affine {name or ''}".strip()
    _check(party, x_share, mul, ell, method, what)
    method = _pick(party, method, "affine", ell)
    if x_share.ndim < 2:
        raise ValueError(f"{what}: input needs a channel axis, got shape {x_share.shape}")
    B, C = x_share.shape[:2]  # noqa: N806
    if mul is not None and np.asarray(mul).shape != (C,):
        raise ValueError(f"{what}: scale shape {np.asarray(mul).shape} != ({C},)")
    M = int(np.prod(x_share.shape[2:], dtype=np.int64))  # noqa: N806
    x3 = x_share.reshape(B, C, M)
    if method == "ot":
        remote = ot.affine(party, x3, mul, ell)
    else:
        plan = pk.plan_affine(C, M)
        useful = [
            pk.affine_useful(plan, cb, mc) for cb in range(plan.n_cb) for mc in range(plan.n_mc)
        ]  # noqa: E501
        if party.role == "client":
            polys = np.concatenate(
                [pk.affine_pack_input(plan, x3[n]).reshape(-1, pk.N) for n in range(B)]
            )  # noqa: E501
            vals = he.client_run(party, ell, polys, [u[0] for _ in range(B) for u in useful])
        else:
            hp = he_params(ell)

            def build():  # noqa: ANN202
                polys = pk.affine_pack_weights(plan, mul, ell)
                he.check_flooding(hp, int(he.centered_l1(polys, ell).max()), what)
                return he.weight_plaintexts(hp, polys)

            pts = (cache if cache is not None else LinearCache()).get(
                _key(cache, name, "he", ell, x_share.shape), build
            )
            outs = []
            for n in range(B):
                for cb in range(plan.n_cb):
                    for mc in range(plan.n_mc):
                        j = (n * plan.n_cb + cb) * plan.n_mc + mc
                        terms = [] if pts[cb] is None else [(j, pts[cb])]
                        outs.append(he.Output(terms, useful[cb * plan.n_mc + mc][0]))
            vals = he.server_run(party, ell, B * plan.n_cb * plan.n_mc, outs)
        remote = np.zeros((B, C * M), np.uint64)
        it = iter(vals)
        for n in range(B):
            for u in useful:
                remote[n, u[1]] = next(it)
        remote = remote.reshape(B, C, M)
    m = np.uint64((1 << ell) - 1)
    if party.role == "server":
        g = np.asarray(mul).astype(np.int64).astype(np.uint64)[None, :, None]
        remote = (remote + x3 * g) & m
        remote = _add_bias(remote, add, (1, C, 1), ell)
    return remote.reshape(x_share.shape)


def sign_affine(
    party,  # noqa: ANN001
    x_share: np.ndarray,
    sign: np.ndarray | None,
    add: np.ndarray | None,
    *,
    ell: int,
    name: str | None = None,
) -> np.ndarray:
    """Shares of sign[c] * x[:, c, ...] + add[c] mod 2^ell, sign in {-1, +1} (server-private):
    one correlated OT per channel (``linear_ot.sign_flip``), the shift added by the server."""
    what = f"sign_affine {name or ''}".strip()
    _check(party, x_share, sign, ell, "ot", what)
    if x_share.ndim < 2:
        raise ValueError(f"{what}: input needs a channel axis, got shape {x_share.shape}")
    B, C = x_share.shape[:2]  # noqa: N806
    if sign is not None:
        sg = np.asarray(sign)
        if sg.shape != (C,) or not np.all(np.abs(sg) == 1):
            raise ValueError(f"{what}: sign must be {C} values in {{-1, +1}}")
    x3 = x_share.reshape(B, C, -1)
    y = ot.sign_flip(party, x3, sign, ell)
    if party.role == "server":
        y = _add_bias(y, add, (1, C, 1), ell)
    return y.reshape(x_share.shape)
