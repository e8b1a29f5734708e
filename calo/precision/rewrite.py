"""Exact inference rewrites of the generator graph, so that int8 pays.

Two rewrites, each exact up to float rounding (tests compare outputs against Keras):

* :func:`transposed_to_conv`: Neural Compressor quantizes Conv2D but leaves Conv2DTranspose in
  fp32, so each ``padding='same'`` Conv2DTranspose becomes an equivalent Conv2D: the sub-pixel
  form (a Conv2D with s*s*filters on the low-resolution grid, then ``depth_to_space``; fewest
  multiply-adds) or, where sub-pixel kernels would more than double the weights, zero
  insertion followed by a Conv2D with the flipped kernel.
* :func:`fold_batchnorm`: in this generator BatchNorm comes *after* LeakyReLU, so it cannot be
  folded into the convolution before it the usual way. Instead, with ``y = a * u + b`` the
  BatchNorm of ``u = LeakyReLU(z)``:

  - ``|a|`` moves into the convolution before it, because LeakyReLU is positively homogeneous:
    ``|a| * LeakyReLU(z) = LeakyReLU(|a| * z)``. This keeps the activations at the
    post-BatchNorm scale that the per-tensor int8 activation ranges are calibrated on;
  - ``sign(a)`` moves into the next convolution's kernel (its input channels);
  - ``b`` joins the next convolution's bias (``sum(kernel * b)``) when that convolution has
    ``padding='valid'``. With ``padding='same'`` it cannot: the zero padding sees no ``b``,
    so near the borders the exact term is a position-dependent map, not a per-channel bias.
    The shift then stays as a per-channel bias add in front of the convolution. Two exact
    alternatives were measured and dropped (docs/precision.md): an extra input
    channel that is constant inside the image (65 channels break oneDNN's and XNNPACK's
    channel blocking: 20-35 % slower) and a constant border map added after the convolution
    (as fast, but 2 MB more of fp32 constants in the int8 engine).

  The BatchNorm of each path's last block, whose consumer is a permutation, keeps ``sign(a)``
  and ``b`` (or disappears when they are trivial).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from calo.errors import CaloError
from calo.precision.graph import HOMOGENEOUS, Graph, Node, from_keras

__all__ = ["fold_batchnorm", "inference_graph", "optimize", "subpixel_kernel",
           "transposed_to_conv", "zero_insertion_phase"]


def optimize(graph: Graph) -> Graph:
    """Both rewrites, on a copy: the graph every backend starts from."""
    return fold_batchnorm(transposed_to_conv(graph))


def inference_graph(generator, rewrite: bool = True) -> Graph:
    """The Keras generator as a Graph, rewritten for inference unless ``rewrite`` is off."""
    graph = from_keras(generator)
    return optimize(graph) if rewrite else graph


# --- transposed convolution -> convolution ------------------------------------------------

# Sub-pixel kernels hold structural zeros: (2r+1)^2 s^2 taps for the k^2 real ones. Where that
# more than doubles the weights (stride 3 on 5x5: 3.2x) zero insertion is used instead: exact
# weights, more multiply-adds (here on the smallest layer, 2 % of the generator's).
MAX_SUBPIXEL_GROWTH = 2.0


def _square(kernel: NDArray, strides: tuple[int, int]) -> tuple[int, int]:
    if strides[0] != strides[1] or kernel.shape[0] != kernel.shape[1]:
        raise CaloError(f"a transposed convolution with strides {strides} and kernel "
                        f"{kernel.shape[:2]} cannot be rewritten: square kernels and equal "
                        "strides only")
    return kernel.shape[0], strides[0]


def _subpixel_taps(size: int, stride: int) -> tuple[dict[int, list[int]], int]:
    """For each sub-pixel phase r, the input offsets j that reach it, and the kernel reach.

    With TF's 'same' padding the transposed convolution computes, per axis,
    ``y[s*q + r] = sum_i x[i] K[s*(q - i) + r + p]`` with ``p = (k - s) // 2``; writing
    ``j = i - q`` this is a correlation of x with taps ``K[r + p - s*j]``.
    """
    pad = (size - stride) // 2
    offsets = {r: [j for j in range(-size, size + 1) if 0 <= r + pad - stride * j < size]
               for r in range(stride)}
    return offsets, max(abs(j) for js in offsets.values() for j in js)


def subpixel_kernel(kernel: NDArray, strides: tuple[int, int]) -> NDArray:
    """(kh, kw, cout, cin) transposed-convolution kernel -> (k', k', cin, s*s*cout) kernel of
    the 'same' Conv2D whose depth_to_space is the transposed convolution's output."""
    size, stride = _square(kernel, strides)
    pad = (size - stride) // 2
    offsets, reach = _subpixel_taps(size, stride)
    width = 2 * reach + 1  # symmetric and odd, so that 'same' padding is right
    _, _, cout, cin = kernel.shape
    sub = np.zeros((width, width, cin, stride * stride * cout), dtype=kernel.dtype)
    for rh in range(stride):
        for rw in range(stride):
            first = (rh * stride + rw) * cout  # depth_to_space channel order (DCR)
            for jh in offsets[rh]:
                for jw in offsets[rw]:
                    tap = kernel[rh + pad - stride * jh, rw + pad - stride * jw]  # (cout, cin)
                    sub[jh + reach, jw + reach, :, first : first + cout] = tap.T
    return sub


def zero_insertion_phase(size: int, stride: int) -> int:
    """Where each input lands in its stride x stride cell, so that a 'same' Conv2D with the
    flipped kernel reproduces the transposed convolution: ``y[o] = sum_m z[m] K[o + p + c - m]``
    for ``z[s*i + c] = x[i]``, whose taps are centred as 'same' wants when ``p + c = k // 2``."""
    phase = size // 2 - (size - stride) // 2
    if not 0 <= phase < stride:
        raise CaloError(f"no zero-insertion form for a {size}x{size} transposed convolution "
                        f"with stride {stride}")
    return phase


def _subpixel_growth(kernel: NDArray, strides: tuple[int, int]) -> float:
    size, stride = _square(kernel, strides)
    _, reach = _subpixel_taps(size, stride)
    return (2 * reach + 1) ** 2 * stride**2 / size**2


def transposed_to_conv(graph: Graph) -> Graph:
    """Every transposed convolution as a Conv2D, on a copy: the sub-pixel form (Conv2D with
    s*s*filters, then depth_to_space), or zero insertion then a Conv2D with the flipped kernel
    where sub-pixel kernels would more than double the weights."""
    graph = graph.copy()
    for node in [n for n in graph.nodes if n.kind == "conv_transpose"]:
        if _subpixel_growth(node.params["kernel"], node.params["strides"]) > MAX_SUBPIXEL_GROWTH:
            _to_zero_insertion(graph, node)
        else:
            _to_subpixel(graph, node)
    return graph


def _to_subpixel(graph: Graph, node: Node) -> None:
    """When the convolution feeds an activation alone, depth_to_space goes after it (both are
    per-channel, so they commute), leaving Conv2D + activation for the quantizer to fuse."""
    p = node.params
    kernel = subpixel_kernel(p["kernel"], p["strides"])
    conv = Node(node.name, "conv", node.inputs,
                {"kernel": kernel, "bias": np.zeros(kernel.shape[-1]), "strides": (1, 1),
                 "padding": "same", "input_shape": p["input_shape"]})
    graph.nodes[graph.nodes.index(node)] = conv
    after = conv
    consumers = graph.consumers(conv.name)
    if len(consumers) == 1 and consumers[0].kind in HOMOGENEOUS:
        after = consumers[0]
    _insert_after(graph, after, Node(f"{node.name}_depth_to_space", "depth_to_space",
                                     [after.name], {"block": p["strides"][0]}))


def _to_zero_insertion(graph: Graph, node: Node) -> None:
    p = node.params
    size, stride = _square(p["kernel"], p["strides"])
    height, width, channels = p["input_shape"]
    spread = Node(f"{node.name}_zero_insert", "zero_insert", node.inputs,
                  {"block": stride, "phase": zero_insertion_phase(size, stride)})
    kernel = np.transpose(p["kernel"][::-1, ::-1], (0, 1, 3, 2))  # flipped, (k, k, cin, cout)
    conv = Node(node.name, "conv", [spread.name],
                {"kernel": kernel, "bias": np.zeros(kernel.shape[-1]), "strides": (1, 1),
                 "padding": "same", "input_shape": (height * stride, width * stride, channels)})
    index = graph.nodes.index(node)
    graph.nodes[index : index + 1] = [spread, conv]


def _insert_after(graph: Graph, node: Node, new: Node) -> None:
    graph.redirect(node.name, new.name)  # before ``new``, which reads node, joins the graph
    graph.nodes.insert(graph.nodes.index(node) + 1, new)


# --- BatchNorm folding ---------------------------------------------------------------------


def fold_batchnorm(graph: Graph) -> Graph:
    """Every affine (BatchNorm) node folded into the convolutions around it, on a copy.

    What stays is a per-channel shift in front of a 'same' convolution (a bias add, in the int8
    graph part of the fp32 segment LeakyReLU needs anyway) and the affine of each path's last
    block, whose consumer is a permutation.
    """
    graph = graph.copy()
    for affine in [n for n in graph.nodes if n.kind == "affine"]:
        producer = _producer(graph, affine)
        if producer is not None:
            _fold_backward(affine, *producer)
        scale, shift = affine.params["scale"], affine.params["shift"]
        found = _conv_consumers(graph, affine)
        if found is not None:
            convs, shift_is_bias = found
            if shift_is_bias or not np.any(shift):
                for conv in convs:
                    _fold_into_next_conv(conv, scale, shift)
                graph.remove(affine)
                continue
            if np.all(np.abs(scale) == 1.0):
                _fold_sign_forward(affine, convs)
        if np.all(affine.params["scale"] == 1.0) and not np.any(affine.params["shift"]):
            graph.remove(affine)
    return graph


def _conv_consumers(graph: Graph, affine: Node) -> tuple[list[Node], bool] | None:
    """The convolutions ``affine`` feeds, directly or through zero insertion (which commutes
    with a per-channel scale), and whether its shift reaches them as a per-channel bias (only
    through 'valid' padding and no inserted zeros); None when anything else consumes it."""
    if graph.output == affine.name or not graph.consumers(affine.name):
        return None
    convs, shift_is_bias = [], True
    for consumer in graph.consumers(affine.name):
        if consumer.kind == "zero_insert" and _single_consumer(graph, consumer):
            shift_is_bias = False
            consumer = graph.consumers(consumer.name)[0]
        if consumer.kind != "conv":
            return None
        shift_is_bias &= consumer.params["padding"] == "valid"
        convs.append(consumer)
    return convs, shift_is_bias


def _single_consumer(graph: Graph, node: Node) -> bool:
    return len(graph.consumers(node.name)) == 1 and graph.output != node.name


def _producer(graph: Graph, affine: Node) -> tuple[Node, int] | None:
    """The convolution (and its depth_to_space block, 1 if none) that alone feeds ``affine``
    through one positively homogeneous activation; None when the chain is anything else."""
    node, block, activations = graph.node(affine.inputs[0]), 1, 0
    while node.kind in (*HOMOGENEOUS, "depth_to_space") and _single_consumer(graph, node):
        if node.kind == "depth_to_space":
            block *= node.params["block"]
        else:
            activations += 1
        node = graph.node(node.inputs[0])
    if node.kind != "conv" or activations != 1 or not _single_consumer(graph, node):
        return None
    return node, block


def _fold_backward(affine: Node, conv: Node, block: int) -> None:
    """Move |scale| into the convolution before the activation."""
    scale = affine.params["scale"]
    magnitude = np.tile(np.abs(scale), block * block)  # depth_to_space: channel r * C + c
    conv.params["kernel"] = conv.params["kernel"] * magnitude
    conv.params["bias"] = conv.params["bias"] * magnitude
    affine.params["scale"] = np.where(scale < 0, -1.0, 1.0)


def _fold_into_next_conv(conv: Node, scale: NDArray, shift: NDArray) -> None:
    """conv(scale * u + shift) = conv'(u) + bias', exact when the convolution never sees its
    zero padding as shifted: 'valid' padding, or no shift."""
    kernel = conv.params["kernel"]
    conv.params["bias"] = conv.params["bias"] + np.einsum("hwio,i->o", kernel, shift)
    conv.params["kernel"] = kernel * scale[:, None]


def _fold_sign_forward(affine: Node, consumers: list[Node]) -> None:
    """``s * u + b = s * (u + s * b)`` for signs s: the signs go into the consumers' kernels
    and a per-channel shift stays (the zero padding is still zero after the sign)."""
    scale = affine.params["scale"]
    for conv in consumers:
        conv.params["kernel"] = conv.params["kernel"] * scale[:, None]
    affine.params["shift"] = affine.params["shift"] * scale
    affine.params["scale"] = np.ones_like(scale)
