"""Progress bar per layer and the final cost table of a 2PC run (time, bytes, rounds, RSS).

The cost document (``cost_doc``) is what ``out.json`` carries under ``cost``; the table is its
human form. Numbers are this party's own view: bytes it sent and received, rounds it started.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from .executor import CostLog, LayerCost, peak_rss_mb

KINDS = ("linear", "relu", "check", "truncation", "pooling", "local", "io")


class Progress:
    """A one-line bar redrawn after each layer on a terminal; on a pipe, a line per 10%."""

    def __init__(self, label: str, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self._last_decile = -1

    def __call__(self, done: int, total: int, name: str, op: str) -> None:
        if not self.enabled:
            return
        total = max(total, done, 1)
        frac = done / total
        el = time.perf_counter() - self.t0
        if self.tty:
            bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
            line = f"\r{self.label} [{bar}] {done}/{total} {el:7.1f} s  {op:<9} {name[:40]:<40}"
            self.stream.write(line)
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()
        else:
            decile = int(10 * frac)
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(
                    f"{self.label}: {done}/{total} layers ({100 * frac:.0f}%), {el:.1f} s, "
                    f"at {op} %{name}\n"
                )
                self.stream.flush()


def _row(lc: LayerCost) -> dict[str, Any]:
    return {
        "name": lc.name,
        "op": lc.op,
        "s": round(lc.seconds, 6),
        "bytes_sent": lc.bytes_sent,
        "bytes_recv": lc.bytes_recv,
        "rounds": lc.rounds,
    }


def cost_doc(log: CostLog, seconds: float, chan: Any, setup: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN401
    """This party's costs: totals (including handshake and OT setup), per kind and per layer."""
    return {
        "s": round(seconds, 6),
        "bytes_sent": chan.bytes_sent,
        "bytes_recv": chan.bytes_recv,
        "rounds": chan.rounds,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "setup": setup,
        "by_kind": {k: _row(v) for k, v in log.by_kind().items()},
        "layers": [_row(lc) for lc in log.layers],
    }


def _mb(n: int) -> str:
    return f"{n / 2**20:10.2f}"


def format_table(doc: dict[str, Any], role: str, max_layers: int = 40) -> str:
    """The final cost table: per layer (all, or the costliest ``max_layers``), per kind, total."""
    head = f"{'layer':<34} {'op':<10} {'time s':>9} {'sent MiB':>10} {'recv MiB':>10} {'rounds':>7}"
    lines = [f"cost ({role}):", head, "-" * len(head)]
    layers = doc["layers"]
    shown = layers
    if len(layers) > max_layers:
        top = sorted(layers, key=lambda r: -r["s"])[:max_layers]
        keep = {id(r) for r in top}
        shown = [r for r in layers if id(r) in keep]
        lines.append(f"(the {max_layers} slowest of {len(layers)} layers; all are in out.json)")
    for r in shown:
        lines.append(
            f"{r['name'][:34]:<34} {r['op']:<10} {r['s']:9.3f} {_mb(r['bytes_sent'])} "
            f"{_mb(r['bytes_recv'])} {r['rounds']:7d}"
        )
    lines.append("-" * len(head))
    for k in KINDS:
        r = doc["by_kind"].get(k)
        if r:
            lines.append(
                f"{'[' + k + ']':<34} {'':<10} {r['s']:9.3f} {_mb(r['bytes_sent'])} "
                f"{_mb(r['bytes_recv'])} {r['rounds']:7d}"
            )
    st = doc.get("setup", {})
    if st:
        lines.append(
            f"{'[handshake + OT setup]':<34} {'':<10} {st.get('s', 0):9.3f} "
            f"{_mb(st.get('bytes_sent', 0))} {_mb(st.get('bytes_recv', 0))} "
            f"{st.get('rounds', 0):7d}"
        )
    lines.append(
        f"{'TOTAL':<34} {'':<10} {doc['s']:9.3f} {_mb(doc['bytes_sent'])} "
        f"{_mb(doc['bytes_recv'])} {doc['rounds']:7d}"
    )
    lines.append(f"peak RSS ({role}): {doc['peak_rss_mb']:.1f} MiB")
    return "\n".join(lines)
