"""Cost projection of a dataset-scale evaluation: before it starts, and as measured.

*Estimate* (before any image runs): the compile report's communication per inference
(``compiler.report.build_report`` → ``totals.comm_bytes``, counted from the public op graph,
shapes and ℓ by the per-element anchors of DESIGN.md §7, so the client bundle's IR suffices)
times the number of images; time per session = ``SESSION_SETUP_S`` + bytes /
``ASSUMED_BYTES_PER_S``, the throughput of the Python runtime measured for DenseNet-121 at
224² in docs/PERFORMANCE.md (14.4 GiB in 283 s ≈ 52 MiB/s, two processes on one 2-core
machine). It is a prior for planning, replaced by the measurement as soon as images finish.

*Measured*: per endpoint, from the records (``endpoint``, ``wall_s``, ``comm_bytes``), the
images served and mean seconds and bytes per session; in total, the rate this process observed
(images finished / elapsed) at the concurrency it ran with.

*Projected* (computed, not observed, and labelled so in the report, apart from the measured
figures): per endpoint the rate at ``--per-endpoint K`` sessions at once (K × 60 / mean
seconds per session, as if K sessions ran as fast as the measured ones, whatever concurrency
the run had), and the run's rate carried over to the whole dataset and the images still to run.
"""

from __future__ import annotations

from typing import Any

ASSUMED_BYTES_PER_S = 52 * 2**20
SESSION_SETUP_S = 1.0


def estimate(graph: Any, n_images: int, sessions: int, mode: str) -> dict[str, Any] | None:  # noqa: ANN401
    """Expected bytes and wall time for ``n_images`` at ``sessions`` concurrent sessions.

    ``graph``: the program's (public) IR. None in simulate mode (nothing on the wire).
    """
    if mode != "2pc":
        return None
    from ..compiler.report import build_report

    per = build_report(graph)["totals"]["comm_bytes"]
    if not per:
        return None
    per_s = SESSION_SETUP_S + per / ASSUMED_BYTES_PER_S
    return {
        "images": n_images,
        "sessions": sessions,
        "bytes_per_image": int(per),
        "seconds_per_image": per_s,
        "total_bytes": int(per) * n_images,
        "total_wall_s": per_s * n_images / max(1, sessions),
        "basis": (
            "compile-time communication estimate (op counts of the public IR) at an assumed "
            f"{ASSUMED_BYTES_PER_S / 2**20:.0f} MiB/s per session + {SESSION_SETUP_S:.0f} s setup"
        ),
    }


def measured(
    records: list[dict[str, Any]],
    per_endpoint: int,
    n_images: int,
    remaining: int,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per-endpoint and total rates from finished records and this process's run figures.

    ``run``: ``{"images": k, "elapsed_s": t, "sessions": j}`` finished by this process at j
    sessions at once (None: none ran).
    """
    eps: dict[str, dict[str, Any]] = {}
    for r in records:
        if "secure" not in r:
            continue
        e = eps.setdefault(r.get("endpoint") or "local", {"images": 0, "s": 0.0, "bytes": 0})
        e["images"] += 1
        e["s"] += float(r.get("wall_s") or 0.0)
        e["bytes"] += int(r.get("comm_bytes") or 0)
    per = {}
    for name, e in sorted(eps.items()):
        mean_s = e["s"] / e["images"]
        per[name] = {
            "images": e["images"],
            "mean_s": mean_s,
            "mean_bytes": e["bytes"] / e["images"],
            # projected, not measured: K sessions at once, each as fast as the measured ones
            "projected_images_per_min": per_endpoint * 60.0 / mean_s if mean_s > 0 else None,
        }
    out: dict[str, Any] = {"per_endpoint": per, "per_endpoint_sessions": per_endpoint}
    n = sum(e["images"] for e in eps.values())
    if n:
        mean_bytes = sum(e["bytes"] for e in eps.values()) / n
        out["dataset_bytes"] = mean_bytes * n_images
    if run and run.get("images") and run.get("elapsed_s", 0) > 0:
        rate = run["images"] * 60.0 / run["elapsed_s"]
        out["run"] = {**run, "images_per_min": rate}
        out["remaining_images"] = remaining
        out["remaining_s"] = remaining * 60.0 / rate
        out["dataset_s"] = n_images * 60.0 / rate
    return out


def _gib(x: float) -> str:
    return f"{x / 2**30:,.2f} GiB" if x >= 2**30 else f"{x / 2**20:,.1f} MiB"


def _dur(s: float) -> str:
    from .progress import hms

    return hms(s)


def describe(est: dict[str, Any] | None) -> str:
    """One line for the start of a run."""
    if est is None:
        return "projection: no 2PC cost estimate (simulate mode: nothing on the wire)"
    return (
        f"projection: {est['images']} images × {_gib(est['bytes_per_image'])} = "
        f"{_gib(est['total_bytes'])} on the wire, ≈ {_dur(est['total_wall_s'])} at "
        f"{est['sessions']} concurrent session(s) ({est['basis']})"
    )


def blocks(proj: dict[str, Any] | None) -> list[tuple]:
    """Report blocks of the projection section (markdown/HTML renderers of report.py)."""
    if not proj:
        return []
    b: list[tuple] = [("h2", "Cost projection (execution)")]
    est, meas = proj.get("estimate"), proj.get("measured") or {}
    if est:
        b.append(
            (
                "p",
                # all usable images (runner: len(ds.samples)), not only those this run ran:
                # "before the run" read as the line printed at start, which counts those
                f"Estimated for the whole dataset: {est['images']} images × "
                f"{_gib(est['bytes_per_image'])} = "
                f"**{_gib(est['total_bytes'])}**, ≈ **{_dur(est['total_wall_s'])}** at "
                f"{est['sessions']} concurrent session(s); {est['basis']}.",
            )
        )
    rows = [
        [name, str(e["images"]), f"{e['mean_s']:.2f} s", _gib(e["mean_bytes"])]
        for name, e in meas.get("per_endpoint", {}).items()
    ]
    if rows:
        b.append(("p", "Measured per endpoint (from the records of the images run):"))
        b.append(("table", ["endpoint", "images", "mean s/session", "mean bytes"], rows))
    if "run" in meas:
        r = meas["run"]
        at = f" at {r['sessions']} session(s) at once" if r.get("sessions") else ""
        b.append(
            (
                "p",
                f"Measured, this run: {r['images']} images in {_dur(r['elapsed_s'])}{at} "
                f"(**{r['images_per_min']:.1f} images/min** over all endpoints).",
            )
        )
    k = meas.get("per_endpoint_sessions")
    proj = [
        [name, f"{e['projected_images_per_min']:.1f}" if e["projected_images_per_min"] else "–"]
        for name, e in meas.get("per_endpoint", {}).items()
    ]
    if proj:
        ran = meas.get("run", {}).get("sessions")
        b.append(
            (
                "p",
                f"Projected, not measured: images/min per endpoint at {k} concurrent sessions "
                f"(--per-endpoint), {k} × 60 ÷ the mean seconds per session, as if {k} sessions "
                "at once each ran as fast as the measured ones"
                + (f"; this run had {ran} at once" if ran else "")
                + ".",
            )
        )
        b.append(("table", ["endpoint", f"projected img/min at {k} sessions"], proj))
    if "run" in meas:
        b.append(
            (
                "p",
                f"Projected, the whole dataset at this run's measured rate: "
                f"{_dur(meas['dataset_s'])}"
                + (
                    f", about {_gib(meas['dataset_bytes'])} on the wire"
                    if "dataset_bytes" in meas
                    else ""
                )
                + ".",
            )
        )
    return b
