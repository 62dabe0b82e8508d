"""One BLAS thread per 2PC session (README: a session is one process using about one core).

numpy's OpenBLAS starts a thread per core for every matrix product, and its threads spin while
they wait. In a session the products are the HE linear layers' integer convolutions
(``linear/linear_he_coef.py``); the other core is the peer's, or the next session's, so the
second thread takes CPU from them and saves no time: DenseNet-121 224² on this 2-core machine
ran as fast with one thread (118.5 / 119.1 s against 118.5 / 125.2 s) with 24 s less server CPU
(docs/PERFORMANCE.md). A thread count the user set in the environment is left alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from threadpoolctl import threadpool_limits

#: Set by the user: then their choice stands.
USER_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS limited to one thread inside the block, unless the environment sets it."""
    if any(v in os.environ for v in USER_VARS):
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
