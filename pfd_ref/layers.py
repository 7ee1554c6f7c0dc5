"""Layers with hand-written gradients: each ``*_forward`` sits next to its ``*_backward``.

Layout (docs/conventions.md): a linear layer computes ``y = x @ W + b`` with ``W`` of shape
``(in, out)`` and ``b`` of shape ``(out,)``. Every function works in float32 or float64 and
returns the dtype it was given. The derivation of every backward formula is in
docs/derivations.md under the function's name.

Constants: ``LEAKY_RELU_SLOPE`` (0.01, PyTorch's ``nn.LeakyReLU`` default), ``BATCH_NORM_EPS``
(1e-5) and ``BATCH_NORM_MOMENTUM`` (0.1, both ``torch.nn.BatchNorm1d``'s defaults),
``L2_NORM_EPS`` (1e-12, ``torch.nn.functional.normalize``'s); docs/derivations.md says why.

These are the functions the models run, and they trust their inputs: pfd_ref validates
once, at its boundary (``Dataset`` for ids, labels and dense columns, ``Model.forward`` for
parameters and batches, the models' constructors for their options; docs/conventions.md,
"Errors"). Called on arrays of your own, check them first with ``pfd_ref.validation``. The
kernels they call (``pfd_ref.backend``) check the ids they index with, since a compiled loop
must not read outside a table.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pfd_ref import backend
from pfd_ref.sparse import RowSparseGrad
from pfd_ref.validation import check_choice

ACTIVATIONS = ("relu", "leaky_relu")  # the hidden-layer activations of an MLP
LEAKY_RELU_SLOPE = 0.01  # y = x for x > 0, else LEAKY_RELU_SLOPE * x (torch.nn.LeakyReLU's default)
BATCH_NORM_EPS = 1e-5  # x_hat = (z - mean) / sqrt(var + eps) (torch.nn.BatchNorm1d's default)
BATCH_NORM_MOMENTUM = 0.1  # running <- (1 - momentum) running + momentum batch (torch's convention)
L2_NORM_EPS = 1e-12  # u / max(||u||, eps) (torch.nn.functional.normalize's default)


# --------------------------------------------------------------------------- embedding


def embedding_forward(table: np.ndarray, ids: np.ndarray, out: np.ndarray | None = None, start: int = 0) -> np.ndarray:
    """Look up one row per example: ``out[i] = table[ids[i]]``.

    table : float32/float64 ``(V, d)``, C-contiguous; ids : int64 ``(n,)`` in ``[0, V)``.
    Returns ``(n, d)`` in the table's dtype; or, given ``out`` (a C-contiguous ``(n, D)``
    array of that dtype, e.g. a model's whole input row), writes the rows into its columns
    ``[start, start + d)`` and returns ``out`` (the ``gather_rows`` kernel; a copy).
    """
    return backend.gather_rows(table, ids, out, start)


def embedding_backward(d_out: np.ndarray, ids: np.ndarray, num_rows: int, start: int = 0,
                       width: int | None = None) -> RowSparseGrad:
    """Gradient wrt the table of ``embedding_forward``: ``d_table[v] = sum_{i : ids[i] = v} d_out[i]``.

    d_out : float32/float64 ``(n, d)``, the gradient wrt the output, or the gradient wrt a
    whole input row ``(n, D)`` of which the columns ``[start, start + width)`` are the
    output's (read in place); ids : int64 ``(n,)`` in ``[0, num_rows)``. Returns a
    ``RowSparseGrad`` of the ``(num_rows, d)`` table whose rows are the unique ids of the
    batch (the ``coalesce_rows`` kernel: each id's rows added left to right), values in the
    dtype of ``d_out``.
    """
    return RowSparseGrad(*backend.coalesce_rows(ids, d_out, num_rows, start, width), num_rows)


def pooled_embedding_forward(table: np.ndarray, values: np.ndarray, offsets: np.ndarray, pooling: str,
                             out: np.ndarray | None = None, start: int = 0) -> np.ndarray:
    """Pool the rows of a multi-id field, one CSR row per example.

    With ``R_i = values[offsets[i]:offsets[i+1]]`` and ``c_i = |R_i|``:
    ``out[i] = sum_{k in R_i} table[k]`` (``pooling="sum"``) or that sum divided by ``c_i``
    (``pooling="mean"``); an empty row (``c_i = 0``) pools to zeros. Repeated ids in a row
    count once per occurrence.

    table : float32/float64 ``(V, d)``, C-contiguous (the Numba kernel reads it in place and
    rejects a strided table instead of copying it on every call); values : int64 ``(nnz,)``
    in ``[0, V)``; offsets : int64 ``(n + 1,)``, ``offsets[0] = 0``, non-decreasing,
    ``offsets[n] = nnz``. Returns ``(n, d)`` in the table's dtype (the ``pool_rows`` kernel,
    in ``np.add.reduceat``'s summation order); ``out`` and ``start`` as in
    ``embedding_forward``.
    """
    return backend.pool_rows(table, values, offsets, pooling, out, start)


def pooled_embedding_backward(d_out: np.ndarray, values: np.ndarray, offsets: np.ndarray, num_rows: int,
                              pooling: str, start: int = 0, width: int | None = None) -> RowSparseGrad:
    """Gradient wrt the table of ``pooled_embedding_forward``.

    Each occurrence of id ``k`` in row ``i`` receives ``d_out[i]`` (sum) or ``d_out[i] / c_i``
    (mean), and occurrences of the same id add up:
    ``d_table[k] = sum_i m_ik d_out[i] * (1 or 1 / c_i)`` with ``m_ik`` the number of times
    ``k`` occurs in row ``i``. Empty rows contribute nothing.

    d_out : float32/float64 ``(n, d)``, or ``(n, D)`` read in the columns ``[start, start +
    width)`` as in ``embedding_backward``; values, offsets : the CSR ids as in the forward;
    num_rows : ``V``. Returns a ``RowSparseGrad`` of the ``(V, d)`` table, values in the dtype
    of ``d_out`` (the ``coalesce_pooled_rows`` kernel: each id's terms added left to right).
    """
    return RowSparseGrad(*backend.coalesce_pooled_rows(d_out, values, offsets, num_rows, pooling, start, width),
                         num_rows)


# --------------------------------------------------------------------------- linear and relu


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``y = x @ W + b``.

    x : ``(n, i)``; weight ``W`` : ``(i, o)``; bias ``b`` : ``(o,)``; one float dtype.
    Returns ``y`` of shape ``(n, o)`` in that dtype.
    """
    y = x @ weight
    y += bias  # in place: the same sums as ``x @ weight + bias``, one temporary less
    return y


def linear_backward(d_y: np.ndarray, x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``y = x @ W + b`` given ``d_y = dL/dy``:
    ``d_x = d_y @ W^T``, ``d_W = x^T @ d_y``, ``d_b = sum_n d_y[n, :]``.

    d_y : ``(n, o)``; x : ``(n, i)``; weight : ``(i, o)``; one float dtype.
    Returns ``(d_x (n, i), d_weight (i, o), d_bias (o,))`` in that dtype.

    With one output (``o = 1``, an MLP's last layer) ``d_y @ W^T`` is an outer product of
    single products, computed by broadcasting: BLAS's GEMM is 2-3x slower at that shape and
    gives the same numbers, each ``d_y[r] W[k]`` rounded once, except that it never returns
    ``-0.0`` (it adds the product to a zero accumulator); ``+ 0`` turns a ``-0.0`` into
    ``+0.0`` and changes nothing else, so the bits are BLAS's (tests/test_layers.py).
    """
    if d_y.shape[1] == 1:
        d_x = d_y * weight.T
        d_x += 0
    else:
        d_x = d_y @ weight.T
    return d_x, x.T @ d_y, d_y.sum(axis=0)


def relu_forward(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``y = max(x, 0)`` elementwise; any shape, same dtype. ``out``: None (a new array), or
    ``x`` itself to overwrite it with ``y`` (``mlp_forward``, on the pre-activations it owns).

    Computed as ``np.maximum(x, zeros)`` with a row of zeros broadcast over ``x``'s last
    axis: NumPy's loop against a scalar 0 is slower (25 us against 16 us at (1024, 64)
    float32) and gives the same bits, ``-0.0`` and NaNs included (tests/test_layers.py).
    """
    return np.maximum(x, np.zeros(x.shape[-1:], x.dtype), out=out)


def relu_backward(d_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``d_x = d_y * 1[x > 0]`` (the derivative at ``x = 0`` is taken as 0).

    d_y, x : the same shape and float dtype; returns ``d_x`` of that shape and dtype (the
    ``relu_backward`` kernel: ``d_y`` where ``x > 0``, else ``+0``).
    """
    return backend.relu_backward(d_y, x)


# --------------------------------------------------------------------------- leaky relu


def check_activation(activation) -> str:
    """Return ``activation``; ``ValueError`` naming it unless one of ``ACTIVATIONS``."""
    return check_choice("activation", activation, ACTIVATIONS)


def negative_slope(activation: str) -> float:
    """The slope of a hidden activation for negative inputs: 0 for ``"relu"``,
    ``LEAKY_RELU_SLOPE`` for ``"leaky_relu"``."""
    return LEAKY_RELU_SLOPE if check_activation(activation) == "leaky_relu" else 0.0


def leaky_relu_forward(x: np.ndarray, negative_slope: float = LEAKY_RELU_SLOPE, out: np.ndarray | None = None) -> np.ndarray:
    """``y = x`` where ``x > 0``, else ``negative_slope * x``, elementwise.

    x : float32/float64, any shape; negative_slope : in ``(0, 1)`` (default
    ``LEAKY_RELU_SLOPE`` = 0.01), applied in ``x``'s dtype (a Python float is cast to it);
    out : None (a new array), or ``x`` itself to overwrite it with ``y``.
    Returns ``y`` of that shape and dtype, computed as ``max(x, negative_slope x)``, which for
    ``0 < negative_slope < 1`` is the same number element for element.
    """
    return np.maximum(x, x * negative_slope, out=out)


def leaky_relu_backward(d_y: np.ndarray, x: np.ndarray, negative_slope: float = LEAKY_RELU_SLOPE) -> np.ndarray:
    """``d_x = d_y`` where ``x > 0``, else ``negative_slope * d_y`` (at ``x = 0`` the
    derivative is taken as ``negative_slope``, as PyTorch does).

    d_y, x : the same shape and float dtype; returns ``d_x`` of that shape and dtype (the
    ``leaky_relu_backward`` kernel).
    """
    return backend.leaky_relu_backward(d_y, x, negative_slope)


# --------------------------------------------------------------------------- batch normalisation


class BatchNormCache(NamedTuple):
    """What ``batch_norm_backward`` and ``batch_norm_running_average`` need from
    ``batch_norm_forward``: ``x_hat (n, m)``, ``inv_std = 1 / sqrt(var + eps)`` ``(m,)``,
    ``gamma (m,)``, the batch ``mean (m,)`` and biased variance ``var (m,)``."""

    x_hat: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray
    mean: np.ndarray
    var: np.ndarray


def batch_norm_forward(z: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                       eps: float = BATCH_NORM_EPS) -> tuple[np.ndarray, BatchNormCache]:
    """Batch normalisation with the statistics of the batch (training mode), per column ``c``:

        mean_c = (1/n) sum_i z[i, c];   var_c = (1/n) sum_i (z[i, c] - mean_c)^2   (biased)
        x_hat[i, c] = (z[i, c] - mean_c) / sqrt(var_c + eps);   y[i, c] = gamma_c x_hat[i, c] + beta_c

    z : ``(n, m)`` with ``n >= 2``; gamma, beta : ``(m,)``; one float dtype; eps > 0.
    Returns ``(y (n, m), cache)``; the cache holds the batch mean and biased variance for
    ``batch_norm_running_average``.
    """
    mean = z.mean(axis=0)
    centered = z - mean
    var = np.mean(centered * centered, axis=0)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = centered * inv_std
    return x_hat * gamma + beta, BatchNormCache(x_hat, inv_std, gamma, mean, var)


def batch_norm_backward(d_y: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``batch_norm_forward`` given ``d_y = dL/dy``, per column (sums over rows):

        d_beta = sum_i d_y[i];   d_gamma = sum_i d_y[i] x_hat[i]
        d_z[i] = gamma inv_std / n * (n d_y[i] - d_beta - x_hat[i] d_gamma)

    (the batch mean and variance depend on every row, hence the two sums; docs/derivations.md).
    d_y : ``(n, m)`` in the forward's dtype. Returns ``(d_z (n, m), d_gamma (m,), d_beta (m,))``.
    """
    n = d_y.shape[0]
    d_beta = d_y.sum(axis=0)
    d_gamma = (d_y * cache.x_hat).sum(axis=0)
    d_z = (cache.gamma * cache.inv_std / n) * (n * d_y - d_beta - cache.x_hat * d_gamma)
    return d_z, d_gamma, d_beta


def batch_norm_running_average(running_mean: np.ndarray, running_var: np.ndarray, cache: BatchNormCache,
                               momentum: float = BATCH_NORM_MOMENTUM) -> tuple[np.ndarray, np.ndarray]:
    """The running averages after one training-mode forward (PyTorch's rule):

        running_mean <- (1 - momentum) running_mean + momentum mean
        running_var  <- (1 - momentum) running_var  + momentum var n / (n - 1)   (unbiased)

    running_mean, running_var : ``(m,)`` in the cache's dtype; cache : of a batch of ``n >= 2``
    rows. Returns the new ``(running_mean, running_var)`` (new arrays; the inputs are unchanged).
    """
    n = cache.x_hat.shape[0]
    unbiased_var = cache.var * (n / (n - 1))
    return (1 - momentum) * running_mean + momentum * cache.mean, (1 - momentum) * running_var + momentum * unbiased_var


def fold_batch_norm(weight: np.ndarray, bias: np.ndarray | None, gamma: np.ndarray, beta: np.ndarray,
                    running_mean: np.ndarray, running_var: np.ndarray,
                    eps: float = BATCH_NORM_EPS) -> tuple[np.ndarray, np.ndarray]:
    """A linear layer followed by batch normalisation with its running averages (evaluation
    mode), as one linear layer: ``BN(x @ W + b) = x @ W' + b'`` with

        scale = gamma / sqrt(running_var + eps)                              (m,)
        W' = W * scale (each column c times scale_c);   b' = (b - running_mean) * scale + beta

    weight : ``(i, m)``; bias : ``(m,)`` or None (no bias: ``b = 0``); gamma, beta,
    running_mean, running_var (>= 0) : ``(m,)``; one float dtype. Returns ``(W' (i, m), b' (m,))``.
    """
    scale = gamma / np.sqrt(running_var + eps)
    centered_bias = -running_mean if bias is None else bias - running_mean
    return weight * scale, centered_bias * scale + beta


# --------------------------------------------------------------------------- l2 normalisation


def l2_normalize_forward(u: np.ndarray, eps: float = L2_NORM_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Each row divided by its Euclidean norm, clamped from below by ``eps``:

        r_i = ||u_i|| = sqrt(sum_k u[i, k]^2);   u_hat[i] = u[i] / max(r_i, eps)

    u : ``(n, k)`` float32/float64; eps > 0 (default ``L2_NORM_EPS`` = 1e-12, as
    ``torch.nn.functional.normalize``). Returns ``(u_hat (n, k), r (n,))`` in ``u``'s dtype.
    """
    norms = np.sqrt(np.einsum("ik,ik->i", u, u))
    return u / np.maximum(norms, eps)[:, None], norms


def l2_normalize_backward(d_u_hat: np.ndarray, u_hat: np.ndarray, norms: np.ndarray,
                          eps: float = L2_NORM_EPS) -> np.ndarray:
    """Gradient of ``l2_normalize_forward`` given ``d_u_hat = dL/du_hat``, row by row:

        r_i >= eps:  d_u[i] = (d_u_hat[i] - u_hat[i] <d_u_hat[i], u_hat[i]>) / r_i
        r_i <  eps:  d_u[i] = d_u_hat[i] / eps          (clamped: the divisor is the constant eps)

    (at ``r_i = eps`` the unclamped branch is taken, as PyTorch's ``clamp_min`` does).
    d_u_hat : ``(n, k)``; u_hat, norms : ``(u_hat (n, k), r (n,))`` returned by
    ``l2_normalize_forward``; one float dtype. Returns ``d_u (n, k)`` in that dtype.
    """
    projection = np.einsum("ik,ik->i", d_u_hat, u_hat)
    projection[norms < eps] = 0  # clamped rows: no derivative through the norm
    return (d_u_hat - projection[:, None] * u_hat) / np.maximum(norms, eps)[:, None]


# --------------------------------------------------------------------------- mlp


class BatchNormParams(NamedTuple):
    """The batch normalisation of one hidden layer: ``gamma``, ``beta`` (trained) and the
    buffers ``running_mean``, ``running_var`` (running averages, not trained); ``(m,)`` each."""

    gamma: np.ndarray
    beta: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray


class MLPCache(NamedTuple):
    """What ``mlp_backward`` needs from ``mlp_forward``.

    inputs[j] : ``h_j``, the input of layer ``j`` (``h_0 = x``), shape ``(n, in_j)``; for
    ``j >= 1`` the hidden activation ``act(a_{j-1})``, which also gives the activation's
    derivative (``act(a) > 0`` exactly where ``a > 0``, NaN included, for ReLU and LeakyReLU),
    so the pre-activations ``a_j`` are not kept (the activation overwrites them in place).
    weights[j] : ``W_j``, shape ``(in_j, out_j)``.
    negative_slope : the activation's slope for negative inputs (0: ReLU).
    norm_caches : one ``BatchNormCache`` per hidden layer (training mode with batch
    normalisation), else empty.
    folded : True for an evaluation-mode forward with batch normalisation (it ran on folded
    weights, which are not the parameters: such a cache has no backward).
    """

    inputs: list
    weights: list
    negative_slope: float = 0.0
    norm_caches: tuple | list = ()
    folded: bool = False


def mlp_forward(x: np.ndarray, weights: list, biases: list, activation: str = "relu", norms: list | None = None,
                training: bool = False) -> tuple[np.ndarray, MLPCache]:
    """A multi-layer perceptron with an activation after every layer but the last (a linear
    output), optionally with batch normalisation before each hidden activation:

        h_0 = x
        a_j = h_j @ W_j + b_j                  (no batch normalisation)
        a_j = BN_j(h_j @ W_j)                  (with it; the layer has no bias)
        h_{j+1} = act(a_j) for j < L;  out = a_L = h_L @ W_L + b_L

    ``act`` is ReLU (``activation="relu"``) or LeakyReLU with slope ``LEAKY_RELU_SLOPE``
    (``"leaky_relu"``). ``BN_j`` uses the batch's statistics when ``training``
    (``batch_norm_forward``; the cache then holds them for ``batch_norm_running_average``),
    and the running averages otherwise, folded into the layer (``fold_batch_norm``).

    x : ``(n, in)``; weights : ``[W_0 (in, h_1), ..., W_L (h_L, out)]``; biases :
    ``[b_0 (h_1,), ..., b_L (out,)]``, with ``b_j`` None for ``j < L`` when ``norms`` is given;
    norms : None, or one ``BatchNormParams`` per hidden layer; all of one float dtype.
    Returns ``(out (n, out), cache)`` with ``cache`` an ``MLPCache`` for ``mlp_backward``.
    """
    slope = negative_slope(activation)
    folded = norms is not None and not training
    if folded:
        weights, biases = list(weights), list(biases)
        for j, norm in enumerate(norms):
            weights[j], biases[j] = fold_batch_norm(weights[j], biases[j], *norm, BATCH_NORM_EPS)
        norms = None
    h, inputs, norm_caches = x, [], []
    last = len(weights) - 1
    for j, (weight, bias) in enumerate(zip(weights, biases)):
        inputs.append(h)
        if norms is not None and j < last:
            a, norm_cache = batch_norm_forward(h @ weight, norms[j].gamma, norms[j].beta, BATCH_NORM_EPS)
            norm_caches.append(norm_cache)
        else:
            a = linear_forward(h, weight, bias)
        # a is this function's own array (a product plus the bias, or batch normalisation's
        # output), so the activation overwrites it: one (n, out_j) array less per hidden layer
        h = a if j == last else relu_forward(a, out=a) if slope == 0 else leaky_relu_forward(a, slope, out=a)
    return h, MLPCache(inputs, list(weights), slope, norm_caches, folded)


def mlp_backward(d_out: np.ndarray, cache: MLPCache, d_inputs: dict | None = None) -> tuple[np.ndarray, list, list, list]:
    """Backward recursion of ``mlp_forward`` given ``d_out = dL/dout`` (``act'`` is the
    activation's derivative: ``1[a > 0]`` for ReLU, ``1`` or the slope for LeakyReLU):

        d_a_L = d_out
        d_W_j = h_j^T @ d_z_j;  d_h_j = d_z_j @ W_j^T (+ d_inputs[j]);  d_b_j = sum_n d_z_j[n, :]
            with d_z_j = d_a_j, or, with batch normalisation (j < L),
            (d_z_j, d_gamma_j, d_beta_j) = batch_norm_backward(d_a_j)
        d_a_{j-1} = d_h_j * act'(a_{j-1})            (j = L, ..., 1);   d_x = d_h_0

    d_out : ``(n, out)`` in the dtype of the forward pass, whose cache must come from a
    training-mode forward when the MLP has batch normalisation. d_inputs : None, or
    ``{j: (n, in_j)}``, the gradient that other readers of the hidden input ``h_j`` send it
    (the auxiliary heads of the MTL control read ``h_1``); it is added to ``d_h_j``.
    Returns ``(d_x (n, in), [d_W_0, ..., d_W_L], [d_b_0, ..., d_b_L], d_norms)`` in that dtype:
    ``d_b_j`` is None and ``d_norms[j] = (d_gamma_j, d_beta_j)`` for a batch-normalised
    layer; ``d_norms`` is empty without batch normalisation. ``ValueError`` naming the cache
    when it comes from an evaluation-mode forward with batch normalisation (folded weights).
    """
    if cache.folded:
        raise ValueError("cache: backward needs a forward with training=True (batch normalisation uses the "
                         "batch's statistics there; evaluation mode runs on folded weights)")
    num_layers = len(cache.weights)
    d_weights, d_biases = [None] * num_layers, [None] * num_layers
    d_norms = [None] * len(cache.norm_caches)
    d_a = d_out
    for j in reversed(range(num_layers)):
        if j < len(cache.norm_caches):
            d_z, d_gamma, d_beta = batch_norm_backward(d_a, cache.norm_caches[j])
            d_norms[j] = (d_gamma, d_beta)
            d_h, d_weights[j] = d_z @ cache.weights[j].T, cache.inputs[j].T @ d_z
        else:
            d_h, d_weights[j], d_biases[j] = linear_backward(d_a, cache.inputs[j], cache.weights[j])
        if d_inputs is not None and j in d_inputs:
            d_h = d_h + d_inputs[j]
        if j > 0:  # act'(a_{j-1}) read from h_j = act(a_{j-1}): h_j > 0 exactly where a_{j-1} > 0
            h, slope = cache.inputs[j], cache.negative_slope
            d_a = relu_backward(d_h, h) if slope == 0 else leaky_relu_backward(d_h, h, slope)
    return d_h, d_weights, d_biases, d_norms


# --------------------------------------------------------------------------- inner product


def inner_product_forward(u: np.ndarray, v: np.ndarray, scale: float = 1.0, bias: np.ndarray | None = None) -> np.ndarray:
    """The two-tower score: ``logits[i] = S <u_i, v_i> + b = S sum_k u[i, k] v[i, k] + b``.

    u, v : ``(n, k)`` of one float dtype; scale ``S`` : a Python float (1: the plain inner
    product, exactly); bias ``b`` : ``(1,)`` in that dtype, or None for no bias. Returns
    ``(n,)`` in that dtype.
    """
    logits = scale * np.einsum("ik,ik->i", u, v)
    return logits if bias is None else logits + bias[0]


def inner_product_backward(d_logits: np.ndarray, u: np.ndarray, v: np.ndarray, scale: float = 1.0,
                           bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of ``logits[i] = S <u_i, v_i> + b`` given ``d_logits = dL/dlogits``:
    ``d_u[i] = (S d_logits[i]) v[i]``, ``d_v[i] = (S d_logits[i]) u[i]``, ``d_b = sum_i d_logits[i]``.

    d_logits : ``(n,)``; u, v : ``(n, k)``; scale : as in the forward; bias : ``(1,)`` or
    None; one float dtype. Returns ``(d_u (n, k), d_v (n, k), d_bias (1,) or None)``.
    """
    scaled = scale * d_logits
    d_bias = None if bias is None else np.array([d_logits.sum()], dtype=d_logits.dtype)
    return scaled[:, None] * v, scaled[:, None] * u, d_bias
