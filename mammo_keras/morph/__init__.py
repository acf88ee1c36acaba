"""Function-preserving transformations of trained networks (MorphHR, Wei et al. 2021, built on
Network Morphism and Net2Net).

Each operation takes a functional model and returns a new one that computes the same
function (tested to 1e-5 in float32) until it is trained:

- `deepen(model, after)`: an identity Conv2D / Dense and a P-activation after a layer;
- `deepen_kernel(model, layer)`: a convolution split into two (G = F2 * F1, exact);
- `widen(model, layer, width)`: more units, Net2Net copies or NetMorph zero outgoing weights;
- `grow_kernel(model, layer, size)`: a larger kernel, the old one zero-padded;
- `to_resolution(model, size)`: a front for k-times larger images, exactly area
  downsampling at first, with deepened and widened high-resolution layers.

MorphHR's paper is public as an abstract only; these operations follow the papers it builds
on, and the way they are combined for high resolution is this package's design.

    >>> from mammo_keras.models import build_classifier
    >>> model = build_classifier("baseline_cnn", input_shape=(64, 64, 1))
    >>> tuple(to_resolution(model, 128).input.shape)
    (None, 128, 128, 1)
"""

from mammo_keras.morph.deepen import deepen, deepen_kernel
from mammo_keras.morph.kernel import grow_kernel
from mammo_keras.morph.resolution import to_resolution
from mammo_keras.morph.widen import widen

__all__ = ["deepen", "deepen_kernel", "grow_kernel", "to_resolution", "widen"]
