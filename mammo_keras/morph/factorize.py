"""NetMorph's kernel factorisation G = F2 * F1, solved exactly by least squares (NumPy).

Keras convolutions are cross-correlations with kernels laid out (kh, kw, in, out). Running
F1 (k1 x k1, C_in -> C) and then F2 (k2 x k2, C -> C_out) on an image is one convolution with
the kernel

    G[u, i, o] = sum_b sum_m F2[b, m, o] F1[u - b, i, m],    u, b 2-D offsets,

of size k1 + k2 - 1. With one factor fixed (random), G is linear in the other:
- fixing F1, each output channel o is C k2^2 unknowns against C_in K^2 equations, exact when
  C k2^2 >= C_in K^2;
- fixing F2, each input channel i is C k1^2 unknowns against C_out K^2 equations, exact when
  C k1^2 >= C_out K^2.
Network Morphism (Wei et al. 2016) states the same condition as
max(C C_in k1^2, C_out C k2^2) >= C_out C_in K^2.
"""

from __future__ import annotations

import math

import numpy as np

from mammo_keras.errors import UserError

RESIDUAL_TOLERANCE = 1e-5  # relative: the largest error of G over its largest entry


def compose(f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
    """The single kernel (k1 + k2 - 1, ..., C_in, C_out) of F1 then F2 (both valid, stride 1).

    Args:
        f1: (k1h, k1w, C_in, C) kernel.
        f2: (k2h, k2w, C, C_out) kernel.
    """
    (a_h, a_w), (b_h, b_w) = f1.shape[:2], f2.shape[:2]
    g = np.zeros((a_h + b_h - 1, a_w + b_w - 1, f1.shape[2], f2.shape[3]))
    for b0 in range(b_h):
        for b1 in range(b_w):
            g[b0:b0 + a_h, b1:b1 + a_w] += np.einsum("xyim,mo->xyio", f1, f2[b0, b1])
    return g


def smallest_channels(kernel_shape: tuple, k1: tuple, k2: tuple) -> int:
    """The fewest middle channels C for which a factorisation of a (K, K, C_in, C_out) kernel
    into k1 then k2 is exact."""
    k_area = kernel_shape[0] * kernel_shape[1]
    c_in, c_out = kernel_shape[2], kernel_shape[3]
    return min(math.ceil(c_in * k_area / (k2[0] * k2[1])),
               math.ceil(c_out * k_area / (k1[0] * k1[1])))


def factorize(kernel: np.ndarray, k1: tuple, k2: tuple, channels: int,
              rng: np.random.Generator, where: str = "kernel") -> tuple[np.ndarray, np.ndarray]:
    """F1 (k1, C_in -> channels) and F2 (k2, channels -> C_out) with compose(F1, F2) == kernel.

    One factor is drawn He-normal, the other solved by least squares; which one is solved is
    the side whose condition holds (the first of F2, F1). `where` names the layer in errors.

    Raises:
        UserError: the sizes do not add up, or no exact solution exists for `channels`.
    """
    kernel = np.asarray(kernel, np.float64)
    k_h, k_w, c_in, c_out = kernel.shape
    if (k1[0] + k2[0] - 1, k1[1] + k2[1] - 1) != (k_h, k_w):
        raise UserError(f"deepen_kernel: {where} has a {k_h}x{k_w} kernel; kernel sizes "
                        f"{k1[0]}x{k1[1]} then {k2[0]}x{k2[1]} make "
                        f"{k1[0] + k2[0] - 1}x{k1[1] + k2[1] - 1} (k1 + k2 - 1 must equal it)")
    area, area1, area2 = k_h * k_w, k1[0] * k1[1], k2[0] * k2[1]
    if channels * area2 >= c_in * area:  # F1 random, F2 solved per output channel
        f1 = rng.normal(0.0, math.sqrt(2.0 / (area1 * c_in)), (*k1, c_in, channels))
        f2 = _solve_second(kernel, f1, k2)
    elif channels * area1 >= c_out * area:  # F2 random, F1 solved per input channel
        f2 = rng.normal(0.0, math.sqrt(2.0 / (area2 * channels)), (*k2, channels, c_out))
        f1 = _solve_first(kernel, f2, k1)
    else:
        raise UserError(
            f"deepen_kernel: {where} ({k_h}x{k_w}, {c_in} -> {c_out} channels) has no exact "
            f"factorisation into {k1[0]}x{k1[1]} then {k2[0]}x{k2[1]} through {channels} "
            f"channels: it needs max(C*{c_in}*{area1}, {c_out}*C*{area2}) >= "
            f"{c_out}*{c_in}*{area}, i.e. C >= {smallest_channels(kernel.shape, k1, k2)}")
    residual = np.abs(compose(f1, f2) - kernel).max()
    scale = max(np.abs(kernel).max(), 1e-12)
    if residual > RESIDUAL_TOLERANCE * scale:
        raise UserError(f"deepen_kernel: {where}: the least-squares factorisation is off by "
                        f"{residual:.2e} (rank-deficient system); try more channels")
    return f1, f2


def _solve_second(kernel: np.ndarray, f1: np.ndarray, k2: tuple) -> np.ndarray:
    """F2 with compose(f1, F2) == kernel in the least-squares sense."""
    k_h, k_w, c_in, c_out = kernel.shape
    a_h, a_w, _, channels = f1.shape
    # system[u, i, b, m] = f1[u - b, i, m]
    system = np.zeros((k_h, k_w, c_in, k2[0], k2[1], channels))
    for b0 in range(k2[0]):
        for b1 in range(k2[1]):
            system[b0:b0 + a_h, b1:b1 + a_w, :, b0, b1, :] = f1
    solution, *_ = np.linalg.lstsq(system.reshape(k_h * k_w * c_in, -1),
                                   kernel.reshape(-1, c_out), rcond=None)
    return solution.reshape(k2[0], k2[1], channels, c_out)


def _solve_first(kernel: np.ndarray, f2: np.ndarray, k1: tuple) -> np.ndarray:
    """F1 with compose(F1, f2) == kernel in the least-squares sense."""
    k_h, k_w, c_in, c_out = kernel.shape
    b_h, b_w, channels, _ = f2.shape
    # system[u, o, a, m] = f2[u - a, m, o]
    system = np.zeros((k_h, k_w, c_out, k1[0], k1[1], channels))
    f2_by_output = f2.transpose(0, 1, 3, 2)
    for a0 in range(k1[0]):
        for a1 in range(k1[1]):
            system[a0:a0 + b_h, a1:a1 + b_w, :, a0, a1, :] = f2_by_output
    target = kernel.transpose(0, 1, 3, 2).reshape(-1, c_in)
    solution, *_ = np.linalg.lstsq(system.reshape(k_h * k_w * c_out, -1), target, rcond=None)
    return solution.reshape(k1[0], k1[1], channels, c_in).transpose(0, 1, 3, 2)
