"""The sign flip of a BatchNorm folded forward (``sign_affine``): exact in 2PC for every sign,
shape and ring, wire size ℓ − 1 bits per element, and the server's signs never reach the
client's computation."""

from __future__ import annotations

import numpy as np
import pytest

from twofold.runtime.linear import linear as L  # noqa: N812
from twofold.runtime.linear import linear_ot_cot as cot
from twofold.runtime.prg import PRG
from twofold.runtime.session import run_parties

RNG = np.random.default_rng(16)  # public test data only


def _run(x: np.ndarray, sign: np.ndarray, add: np.ndarray | None, ell: int):  # noqa: ANN202
    m = np.uint64((1 << ell) - 1)
    xs = PRG().ring(x.shape, ell)
    xc = (x - xs) & m
    ys, yc = run_parties(
        lambda p: L.sign_affine(p, xs, sign, add, ell=ell),
        lambda p: L.sign_affine(p, xc, None, None, ell=ell),
        timeout=120,
    )
    return (ys + yc) & m


def _ref(x: np.ndarray, sign: np.ndarray, add: np.ndarray | None, ell: int) -> np.ndarray:
    shp = (1, -1) + (1,) * (x.ndim - 2)
    y = x.astype(object) * sign.astype(object).reshape(shp)
    if add is not None:
        y = y + add.astype(object).reshape(shp)
    return (y % (1 << ell)).astype(np.uint64)


@pytest.mark.parametrize("ell", [2, 31, 39, 64])
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (1, 7, 13), (3, 2)])
def test_exact(ell: int, shape: tuple[int, ...]) -> None:
    x = PRG().ring(shape, ell)
    x.reshape(-1)[:2] = [0, (1 << ell) - 1]
    sign = RNG.choice([-1, 1], shape[1])
    sign[0] = -1
    add = RNG.integers(-(1 << 20), 1 << 20, shape[1])
    assert np.array_equal(_run(x, sign, add, ell), _ref(x, sign, add, ell))


def test_exact_across_chunks(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(cot, "CHUNK", 8)
    x = PRG().ring((2, 6, 5, 7), 39)
    sign = np.array([1, -1, -1, 1, -1, 1])
    assert np.array_equal(_run(x, sign, None, 39), _ref(x, sign, None, 39))


@pytest.mark.parametrize("ell", [32, 39])
def test_one_field_of_ell_minus_one_bits(ell: int) -> None:
    lay = cot.layout(ell, 1, 2)
    assert lay.words == (((1, 0),),) and lay.bytes_per_element == -(-(ell - 1) // 8)
    assert cot.layout(ell).bytes_per_element > 8 * lay.bytes_per_element


def test_refuses_non_signs() -> None:
    x = np.zeros((1, 2, 3), np.uint64)
    with pytest.raises(ValueError, match="sign must be 2 values"):
        run_parties(
            lambda p: L.sign_affine(p, x, np.array([1, 2]), None, ell=32),
            lambda p: L.sign_affine(p, x, None, None, ell=32),
            timeout=30,
        )
