"""``twofold eval --batch N``: N images per secure run, on a bundle compiled for batch N
(``twofold compile --input-shape N,3,H,W``; issue 17).

The images of a batch are stacked into one input, so the whole batch is one program: its
shares, OTs and HE packing run over the N images together and the rounds are paid once. The
last batch is filled up by repeating its last image (those extra rows are not recorded).
Each image's record carries its share of the batch's cost (time, bytes and rounds / N) and
``batch``; everything else is as in the per-image run (the plaintext model runs per image).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .engines import file_digest


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


def run_batched(
    todo: list[Any],
    batch: int,
    load: Callable[[Any, dict[str, Any]], np.ndarray],
    plain: Any,  # noqa: ANN401
    secure: Any,  # noqa: ANN401
    sim: Any,  # noqa: ANN401
    log: Any,  # noqa: ANN401
    say: Callable[[str], None],
) -> None:
    """The per-image loop of ``runner._run`` with the secure engine called once per batch."""
    one_meta = dict(secure.meta, shape=[1, *list(secure.meta["shape"])[1:]])
    done = 0
    for start in range(0, len(todo), batch):
        t0 = time.perf_counter()
        ready: list[tuple[Any, np.ndarray]] = []
        for s in todo[start : start + batch]:
            base = {"id": s.id, "line": s.line}
            try:
                base["sha256"] = file_digest(s.path)
                ready.append((base, load(s, one_meta)))
            except Exception as e:  # any decoder failure is a bad row, reported with the reason
                msg = str(e).replace(str(s.path), s.id)  # no absolute paths in a report
                log.append({**base, "error": f"unreadable image: {msg}"})
                say(f"skipped {s.id}: unreadable image: {msg}")
        if not ready:
            continue
        xs = [x for _, x in ready]
        stack = np.concatenate(xs + [xs[-1]] * (batch - len(xs)))
        try:
            if secure is sim:
                r = sim(stack, measure_memory=False)
                check = None
            else:
                r = secure(stack, secure.input_name)
                check = None if sim is None else sim(stack, measure_memory=False).values
        except ArithmeticError as e:  # overflow or a flagged output: the batch's images failed
            for base, x in ready:
                log.append({**base, "plain": plain(x).values.tolist(),
                            "failure": "secure run failed", "secure_error": str(e)})  # fmt: skip
            say(f"a batch of {len(ready)} failed: {e}")
            continue
        rows = r.values.reshape(batch, -1)
        checks = None if check is None else check.reshape(batch, -1)
        share = {
            k: (v / batch if isinstance(v, int | float) and k not in ("peak_mem_bytes",) else v)
            for k, v in r.cost.items()
        }
        for i, (base, x) in enumerate(ready):
            p = plain(x)
            rec = {
                **base,
                "plain": p.values.tolist(),
                "secure": rows[i].tolist(),
                "time_plain_s": p.time_s,
                "time_secure_s": r.time_s / batch,
                "wall_s": (time.perf_counter() - t0) / len(ready),
                "batch": batch,
                **share,
            }
            if checks is not None:
                rec["simulate"] = checks[i].tolist()
            log.append(rec)
        done += len(ready)
        say(f"[{done}/{len(todo)}] batch of {len(ready)}: {r.time_s:.1f} s")
