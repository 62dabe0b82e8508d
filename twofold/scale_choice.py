"""``twofold compile --fidelity EPS``: the cheapest (ℓ, s) whose results stay within EPS of
the float model (issue 13).

For each candidate scale s (ascending), the model is compiled with the requested range model
(ℓ follows from s: ``--bitlength auto``) and run in the cleartext interpreter — bit-exact to
2PC — on the calibration inputs and on held-out inputs (``--holdout FILES``, else every
fourth calibration input is held out of calibration); fidelity = max |Δ probability| against
the float reference of the same IR (the model's output function; softmax of plain logits). A
flagged (invalid) result counts as a miss. Cost is the compile report's estimate of bytes per
inference, plus a rule: rings the HE linear layers cannot use (ℓ > 40) rank after all that
can. Candidates are tried in order of s; since ℓ and cost grow with s, the first that meets
the target is the cheapest. The choice, its cost and every candidate tried go into
``graph.meta["compile"]["fidelity"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

SCALES = tuple(range(8, 17))
HE_MAX_ELL = 40  # runtime/linear/linear_he_seal.MAX_ELL: BFV parameters exist for ℓ ≤ 40


def probabilities(fn: str | None, values: Any) -> np.ndarray:  # noqa: ANN401
    """The output as probabilities: the output function's result, softmax of plain logits."""
    from .ir.output_function import apply_output_function

    v = np.asarray(values, np.float64).ravel()
    return apply_output_function("softmax", v) if fn in (None, "identity") else v


def split_holdout(files: Sequence, holdout: Sequence) -> tuple[list, list]:
    """(calibration, held-out): ``holdout`` if given, else every 4th calibration input."""
    files = list(files)
    if holdout or len(files) < 2:
        return files, list(holdout)
    held = files[3::4] or files[-1:]
    return [f for f in files if f not in held], held


def max_delta(secure, float_graph, xs: list[np.ndarray]) -> float:  # noqa: ANN001
    """max |Δ probability| of the compiled graph against the float IR over ``xs``; inf if a
    result is flagged invalid or overflows."""
    from .backends.cleartext import FixedPointOverflow, simulate
    from .backends.float_ref import run_float

    worst = 0.0
    name = float_graph.inputs()[0].attrs["name"]
    fn_f = float_graph.meta.get("output_function", {})
    fn_s = secure.meta.get("output_function", {})
    for x in xs:
        ((oname, ref),) = run_float(float_graph, {name: x}, np.float64).items()
        try:
            doc = simulate(secure, x)
        except FixedPointOverflow:
            return float("inf")
        if doc.get("valid") is False:
            return float("inf")
        (out,) = doc["outputs"].values()
        want = probabilities(fn_f.get(oname), ref)
        got = probabilities(fn_s.get(secure.outputs[0]), out["values"])
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def choose_scale(
    target: float,
    compile_at: Callable[[int], tuple[Any, dict[str, Any]]],
    float_graph: Any,  # noqa: ANN401
    calib: list[np.ndarray],
    held: list[np.ndarray],
    scales: Sequence[int] = SCALES,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(graph, report, summary) of the first scale meeting ``target`` on both sets (the HE-
    capable ones first); ValueError naming the best reached if none does."""
    from .compiler import CompileError

    tried: list[dict[str, Any]] = []
    deferred = []
    for he_pass in (True, False):
        for s in scales if he_pass else deferred:
            try:
                g, rep = compile_at(s)
            except CompileError as e:
                tried.append({"scale": s, "refused": str(e)})
                continue
            if he_pass and rep["ell"] > HE_MAX_ELL:
                deferred.append(s)
                continue
            row = {
                "scale": s,
                "ell": rep["ell"],
                "bytes_est": rep["totals"]["comm_bytes"],
                "max_dprob_calibration": max_delta(g, float_graph, calib),
                "max_dprob_holdout": max_delta(g, float_graph, held) if held else None,
            }
            tried.append(row)
            worst = max(row["max_dprob_calibration"], row["max_dprob_holdout"] or 0.0)
            if worst <= target:
                summary = {"target": target, "chosen": row, "tried": tried,
                           "holdout_inputs": len(held)}  # fmt: skip
                return g, rep, summary
    done = [t for t in tried if "ell" in t]
    if not done:
        raise ValueError(f"--fidelity {target}: no scale in {list(scales)} compiles")
    best = min(done, key=lambda t: max(t["max_dprob_calibration"], t["max_dprob_holdout"] or 0))
    raise ValueError(
        f"--fidelity {target} not reached by any scale {scales[0]}..{scales[-1]}: best is "
        f"s={best['scale']} (l={best['ell']}) with max |dp| calibration "
        f"{best['max_dprob_calibration']:.3g}, held-out {best['max_dprob_holdout']}"
    )
