"""KK13 receiver: the codeword columns built from bit planes equal the bit transpose of the
codewords (the definition), for every code size and a padded tail."""

from __future__ import annotations

import numpy as np
import pytest

from twofold.runtime.ot.kk13 import CODEWORDS, codeword_columns
from twofold.runtime.ot.transpose import transpose_bits


@pytest.mark.parametrize("nmsg", [2, 3, 4, 16, 17, 100, 255, 256])
@pytest.mark.parametrize(("n", "npad"), [(64, 64), (1000, 1024), (5, 64)])
def test_codeword_columns_are_the_transposed_codewords(nmsg: int, n: int, npad: int) -> None:
    choices = np.random.default_rng(nmsg * n).integers(0, nmsg, n).astype(np.uint8)
    cw = np.zeros((npad, CODEWORDS.shape[1]), np.uint8)
    cw[:n] = CODEWORDS[choices]
    assert np.array_equal(codeword_columns(choices, npad, nmsg), transpose_bits(cw))
