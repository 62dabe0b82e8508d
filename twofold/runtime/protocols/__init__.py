"""SCI-style non-linear protocols over additive shares mod 2^ell (CrypTFlow2 §3-§5, SiRNN).

Every function is called by both parties with their own shares (uint64 arrays mod 2^ell, or
uint8 0/1 arrays for boolean shares) and returns their shares of the result; all are
vectorised over whole tensors and process large tensors in chunks.
"""

from .and_ import and_
from .arith import add_const, mul_const
from .b2a import b2a
from .drelu import drelu, msb
from .extend import extend, reduce
from .maxpool import max_, max_reduce, maxpool
from .millionaire import millionaire
from .mux import mux
from .relu import relu
from .relu_check import checked_relu
from .relu_trunc import fusable as relu_trunc_fusable
from .relu_trunc import relu_trunc
from .triples import bit_triples
from .trunc import trunc

__all__ = [
    "add_const",
    "and_",
    "b2a",
    "bit_triples",
    "checked_relu",
    "drelu",
    "extend",
    "max_",
    "max_reduce",
    "maxpool",
    "millionaire",
    "msb",
    "mul_const",
    "mux",
    "reduce",
    "relu",
    "relu_trunc",
    "relu_trunc_fusable",
    "trunc",
]
