"""A 2PC session runs numpy's BLAS on one thread unless the user set a thread count."""

from threadpoolctl import threadpool_info

from twofold.runtime import threads


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_one_blas_thread_in_a_session(monkeypatch):
    for v in threads.USER_VARS:
        monkeypatch.delenv(v, raising=False)
    before = _blas_threads()
    assert before, "numpy links a BLAS"
    with threads.one_blas_thread():
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before


def test_a_thread_count_the_user_set_stands(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    before = _blas_threads()
    with threads.one_blas_thread():
        assert _blas_threads() == before
