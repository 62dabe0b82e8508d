"""Headroom with a stated guarantee: checked ReLU limits (range model ``checked``).

Calibration alone cannot bound a deep net's tensors for every admissible input: pure interval
analysis from the declared input range grows to hundreds of bits through DenseNet-121, and a
calibrated range × margin is an estimate that real images exceed (issue 13). This pass makes
the estimate *checked*:

* every ReLU gets a second operand, a server-private **limit** per channel,
  ``limit_c = 2^h · m · max(hi_c, hi/4)``: ``hi_c`` the largest value channel c of the ReLU's
  input reached on the calibration inputs (``hi`` the tensor's; the floor keeps channels that
  rarely fired from flagging ordinary inputs), ``m = max(margin, spread)`` with ``spread`` =
  (mean + 4σ of the per-input maxima) / hi — how far the next input's maximum may plausibly
  reach given how much the calibration inputs' maxima varied — and ``h`` = ``--headroom-bits``
  (default 1). A ReLU whose input never went positive on the calibration inputs has no limit
  of its own (nothing to scale one by): its bound stays the interval one. The 2PC program computes
  the shares of 1{x ≥ limit} per element (one DReLU of x − limit,
  ``runtime/protocols/overflow.py``) and reveals to the client only the OR per checked ReLU;
  the cleartext interpreter computes the same flags. Every ReLU is checked (which ones are is
  public structure, so it must not depend on weights or calibration); a limit above its
  channel's sound bound (e.g. relu(r − 6) of a lowered ReLU6) is clamped to it and never fires.
* ranges are then **sound**: interval analysis from the (quantized) declared input range in
  which a checked ReLU's output lies in [0, limit) — and nothing is cut to observations. The
  ring ℓ is sized from these bounds (one spare bit for MaxPool).

Guarantee (tested in tests/test_headroom.py): for every input the client's check admits, either
no checked ReLU input reaches its limit, and then every tensor lies within its sound range, no
value wraps the ring, and the output is the exact fixed-point result (bit-exact between 2PC and
simulate); or the result is reported invalid with the first ReLU whose limit was reached —
never a silently wrong probability. The limits only decide how often a valid result is
refused (headroom); they never affect correctness.
"""

from __future__ import annotations

import numpy as np

from ..ir import Fix, Graph, TensorType, Visibility


def _limits(g: Graph, relu: str, margin: float, headroom_bits: int) -> np.ndarray | None:
    """Per-channel limits (real units) for a ReLU from its input's calibration statistics."""
    src = g[g[relu].inputs[0]]
    if "observed" not in src.meta or src.meta["observed"][1] <= 0:
        return None  # never fired on the calibration inputs: no scale to check against
    if g[relu].meta.get("bounded_by") in g:
        # relu(r − c) of a lowered clip (ReLU6's upper ReLU): r's own check bounds its input,
        # so the sound bound is its limit (a limit scaled from how far r − c went positive on
        # the calibration inputs would refuse every input that saturates a bit more)
        return None
    hi = float(src.meta["observed"][1])
    samples = np.array([v for v in src.meta.get("observed_sample_hi", []) if v > 0])
    # spread: where the next input's maximum may land, mean + 4σ of the per-input maxima
    spread = (samples.mean() + 4 * samples.std()) / hi if samples.size > 1 else 1.0
    m = max(margin, spread) * 2.0**headroom_bits
    shape = src.type.shape
    ch = src.meta.get("observed_channel_hi")
    if ch is not None and len(shape) >= 2 and len(ch) == shape[1]:
        return m * np.maximum(np.asarray(ch, np.float64), hi / 4)
    return np.array([m * hi])


#: The integer limit of a ReLU without calibration data: above any value (clamped later).
NO_LIMIT = 1 << 62

#: Limits are rounded up to a multiple of 2^-CHECK_FRACTION_BITS in real units (or finer):
#: the 2PC check then compares only the bits above that grain (protocols/relu_check.py).
CHECK_FRACTION_BITS = 4


def grain(g: Graph, relu: str) -> int:
    """The public grain of a checked ReLU: its limits are multiples of 2^grain (integer units).
    A function of the structure and scales only: scale − CHECK_FRACTION_BITS, and at least
    the shift of an ``msb0`` truncation that alone reads the ReLU (the fused ReLU-truncation
    takes that carry from the same millionaire)."""
    node = g[relu]
    k = max(0, g[node.inputs[0]].type.dtype.scale - CHECK_FRACTION_BITS)
    users = g.users(relu)
    if len(users) == 1 and g[users[0]].op == "trunc" and g[users[0]].attrs.get("kind") == "msb0":
        k = max(k, int(g[users[0]].attrs.get("shift", 0)))
    return k


def round_up(q: np.ndarray, k: int) -> np.ndarray:
    """Integer limits rounded up to multiples of 2^k (a larger limit never flags more)."""
    return -((-np.asarray(q, np.int64)) >> k) << k


def add_relu_checks(g: Graph, margin: float, headroom_bits: int) -> int:
    """Give every ReLU its server-private limit operand; returns how many. Every ReLU, so the
    public structure (which ReLUs are checked) never depends on weights or calibration; none
    without calibration (then the interval ranges alone are sound)."""
    if not any("observed" in n.meta for n in g.nodes):
        return 0
    n = 0
    for node in list(g.nodes):
        if node.op != "relu" or len(node.inputs) != 1:
            continue
        lim = _limits(g, node.name, margin, headroom_bits)
        src = g[node.inputs[0]]
        scale = src.type.dtype.scale
        shape = [1] * len(src.type.shape)
        if len(shape) >= 2:  # per channel: the shape is structure, never calibration
            shape[1] = src.type.shape[1]
        key = g.fresh_name(f"{node.name}.limit")
        if lim is None:  # no calibration data: no limit (clamped to the sound bound later)
            lim = np.array([np.inf])
        k = grain(g, node.name)
        q = round_up(np.minimum(np.ceil(lim * 2.0**scale), NO_LIMIT).astype(np.int64), k)
        node.attrs["grain"] = k
        q = np.broadcast_to(q, (int(np.prod(shape)),)).reshape(shape).copy()
        g.params[key] = q
        ty = TensorType(tuple(shape), Fix(src.type.dtype.ell, scale), Visibility.SERVER)
        w = g.add("weight", attrs={"key": key, "shape": shape}, type=ty, name=key)
        g.set_inputs(node.name, [node.inputs[0], w])
        n += 1
    if n:
        g.toposort()
    return n


def limit_interval(g: Graph, relu: str) -> np.ndarray | None:
    """The limits (real units, per channel or one) of a checked ReLU, else None."""
    node = g[relu]
    if len(node.inputs) < 2:
        return None
    w = g[node.inputs[1]]
    return np.asarray(g.params[w.attrs["key"]], np.float64).reshape(-1) / 2.0**w.type.dtype.scale


def clamp_limits(g: Graph, iv: dict[str, tuple[np.ndarray, np.ndarray]]) -> int:
    """Clamp each limit to just above its channel's sound bound ``iv`` (a limit above it can
    never fire, e.g. relu(r − 6) of a lowered ReLU6 after a checked r, or a ReLU without
    calibration data), so that x − limit ≥ −2·max|x| cannot wrap. Ranges do not change: a
    ReLU whose input stays below the limit is clamped by it anyway. Returns how many checks
    can fire at all (the others still run: which ReLUs are checked is public structure)."""
    n = 0
    for node in g.nodes:
        lim = limit_interval(g, node.name) if node.op == "relu" else None
        if lim is None:
            continue
        hi = iv[node.inputs[0]][1]
        if hi.size != lim.size:
            hi = np.full(lim.size, hi.max())
        w = g[node.inputs[1]]
        key = w.attrs["key"]
        cap = np.ceil(np.maximum(hi, 0.0) * 2.0**w.type.dtype.scale).astype(np.int64) + 1
        cap = round_up(cap, int(node.attrs.get("grain", 0)))
        g.params[key] = np.minimum(g.params[key], cap.reshape(g.params[key].shape))
        n += int(np.any(hi >= lim))
    return n
