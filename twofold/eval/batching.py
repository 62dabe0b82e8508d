"""``twofold eval --batch N``: N images per secure run, on a bundle compiled for batch N
(``twofold compile --input-shape N,3,H,W``; issue 17).

The images of a batch are stacked into one input, so the whole batch is one program: its
shares, OTs and HE packing run over the N images together and the rounds are paid once. The
last batch is filled up by repeating its last image (those extra rows are not recorded).
Each image's record carries its share of the batch's cost (time, bytes and rounds / N) and
``batch``; everything else is as in the per-image run (the plaintext model runs per image).

Invariant: an image gets the record the per-image path (``runner.evaluate_image``) would give
it, up to timings and cost. Both paths classify with the same two functions
(``runner.prepare_image``, ``runner.secure_record``). A batch whose secure run fails as a whole
(an overflow or a flagged output: one image spoils the batch's result) is rerun one image at a
time, each alone in a batch padded with copies of itself (:class:`Alone`), so its batch-mates
get their outputs and the culprit its own failure kind; those records carry ``batch_rerun``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .engines import Inference


def batch_size(secure: Any, wanted: int | None) -> int:  # noqa: ANN401 - an engine
    """The bundle's batch; ``ValueError`` when ``--batch`` asks for another."""
    shape = list(secure.meta.get("shape") or [1])
    n = int(shape[0])
    if wanted is not None and wanted != n:
        raise ValueError(
            f"--batch {wanted}: the bundle runs batches of {n}; compile it with "
            f"--input-shape {wanted},{','.join(str(d) for d in shape[1:])}"
        )
    return n


class Alone:
    """A batch-N engine seen as a one-image engine: the image repeated N times, row 0 kept.

    Every row of a padded run is the same image, so its output (or its failure) is the
    image's own. ``meta`` is the one-image input description :func:`runner.prepare_image`
    loads with. The cost is the padded run's, all of it spent on this one image.
    """

    def __init__(self, engine: Any, batch: int) -> None:  # noqa: ANN401 - an engine
        self.engine, self.batch = engine, batch
        self.meta = one_image_meta(engine.meta)
        self.labels, self.input_name = engine.labels, engine.input_name

    def __call__(self, x: np.ndarray, *args: Any, **kw: Any) -> Inference:  # noqa: ANN401
        r = self.engine(np.concatenate([x] * self.batch), *args, **kw)
        row = np.asarray(r.values).reshape(self.batch, -1)[0]
        return Inference(row.copy(), r.time_s, {**r.cost, "batch_rerun": "alone"})


def one_image_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The input description of a batch-N program for one of its images (batch 1)."""
    return dict(meta, shape=[1, *list(meta["shape"])[1:]])


def _line(rec: dict[str, Any]) -> str:
    if "error" in rec:
        return f"skipped {rec['id']}: {rec['error']}"
    if "secure_error" in rec:
        return f"secure failure {rec['id']} ({rec['failure']}): {rec['secure_error']}"
    return ""


def run_batched(
    todo: list[Any],
    batch: int,
    plain: Any,  # noqa: ANN401
    secure: Any,  # noqa: ANN401
    sim: Any,  # noqa: ANN401
    log: Any,  # noqa: ANN401
    say: Callable[[str], None],
) -> None:
    """Every image of ``todo`` once, ``batch`` per secure run; see the module docstring."""
    from .runner import Prepared, evaluate_image, is_secure_failure, prepare_image, secure_record

    one_meta = one_image_meta(secure.meta)
    alone = Alone(secure, batch)
    alone_sim = alone if sim is secure else None if sim is None else Alone(sim, batch)
    done = 0
    for start in range(0, len(todo), batch):
        t0 = time.perf_counter()
        ready: list[tuple[Any, Prepared]] = []
        for s in todo[start : start + batch]:
            prep = prepare_image(s, plain, one_meta, secure.labels)
            if isinstance(prep, Prepared):
                ready.append((s, prep))
            else:  # unreadable, out of range, non-finite plaintext: as evaluate_image
                log.append(prep)
                done += 1
                say(f"[{done}/{len(todo)}] {_line(prep)}")
        if not ready:
            continue
        xs = [p.x for _, p in ready]
        stack = np.concatenate(xs + [xs[-1]] * (batch - len(xs)))
        try:
            if secure is sim:
                r = sim(stack, measure_memory=False)
                check = None
            else:
                r = secure(stack, secure.input_name)
                check = None if sim is None else sim(stack, measure_memory=False).values
        except (ArithmeticError, ValueError) as e:
            if not is_secure_failure(e):
                raise  # a failed session: the run stops, finished images are kept
            # One image spoils the batch's result; which one, only its own run can tell.
            say(
                f"a batch of {len(ready)} failed as a whole ({e}); rerunning its "
                f"{len(ready)} image(s) one at a time, each padded to {batch} with itself"
            )
            for s, _ in ready:
                rec = evaluate_image(s, plain, alone, alone_sim)
                rec["batch"] = batch
                log.append(rec)
                done += 1
                say(f"[{done}/{len(todo)}] {_line(rec) or f'{s.id}: rerun alone, ok'}")
            continue
        rows = np.asarray(r.values).reshape(batch, -1)
        checks = None if check is None else np.asarray(check).reshape(batch, -1)
        share = {
            k: (v / batch if isinstance(v, int | float) and k not in ("peak_mem_bytes",) else v)
            for k, v in r.cost.items()
        }
        for i, (s, prep) in enumerate(ready):
            cost = {"batch": batch, **share}
            if checks is not None:
                cost["simulate"] = checks[i].tolist()
            row = Inference(rows[i].copy(), r.time_s / batch, cost)
            rec = secure_record(s, prep, lambda row=row: row)
            if "secure" in rec:
                rec["wall_s"] = (time.perf_counter() - t0) / len(ready)
            else:
                rec["batch"] = batch
                say(_line(rec))
            log.append(rec)
        done += len(ready)
        say(f"[{done}/{len(todo)}] batch of {len(ready)}: {r.time_s:.1f} s")
