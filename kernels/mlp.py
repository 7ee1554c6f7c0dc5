"""MLP forward pass for scoring: ReLU or LeakyReLU hidden layers, a linear output, optional sigmoid.

Twins (readable NumPy references): ``pfd_ref.twins.mlp_scores`` and ``mlp_scores_split``; the
scalar ``sigmoid`` below has ``pfd_ref.losses.sigmoid`` as its twin.

``mlp_scores_split`` serves fine ranking: the MLP over one user's candidates, with the user
block's share of the first layer computed once per request.

Two paths, chosen by the batch size ``n``:

* ``n < BLAS_MIN_ROWS``: ``_mlp_rows``, one Numba call per layer (``_layer_rows``: the
  product in plain loops, then the bias and the activation). For a single row the work is
  a vector-matrix product per layer, bound by reading the weights; NumPy's ``np.matmul``
  plus the elementwise calls per layer (and PyTorch's eager dispatch) cost more than the
  arithmetic, which this path avoids. One call per layer rather than one for the whole
  pass: a kernel taking the layers as a tuple compiled once per depth (about 0.5 s each);
  the two extra calls of a 3-layer pass cost about 3 us at batch 1 (docs/performance.md,
  "Cold start").
* otherwise: BLAS GEMM (``np.matmul`` into preallocated buffers) for each layer, on
  ``ROW_BLOCK`` rows at a time so that the hidden activations stay in cache, followed by
  ``_bias_activate``, which adds the bias, applies the activation and counts non-finite
  pre-activations in one pass. GEMM uses BLAS's own threads; the elementwise pass is
  serial (it is ``1/width`` of the work, and threads started between two GEMMs would
  compete with BLAS's still-spinning threads).

Non-finite values: every pre-activation is checked before its activation (a ReLU would map
``-inf`` to 0 and hide it). A NaN or infinity in ``x``, a weight or a bias always makes
some pre-activation of its layer non-finite (``0 * inf`` is NaN), so the check is complete;
the error then names the argument that holds it.

Rounding: the row path sums ``(x_0 W_0j + x_1 W_1j + ...) + b_j`` in that order; BLAS sums
the product in its own blocked order. A row's output may therefore differ in the last bits between a
batch below and above ``BLAS_MIN_ROWS``; each call is deterministic.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._common import check_float_layout, raise_nonfinite
from .checks import check_scalar

BLAS_MIN_ROWS = 16
ROW_BLOCK = 1024

ACT_RELU, ACT_LINEAR, ACT_SIGMOID, ACT_LEAKY_RELU = 0, 1, 2, 3


@njit(cache=True)
def sigmoid(z, one):
    """``s(z) = 1 / (1 + exp(-z))`` of a scalar, without overflow for either sign of z (``one``
    fixes the dtype). Its twin is ``pfd_ref.losses.sigmoid`` (the same formula on arrays; the
    two agree within 4 ulp, libm's ``exp`` against NumPy's)."""
    if z >= 0:
        return one / (one + np.exp(-z))
    e = np.exp(z)
    return e / (one + e)


@njit(cache=True)
def _bias_activate(y, b, activation, slope):
    """y[r, j] = act(y[r, j] + b[j]) in place; return the count of non-finite y + b.
    ``slope`` (LeakyReLU only) is rounded to y's dtype, and the product computed in it."""
    nonfinite = 0
    zero, one = y.dtype.type(0), y.dtype.type(1)  # typed constants: arithmetic stays in y's dtype
    typed_slope = y.dtype.type(slope)
    for r in range(y.shape[0]):
        for j in range(y.shape[1]):
            v = y[r, j] + b[j]
            nonfinite += not np.isfinite(v)
            if activation == ACT_RELU:
                v = v if v > 0 else zero
            elif activation == ACT_LEAKY_RELU:
                v = v if v > 0 else typed_slope * v
            elif activation == ACT_SIGMOID:
                v = sigmoid(v, one)
            y[r, j] = v
    return nonfinite


@njit(cache=True)
def _layer_rows(h, w, b, activation, slope, y):
    """One layer for a few rows: ``y = act(h @ w + b)``; return the count of non-finite
    pre-activations (``_bias_activate``).

    The product sums ``y[r, j] = h[r, 0] w[0, j] + h[r, 1] w[1, j] + ...`` in order of ``i``,
    four rows of ``w`` per pass over ``y[r]`` (the sum stays in order of ``i``), so ``w`` is
    read from L2 once and ``y`` is loaded and stored once per four rows.
    """
    n_in, n_out = w.shape
    y[:] = 0
    i = 0
    while i + 4 <= n_in:
        for r in range(h.shape[0]):
            h0, h1, h2, h3 = h[r, i], h[r, i + 1], h[r, i + 2], h[r, i + 3]
            yr = y[r]
            for j in range(n_out):
                yr[j] = yr[j] + h0 * w[i, j] + h1 * w[i + 1, j] + h2 * w[i + 2, j] + h3 * w[i + 3, j]
        i += 4
    for i in range(i, n_in):
        for r in range(h.shape[0]):
            hi = h[r, i]
            yr = y[r]
            for j in range(n_out):
                yr[j] += hi * w[i, j]
    return _bias_activate(y, b, activation, slope)


def _check_mlp(x, weights, biases):
    """Validate and return ``(x, weights tuple, biases tuple)``.

    Batch-1 scoring takes ~20 us, so the common case is checked in one tight expression per
    layer; only a failing layer goes through ``_explain_layer`` for the message.
    """
    x = check_float_layout("x", x, ndims=(2,), copy=True)
    if not isinstance(weights, (list, tuple)) or not isinstance(biases, (list, tuple)):
        raise ValueError("weights: expected a list of arrays (and biases a list of the same length)")
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(f"weights: expected one or more layers and as many biases, got {len(weights)} weights and {len(biases)} biases")
    dtype, width = x.dtype, x.shape[1]
    for layer, (w, b) in enumerate(zip(weights, biases)):
        if not (
            isinstance(w, np.ndarray) and isinstance(b, np.ndarray)
            and w.dtype == dtype and b.dtype == dtype
            and w.ndim == 2 and w.shape[0] == width and b.shape == (w.shape[1],)
            and w.flags.c_contiguous and b.flags.c_contiguous
        ):
            _explain_layer(layer, w, b, width, dtype)
        width = w.shape[1]
    return x, tuple(weights), tuple(biases)


def _explain_layer(layer, w, b, width, dtype):
    check_float_layout(f"weights[{layer}]", w, ndims=(2,), dtype=dtype)
    check_float_layout(f"biases[{layer}]", b, ndims=(1,), dtype=dtype)
    if w.shape[0] != width:
        raise ValueError(f"weights[{layer}]: expected {width} input rows, got shape {w.shape}")
    raise ValueError(f"biases[{layer}]: expected shape ({w.shape[1]},), got {b.shape}")


def mlp_scores(x: np.ndarray, weights, biases, sigmoid: bool = False, negative_slope: float = 0.0) -> np.ndarray:
    """Forward pass of an MLP for scoring.

    ``h_0 = x``; ``h_{l+1} = act(h_l @ W_l + b_l)`` for ``l < L - 1``; output
    ``z = h_{L-1} @ W_{L-1} + b_{L-1}``, or ``sigmoid(z) = 1 / (1 + exp(-z))`` when
    ``sigmoid``. ``act`` is ReLU (``max(z, 0)``) when ``negative_slope`` is 0, else
    LeakyReLU (``z if z > 0 else negative_slope * z``, the slope rounded to x's dtype and
    the product computed in it).

    x : float32/float64 ``(n, i)``, copied if not C-contiguous (``n`` may be 0);
    weights : list of L >= 1 arrays, ``W_l`` of shape ``(in_l, out_l)`` with ``in_0 = i``
    and ``in_{l+1} = out_l``; biases : list of L arrays ``(out_l,)``. Weights and biases
    have ``x``'s dtype and must be C-contiguous (else rejected).
    negative_slope : 0 (ReLU) or in ``(0, 1)`` (LeakyReLU).
    Returns ``(n, out_{L-1})`` in ``x``'s dtype. Raises ``ValueError`` naming the argument
    that holds a NaN or infinity, or ``x`` if a pre-activation overflowed.
    """
    x, weights, biases = _check_mlp(x, weights, biases)
    suspects = {"x": x, **{f"weights[{l}]": w for l, w in enumerate(weights)},
                **{f"biases[{l}]": b for l, b in enumerate(biases)}}
    return _forward(x, weights, biases, sigmoid, negative_slope, suspects)


def mlp_scores_split(user_x: np.ndarray, x: np.ndarray, user_weight: np.ndarray, weights, biases,
                     sigmoid: bool = False, negative_slope: float = 0.0) -> np.ndarray:
    """``mlp_scores`` for one user and ``n`` candidates whose MLP input is the user's block
    followed by each candidate's block, with the user block's share of the first layer
    computed once per request instead of once per candidate.

    The plain forward pass over ``[u, x_c]`` (the user's features ``u`` repeated on every
    candidate row) has the first layer ``h_1 = act([u, x_c] @ [W_u; W_0] + b_0)``, with
    ``[W_u; W_0]`` the first weight matrix split by rows into the user block ``W_u`` and the
    candidate block ``W_0``. Since ``[u, x_c] @ [W_u; W_0] = u @ W_u + x_c @ W_0``, this
    computes ``a = u @ W_u + b_0`` once, then ``h_1 = act(x_c @ W_0 + a)`` and the other
    layers exactly as ``mlp_scores(x, weights, [a, b_1, ...], sigmoid, negative_slope)``. It
    equals the plain forward up to rounding (the sum over the first layer's inputs is split
    in two).

    user_x : float32/float64 ``(i_u,)`` (copied if not C-contiguous); x : ``(n, i_c)``, the
    candidates' blocks; user_weight : ``(i_u, out_0)`` C-contiguous; weights, biases,
    sigmoid, negative_slope : as in ``mlp_scores``, ``weights[0]`` of shape ``(i_c, out_0)``;
    one dtype throughout. Returns ``(n, out_{L-1})``. Raises ``ValueError`` naming the
    argument that holds a NaN or infinity (``user_x``, ``user_weight`` and ``biases[0]``
    included).
    """
    x, weights, biases = _check_mlp(x, weights, biases)
    user_x = check_float_layout("user_x", user_x, ndims=(1,), dtype=x.dtype, copy=True)
    user_weight = check_float_layout("user_weight", user_weight, ndims=(2,), dtype=x.dtype)
    if user_weight.shape != (user_x.shape[0], weights[0].shape[1]):
        raise ValueError(f"user_weight: expected shape {(user_x.shape[0], weights[0].shape[1])} (len(user_x) rows, "
                         f"the first layer's {weights[0].shape[1]} outputs), got {user_weight.shape}")
    shared = np.empty((1, weights[0].shape[1]), x.dtype)
    if _layer_rows(user_x[None, :], user_weight, biases[0], ACT_LINEAR, 0.0, shared):
        raise_nonfinite({"user_x": user_x, "user_weight": user_weight, "biases[0]": biases[0]}, "the user block's product")
    suspects = {"x": x, "user_x": user_x, "user_weight": user_weight,
                **{f"weights[{l}]": w for l, w in enumerate(weights)}, **{f"biases[{l}]": b for l, b in enumerate(biases)}}
    return _forward(x, weights, (shared[0],) + biases[1:], sigmoid, negative_slope, suspects)


def _forward(x, weights, biases, sigmoid, negative_slope, suspects) -> np.ndarray:
    """The checked arrays' forward pass: the row path below ``BLAS_MIN_ROWS`` rows, else BLAS;
    on a non-finite pre-activation, the error names the first of ``suspects`` at fault."""
    hidden_activation = ACT_RELU if negative_slope == 0 else _leaky_relu_activation(negative_slope)
    slope = float(negative_slope)
    out = np.empty((x.shape[0], weights[-1].shape[1]), x.dtype)
    output_activation = ACT_SIGMOID if sigmoid else ACT_LINEAR
    path = _mlp_rows if x.shape[0] < BLAS_MIN_ROWS else _mlp_blas
    if path(x, weights, biases, hidden_activation, slope, output_activation, out):
        raise_nonfinite(suspects, "a pre-activation")
    return out


def _leaky_relu_activation(negative_slope) -> int:
    """``ACT_LEAKY_RELU``, once ``negative_slope`` is checked to lie in (0, 1) (ValueError otherwise)."""
    check_scalar("negative_slope", negative_slope, float, low=0, high=1, low_open=True, high_open=True)
    return ACT_LEAKY_RELU


def _mlp_rows(x, weights, biases, hidden_activation, slope, output_activation, out) -> int:
    """The row path: one ``_layer_rows`` call per layer (the hidden activations of a few rows
    are small and stay in cache); return the non-finite count."""
    nonfinite = 0
    h = x
    for layer, (w, b) in enumerate(zip(weights, biases)):
        last = layer == len(weights) - 1
        y = out if last else np.empty((x.shape[0], w.shape[1]), x.dtype)
        nonfinite += _layer_rows(h, w, b, output_activation if last else hidden_activation, slope, y)
        h = y
    return nonfinite


def _mlp_blas(x, weights, biases, hidden_activation, slope, output_activation, out) -> int:
    block = min(ROW_BLOCK, x.shape[0])
    buffers = [np.empty((block, w.shape[1]), x.dtype) for w in weights[:-1]]
    nonfinite = 0
    for r0 in range(0, x.shape[0], block):
        r1 = min(r0 + block, x.shape[0])
        h = x[r0:r1]
        for layer, (w, b) in enumerate(zip(weights, biases)):
            last = layer == len(weights) - 1
            y = out[r0:r1] if last else buffers[layer][: r1 - r0]
            with np.errstate(invalid="ignore", over="ignore"):  # counted just below
                np.matmul(h, w, out=y)
            nonfinite += _bias_activate(y, b, output_activation if last else hidden_activation, slope)
            h = y
    return nonfinite


def warm_up(dtype) -> None:
    """Run the kernels of this module once on tiny inputs of ``dtype`` (compiles them)."""
    x = np.ones((2, 2), dtype)
    _layer_rows(x, x, x[0], ACT_LEAKY_RELU, 0.01, np.empty((2, 2), dtype))
    _bias_activate(x.copy(), x[0], ACT_RELU, 0.0)
