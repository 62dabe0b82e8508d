"""The linear layers of DenseNet-121 at 224x224, shared by the linear-layer benchmarks."""

from __future__ import annotations


def densenet121_layers(fold_bn: bool = True) -> list[tuple]:
    """(kind, C_in, H, W, C_out, k, stride, pad) for every linear layer of DenseNet-121.
    With fold_bn, a BN right after a conv is folded (as the compiler does): 62 affine layers
    remain (norm1 of each dense layer, the 3 transitions, norm5); without, all 121 BNs."""
    L = [("conv", 3, 224, 224, 64, 7, 2, 3)]
    if not fold_bn:
        L.append(("affine", 64, 112, 112))
    c, hw = 64, 56
    for bi, nl in enumerate((6, 12, 24, 16)):
        for _ in range(nl):
            L.append(("affine", c, hw, hw))
            L.append(("conv", c, hw, hw, 128, 1, 1, 0))
            if not fold_bn:
                L.append(("affine", 128, hw, hw))
            L.append(("conv", 128, hw, hw, 32, 3, 1, 1))
            c += 32
        if bi < 3:
            L.append(("affine", c, hw, hw))
            L.append(("conv", c, hw, hw, c // 2, 1, 1, 0))
            c //= 2
            hw //= 2
    L.append(("affine", c, hw, hw))
    L.append(("gemm", c, 14))
    return L
