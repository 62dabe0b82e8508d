"""The execution side of ``twofold eval`` without processes: endpoint lists, the pool's
rotation and backoff, transient-vs-deterministic classification, the retrying driver loop,
progress lines and the cost projection."""

import errno
import math
from concurrent.futures import Future

import pytest

from twofold.eval.dispatch import DispatchError, attempt, dispatch
from twofold.eval.endpoints import (
    EndpointError,
    EndpointPool,
    NoEndpointError,
    endpoint_pins,
    is_transient,
    parse_endpoints,
)
from twofold.eval.progress import Progress, hms
from twofold.eval.projection import blocks, describe, measured
from twofold.runtime.errors import PeerError, ProgramMismatchError


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_parse_endpoints_lists_files_and_errors(tmp_path):
    f = tmp_path / "eps.txt"
    f.write_text(f"# vendor A\nhostA:7000 sha256:{'ab' * 32}\n\n[::1]:7001  # v6\n")
    got = parse_endpoints(["a:1,b:2", "c:3", f"@{f}"])
    assert got == ["a:1", "b:2", "c:3", "hostA:7000", "[::1]:7001"]
    assert endpoint_pins(["a:1", f"@{f}"]) == {"hostA:7000": "sha256:" + "ab" * 32}
    assert parse_endpoints(None) == [] and parse_endpoints("x:9") == ["x:9"]
    with pytest.raises(EndpointError, match="expected HOST:PORT, got 'nope'"):
        parse_endpoints("a:1,nope")
    with pytest.raises(EndpointError, match="expected HOST:PORT, got 'h:70000'"):
        parse_endpoints("h:70000")
    with pytest.raises(EndpointError, match="a:1 more than once"):
        parse_endpoints(["a:1", "a:1"])
    with pytest.raises(EndpointError, match="cannot read the endpoint file"):
        parse_endpoints(f"@{tmp_path / 'missing'}")
    (tmp_path / "bad").write_text("ok:1\nbroken\n")
    with pytest.raises(EndpointError, match=r"bad:2: expected HOST:PORT, got 'broken'"):
        parse_endpoints(f"@{tmp_path / 'bad'}")
    (tmp_path / "pin").write_text("ok:1 md5:00\n")
    with pytest.raises(EndpointError, match=r"pin:1: expected HOST:PORT \[sha256:FINGERPRINT\]"):
        parse_endpoints(f"@{tmp_path / 'pin'}")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(EndpointError, match="lists no HOST:PORT"):
        parse_endpoints(f"@{tmp_path / 'empty'}")


def test_pool_limits_rotates_backs_off_and_fails_fast():
    clock = Clock()
    pool = EndpointPool(["a:1", "b:2"], per_endpoint=2, base_backoff=1.0, clock=clock)
    got = [pool.acquire() for _ in range(5)]
    assert [g[0] for g in got[:4]] == ["a:1", "b:2", "a:1", "b:2"] and got[4] is None
    pool.release("b:2", got[1][1], ok=False, error="refused")  # b out of the rotation for 1 s
    assert pool.down() == ["b:2"] and pool.wake_in() == 1.0
    pool.release("b:2", got[3][1], ok=False, error="reset")  # its other session: 2 s now
    assert pool.wake_in() == 2.0
    pool.release("a:1", got[0][1], ok=True)
    again = pool.acquire()
    assert again[0] == "a:1" and pool.acquire() is None  # b still backing off
    clock.t += 2.0
    probe = pool.acquire()
    assert probe[0] == "b:2" and pool.acquire() is None  # one probe at a time while recovering
    pool.release("b:2", probe[1], ok=False, error="refused again")
    assert pool.wake_in() == 4.0  # doubled
    clock.t += 4.0
    probe = pool.acquire()
    pool.release("b:2", probe[1], ok=True)  # back: full concurrency again
    assert pool.state["b:2"].failures == 0 and pool.state["b:2"].failed == 3
    for ep, t in (got[2], again):
        pool.release(ep, t, ok=True)
    assert all(s.busy == 0 for s in pool.state.values())
    for _ in range(3):  # every endpoint fails max_failures times in a row: no vendor answers
        clock.t += 100
        for ep, t in [pool.acquire(), pool.acquire()]:
            pool.release(ep, t, ok=False, error=f"{ep} is down")
    with pytest.raises(NoEndpointError, match="no vendor endpoint answers: a:1: a:1 is down; b:2"):
        pool.acquire()
    with pytest.raises(EndpointError, match="--per-endpoint must be at least 1"):
        EndpointPool(["a:1"], per_endpoint=0)


def test_transient_is_the_connection_never_the_input():
    def wrapped(inner: BaseException) -> ValueError:
        try:
            try:
                raise inner
            except Exception as e:
                raise PeerError(f"cannot connect to h:1: {e}") from e
        except PeerError:
            try:
                raise ValueError("two-party run with h:1 failed") from None
            except ValueError as outer:
                return outer

    assert is_transient(wrapped(ConnectionRefusedError(errno.ECONNREFUSED, "refused")))
    assert is_transient(wrapped(ConnectionResetError(errno.ECONNRESET, "reset")))
    assert is_transient(wrapped(TimeoutError("timed out")))
    assert is_transient(PeerError("peer closed the connection (x: got 0 of 8 bytes)"))
    assert not is_transient(wrapped(OSError(errno.ENOENT, "no such host file")))
    assert not is_transient(ProgramMismatchError("program hash differs"))
    assert not is_transient(PeerError("malformed frame header from peer (length 99)"))
    assert not is_transient(PeerError("the server at h:1 presented certificate sha256:00, not..."))
    assert not is_transient(PeerError("the server at h:1 refused the session: bad token"))
    assert not is_transient(OverflowError("fixed-point overflow at %y"))
    assert not is_transient(ValueError("input x.png has values in [0, 300], expected [0, 1]"))


def _done(value) -> Future:
    f = Future()
    f.set_result(value)
    return f


def test_dispatch_retries_only_transient_failures():
    class S:
        def __init__(self, i: int) -> None:
            self.id, self.line = f"x{i}", i

    script = {"x0": ["transient", "ok"], "x1": ["ok"], "x2": ["fatal"], "x3": ["ok"]}
    calls, recs, msgs = [], [], []

    def submit(s, ep):
        calls.append((s.id, ep))
        kind = script[s.id].pop(0)
        return _done((kind, {"id": s.id}) if kind == "ok" else (kind, f"{s.id} {kind}"))

    pool = EndpointPool(["a:1", "b:2"], per_endpoint=1, base_backoff=0.01)
    run = dict(cap=2, pool=pool, retries=2, say=msgs.append)
    with pytest.raises(DispatchError, match="x2 fatal"):
        dispatch([S(i) for i in range(4)], submit, on_record=lambda r, e: recs.append(r), **run)
    assert [c[0] for c in calls].count("x0") == 2 and calls[0][1] != calls[2][1]  # other endpoint
    assert any("retrying x0 (attempt 2)" in m for m in msgs)
    assert "x3" not in {r["id"] for r in recs}  # nothing submitted after a fatal outcome

    always = lambda s, ep: _done(("transient", "reset"))  # noqa: E731
    pool = EndpointPool(["a:1", "b:2", "c:3", "d:4"], per_endpoint=1, base_backoff=0.001)
    with pytest.raises(DispatchError, match="x0: 3 attempts failed, the last: reset"):
        dispatch([S(0)], always, on_record=recs.append, **{**run, "pool": pool})
    pool = EndpointPool(["a:1"], per_endpoint=1, base_backoff=0.001)
    with pytest.raises(DispatchError, match="no vendor endpoint answers: a:1: reset"):
        dispatch([S(0)], always, on_record=recs.append, **{**run, "pool": pool, "retries": 9})


def test_attempt_classifies_instead_of_raising():
    def refuse():
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    assert attempt(lambda: {"id": 1}) == ("ok", {"id": 1})
    assert attempt(refuse)[0] == "transient"
    assert attempt(lambda: 1 / 0) == ("fatal", "ZeroDivisionError: division by zero")


def test_progress_rate_eta_and_projection():
    clock = Clock()
    p = Progress(4, width=8, clock=clock)
    clock.t += 30
    line = p.step("x0: ok")
    assert line == "[1/4] ##......  25% 2.0 img/min, ETA 1:30 · x0: ok"
    assert hms(3725) == "1:02:05" and hms(59.6) == "1:00"
    recs = [
        {"id": "a", "secure": [0], "endpoint": "h:1", "wall_s": 2.0, "comm_bytes": 100},
        {"id": "b", "secure": [0], "endpoint": "h:1", "wall_s": 4.0, "comm_bytes": 300},
        {"id": "c", "secure": [0], "endpoint": "h:2", "wall_s": 1.0, "comm_bytes": 200},
        {"id": "d", "error": "unreadable image"},
    ]
    m = measured(recs, 2, 10, 7, {"images": 3, "elapsed_s": 60.0, "sessions": 1})
    assert m["per_endpoint"]["h:1"] == {
        "images": 2, "mean_s": 3.0, "mean_bytes": 200.0, "projected_images_per_min": 40.0,
    }  # fmt: skip
    assert m["run"]["images_per_min"] == 3.0 and m["remaining_s"] == 140.0
    assert m["dataset_bytes"] == 2000 and math.isclose(m["dataset_s"], 200.0)
    md = blocks({"estimate": None, "measured": m})
    assert md[0] == ("h2", "Cost projection (execution)")
    # the rate at 2 sessions of a run that had 1 is an extrapolation: apart, and labelled so
    (meas,) = [b for b in md if b[0] == "table" and "mean s/session" in b[1]]
    assert not any("img/min" in h for h in meas[1])
    (proj,) = [b for b in md if b[0] == "table" and "mean s/session" not in b[1]]
    assert proj[1] == ["endpoint", "projected img/min at 2 sessions"] and proj[2][0][1] == "40.0"
    text = [b[1] for b in md if b[0] == "p"]
    assert any(x.startswith("Projected, not measured") and "this run had 1 at once" in x
               for x in text)  # fmt: skip
    assert any(x.startswith("Measured, this run") and "3.0 images/min" in x for x in text)
    assert any(x.startswith("Projected, the whole dataset") for x in text)
    assert "no 2PC cost estimate" in describe(None)
    # the estimate is the whole dataset's (10 images), whatever this run ran (3): it is not
    # labelled as the one printed before the run, which counts only the images to run
    est = {"images": 10, "bytes_per_image": 2**20, "total_bytes": 10 * 2**20,
           "total_wall_s": 20.0, "sessions": 2, "basis": "b"}  # fmt: skip
    (first,) = [b[1] for b in blocks({"estimate": est, "measured": m}) if b[0] == "p"][:1]
    assert first.startswith("Estimated for the whole dataset: 10 images"), first


def test_ctrl_c_ends_the_images_in_flight_and_records_only_finished_ones(monkeypatch):
    """Ctrl-C while images are in flight: nothing new starts, ``stop`` ends them (before, the
    loop waited for their sessions to finish: minutes at 224²), an image that had finished is
    recorded, the ended ones are not (whatever their sessions gave: --resume runs them), the
    message names them, and the interrupt goes on (the CLI: "interrupted", exit 130)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from twofold.eval import dispatch as dispatch_mod

    class S:
        def __init__(self, i: int) -> None:
            self.id, self.line = f"x{i}", i

    real_wait, futures = dispatch_mod.wait, {}
    ended, recs, msgs = threading.Event(), [], []

    def wait_then_ctrl_c(fs, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        real_wait([futures["x0"]])  # x0 has finished; x1 and x2 are still running
        raise KeyboardInterrupt

    monkeypatch.setattr(dispatch_mod, "wait", wait_then_ctrl_c)
    with ThreadPoolExecutor(3) as ex:

        def submit(s, ep):  # noqa: ANN001, ANN202
            if s.id == "x0":
                futures[s.id] = ex.submit(lambda: ("ok", {"id": "x0"}))
            else:  # a session that runs until it is ended, then fails (a cut connection)
                futures[s.id] = ex.submit(
                    lambda: (ended.wait(60), ("fatal", "peer closed the connection"))[1]
                )
            return futures[s.id]

        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            dispatch([S(i) for i in range(6)], submit, cap=3, pool=None, retries=0,
                     on_record=lambda r, e: recs.append(r["id"]), say=msgs.append,
                     stop=ended.set)  # fmt: skip
        took = time.monotonic() - t0
    assert ended.is_set() and took < 5, took
    assert list(futures) == ["x0", "x1", "x2"]  # nothing new after the Ctrl-C
    assert recs == ["x0"]  # finished before the stop: recorded; the ended two: not
    assert msgs == [
        "interrupted: ended the 2 image(s) in flight (x1, x2); they are not recorded, "
        "--resume runs them"
    ]
