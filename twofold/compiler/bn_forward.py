"""Pass ``bn_forward``: fold a BatchNorm that precedes a ReLU forward, into the next linear layer.

DenseNet's pre-activation BN cannot fold backward (its input is a concat), so ``fold_bn``
lowers it to ``affine(x, a, b)``, a product by a server vector (ℓ(ℓ+1)/2 bits per element in
2PC). When the affine's only reader is a ReLU whose readers are all linear layers (a conv2d
without padding, possibly after a global average pool; with ``into_gemm`` also global average
pool / flatten into a gemm), with σ = sign(a), c = b/a:

    ReLU(a·x + b) = |a| · ReLU(σ·(x + c))

so |a| moves into the consumer's input-channel weights (W'[:, i] = W[:, i]·|a_i|; pools and
flatten commute with a positive per-channel factor), c is a server-private per-channel shift
(free in 2PC) and only the sign is left: ``sign_affine(x, σ, σ·c)``, one correlated OT per
channel and ℓ − 1 bits per element (``runtime/linear/linear_ot.py::sign_flip``), at the input's
scale, so no truncation either. Every matching BN gets the sign op whatever its signs are: the
public IR depends on the architecture only (σ, c, W' are server weights).

Shifts beyond the calibrated range. A channel with tiny |a| has a huge |c|, which would widen
the ring. With R_i the channel's calibrated max |x| (the float graph run on the calibration
inputs, ``channel_stats``) and K = 4, when |c_i| > K·R_i the ReLU is constant in its form on
[−K·R_i, K·R_i]: identically 0 (b < 0; c is set to −σ·K·R_i, still 0 there) or identically a·x +
b (b > 0; c is set to σ·K·R_i and the difference κ_i = |a_i|·σ_i·(c_i − c'_i), a per-channel
constant, goes into the consumer's bias). A channel with a = 0 is the constant ReLU(b) (|a| = 0,
κ = ReLU(b)). Constants pass the pools and flatten unchanged, and a conv without padding sees
them in every window, so the bias is exact; a padded conv would see them cut at the border,
which is why padded consumers keep the affine. Within K·R_i the rewrite is exact in real
numbers; beyond it (an input far outside calibration) the clamped channel may differ from the
float model. Without calibration nothing is clamped. Both parties' results stay bit-exact with
``simulate`` either way (it runs this IR).

Rounding. W' = W·|a| is rounded at the scale s like every weight, but the consumer now reads
r = y/|a| (y the BN's ReLU output), so the rounding error e of W' weighs r: channels with small
|a| lose more than before (DenseNet-121 224², s = 11: the float error doubled, mostly the
classifier's). With calibration, the expected part of that error, Σ e·E[r] per output, goes
into the consumer's bias (E[r] from the same float run, through pools and flatten), which brings
the error back to the affine path's for convolutions (docs/PERFORMANCE.md). Not for the
classifier after global pooling (DenseNet's norm5): with it folded too, the network's error
stayed 1.5x the affine path's, while its affine is 0.5% of the BN elements (1024·7² at 224²),
so a gemm consumer keeps the affine unless ``into_gemm`` (exact in real numbers all the same).

Invariant established: every rewritten ReLU reads a ``sign_affine``; graphs without the pattern
are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..ir import Graph
from .errors import CompileError

#: (max |x|, mean x) per channel (axis 1) of the named float tensors, over calibration inputs
ChannelStats = Callable[[Graph, list[str]], dict[str, tuple[np.ndarray, np.ndarray]]]

CLAMP_FACTOR = 4.0
_CHAIN = ("global_avgpool", "flatten", "reshape")


def _is_param(g: Graph, name: str) -> bool:
    return g[name].op in ("weight", "const")


def _absorbers(
    g: Graph, name: str, idx: np.ndarray, into_gemm: bool = False
) -> list[tuple[str, np.ndarray]] | None:
    """The linear layers that read ``name`` through per-channel-linear data movement, each with
    the BN channel of every feature of its input (axis 1), or None if some reader is not one
    (a gemm counts only with ``into_gemm``)."""
    users = g.users(name)
    if not users or g.is_output(name):
        return None
    out: list[tuple[str, np.ndarray]] = []
    for u in users:
        node = g[u]
        if node.inputs.count(name) != 1 or node.inputs[0] != name:
            return None
        shape = g[name].type.shape
        if node.op == "conv2d":
            if any(node.attrs["pads"]) or not _is_param(g, node.inputs[1]):
                return None
            if len(node.inputs) == 3 and not _is_param(g, node.inputs[2]):
                return None
            out.append((u, idx))
        elif node.op == "gemm":
            w = node.inputs[1]
            if not into_gemm or not _is_param(g, w) or len(g[w].type.shape) != 2 or len(shape) != 2:
                return None
            if len(node.inputs) == 3 and not _is_param(g, node.inputs[2]):
                return None
            out.append((u, idx))
        elif node.op in _CHAIN:
            oshape = node.type.shape
            if node.op == "global_avgpool":
                sub = _absorbers(g, u, idx, into_gemm)
            elif len(oshape) == 2 and len(shape) >= 2 and oshape[0] == shape[0]:
                rest = int(np.prod(shape[2:], dtype=np.int64))  # row-major: channel-major
                sub = _absorbers(g, u, np.repeat(idx, rest), into_gemm)
            else:
                return None
            if sub is None:
                return None
            out += sub
        else:
            return None
    return out


def _matches(g: Graph, node, into_gemm: bool) -> tuple[str, list] | None:  # noqa: ANN001
    """(relu, absorbers) if ``node`` is affine → ReLU → linear layers only."""
    if node.op != "affine" or not all(_is_param(g, i) for i in node.inputs[1:]):
        return None
    users = g.users(node.name)
    if len(users) != 1 or g.is_output(node.name):
        return None
    relu = g[users[0]]
    if relu.op != "relu" or len(relu.inputs) != 1 or len(node.type.shape) < 2:
        return None
    absorbers = _absorbers(g, relu.name, np.arange(node.type.shape[1]), into_gemm)
    return None if absorbers is None else (relu.name, absorbers)


def split(
    a: np.ndarray, b: np.ndarray, bound: np.ndarray | None, factor: float = CLAMP_FACTOR
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(σ, p, c, κ) per channel with ReLU(a·x + b) = p·ReLU(σ·(x + c)) + κ for |x| ≤ factor·bound
    (for all x where nothing is clamped), σ ∈ {−1, +1}, p = |a| ≥ 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sigma = np.where(a < 0, -1.0, 1.0)
    p = np.abs(a)
    zero = a == 0
    c = np.divide(b, a, out=np.zeros_like(b), where=~zero)
    kappa = np.where(zero, np.maximum(b, 0.0), 0.0)
    if bound is not None:
        lim = factor * np.asarray(bound, np.float64)
        big = ~zero & (np.abs(c) > lim)
        on = big & (b > 0)  # linear on the range: σ(x + c) > 0 there
        c_new = np.where(on, sigma * lim, np.where(big, -sigma * lim, c))
        kappa = kappa + np.where(on, p * sigma * (c - c_new), 0.0)
        c = c_new
    return sigma, p, c, kappa


def _param(g: Graph, name: str) -> np.ndarray:
    return np.asarray(g.params[g[name].attrs["key"]], np.float64)


def _absorb(  # noqa: PLR0913
    g: Graph,
    name: str,
    idx: np.ndarray,
    p: np.ndarray,
    kappa: np.ndarray,
    mean_in: np.ndarray | None,
    scale: int | None,
) -> None:
    """Scale ``name``'s input features by p[idx] and add the constant inputs κ[idx] to its bias
    (new server weights, always both, so the structure does not depend on the values). With
    ``mean_in`` (its input's calibrated mean per feature, before the rewrite) and ``scale``, the
    bias also gets Σ (W' − round(W'))·E[r], the expected error of rounding W' at ``scale``."""
    node = g[name]
    w = _param(g, node.inputs[1])
    if node.op == "conv2d":
        cout, cg = w.shape[:2]
        og = cout // node.attrs["group"]
        feat = (np.arange(cout)[:, None] // og) * cg + np.arange(cg)[None, :]  # [O, cg]
        w2 = (w * p[idx[feat]][:, :, None, None]).astype(np.float32)
        comp = (w.sum(axis=(2, 3)) * kappa[idx[feat]]).sum(axis=1)
        nout = cout
    else:
        w2 = (w * p[idx][:, None]).astype(np.float32)
        comp = kappa[idx] @ w
        nout = w.shape[1]
    if mean_in is not None and scale is not None:
        pi = p[idx]
        # E[r] = (E[y] − κ)/p where p > 0; where p = 0 the column of W' is 0 and so its error
        mean_r = np.divide(mean_in - kappa[idx], pi, out=np.zeros_like(pi), where=pi > 0)
        w64 = w2.astype(np.float64)
        err = w64 - np.rint(w64 * 2.0**scale) / 2.0**scale  # what quantize will drop
        if node.op == "conv2d":
            comp = comp + (err.sum(axis=(2, 3)) * mean_r[feat]).sum(axis=1)
        else:
            comp = comp + mean_r @ err
    b = _param(g, node.inputs[2]) if len(node.inputs) == 3 else np.zeros(nout)
    b2 = b + comp if b.ndim else np.full(nout, float(b)) + comp
    wk = g.add_param(g.fresh_name(node.name + ".w_fwd"), w2)
    bk = g.add_param(g.fresh_name(node.name + ".b_fwd"), b2.astype(np.float32))
    g.set_inputs(name, [node.inputs[0], wk, bk])


def bn_forward(
    graph: Graph,
    channel_stats: ChannelStats | None = None,
    scale: int | None = None,
    into_gemm: bool = False,
) -> Graph:
    g = graph.copy()
    found = [(n.name, m) for n in g.nodes if (m := _matches(g, n, into_gemm)) is not None]
    if not found:
        return g
    stats = {}
    if channel_stats is not None:  # the BN inputs' bounds, the consumers' input means
        names = [g[n].inputs[0] for n, _ in found]
        names += [g[c].inputs[0] for _, (_, ab) in found for c, _ in ab]
        stats = channel_stats(g, list(dict.fromkeys(names)))
    scales: dict[str, list[tuple]] = {}
    for name, (relu, absorbers) in found:
        node = g[name]
        a, b = _param(g, node.inputs[1]), _param(g, node.inputs[2])
        bound = stats[node.inputs[0]][0] if node.inputs[0] in stats else None
        sigma, p, c, kappa = split(a, b, bound)
        if not (np.isfinite(c).all() and np.isfinite(p).all()):
            raise CompileError(f"%{name}: batchnorm with a non-finite scale or shift")
        sk = g.add_param(g.fresh_name(name + ".sign"), sigma.astype(np.float32))
        ck = g.add_param(g.fresh_name(name + ".shift"), (sigma * c).astype(np.float32))
        flip = g.add("sign_affine", [node.inputs[0], sk, ck], name=name + "_sign")
        g.set_inputs(relu, [flip])
        for cons, idx in absorbers:
            src = g[cons].inputs[0]
            mean_in = stats[src][1] if src in stats else None
            scales.setdefault(cons, []).append((idx, p, kappa, mean_in))
    for cons, parts in scales.items():
        if len(parts) != 1:  # two matched ReLUs into one layer cannot happen (one input)
            raise CompileError(f"%{cons}: reads two folded BatchNorms")
        _absorb(g, cons, *parts[0], scale)
    g.remove_dead()
    g.toposort()
    return g
