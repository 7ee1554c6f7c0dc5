"""The hand-derived layer gradients against PyTorch autograd (float64): LeakyReLU, batch
normalisation in training mode (``torch.nn.functional.batch_norm``, running averages
included) and in evaluation mode, the l2 normalisation (``torch.nn.functional.normalize``,
its clamped region included), a batch-normalised LeakyReLU MLP, the same MLP with a second
reader of its first hidden layer (MTL's heads), and the auxiliary losses (``F.mse_loss``,
``F.cross_entropy``). Skipped without torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the autograd cross-check needs torch (pip install torch==2.13.0, CPU wheel)")
import torch.nn.functional as F  # noqa: E402

from pfd_ref import layers  # noqa: E402
from pfd_ref.losses import softmax_loss, squared_error_loss  # noqa: E402

RTOL, ATOL = 1e-12, 1e-14


def close(ours, theirs, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=rtol, atol=atol)


def leaf(array):
    return torch.tensor(array, requires_grad=True)


@pytest.mark.parametrize("seed", range(5))
def test_leaky_relu_backward_matches_autograd(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 5))
    x[0, :2] = 0.0  # the kink: both take the slope there
    d_y = rng.standard_normal((6, 5))
    t = leaf(x)
    F.leaky_relu(t, layers.LEAKY_RELU_SLOPE).backward(torch.tensor(d_y))
    close(layers.leaky_relu_forward(x), F.leaky_relu(torch.tensor(x), layers.LEAKY_RELU_SLOPE), rtol=0, atol=0)
    close(layers.leaky_relu_backward(d_y, x), t.grad, rtol=0, atol=0)


@pytest.mark.parametrize("n, m, seed", [(2, 3, 0), (5, 1, 1), (16, 4, 2), (64, 7, 3)])
def test_batch_norm_training_mode_matches_torch(n, m, seed):
    """Output, the three gradients and the running averages after one step (biased variance
    in the normalisation, unbiased in the running variance, momentum 0.1, eps 1e-5)."""
    rng = np.random.default_rng(seed)
    z, gamma, beta = 3 * rng.standard_normal((n, m)) + 1, 1 + 0.3 * rng.standard_normal(m), rng.standard_normal(m)
    running_mean, running_var, d_y = rng.standard_normal(m), rng.uniform(0.5, 2, m), rng.standard_normal((n, m))
    y, cache = layers.batch_norm_forward(z, gamma, beta)
    d_z, d_gamma, d_beta = layers.batch_norm_backward(d_y, cache)
    new_mean, new_var = layers.batch_norm_running_average(running_mean, running_var, cache)
    tz, tg, tb = leaf(z), leaf(gamma), leaf(beta)
    t_mean, t_var = torch.tensor(running_mean), torch.tensor(running_var)
    ty = F.batch_norm(tz, t_mean, t_var, tg, tb, training=True, momentum=layers.BATCH_NORM_MOMENTUM,
                      eps=layers.BATCH_NORM_EPS)
    ty.backward(torch.tensor(d_y))
    close(y, ty)
    for ours, theirs in [(d_z, tz.grad), (d_gamma, tg.grad), (d_beta, tb.grad), (new_mean, t_mean), (new_var, t_var)]:
        close(ours, theirs)


def test_batch_norm_evaluation_mode_is_torch_on_the_running_averages():
    rng = np.random.default_rng(4)
    x, weight = rng.standard_normal((9, 3)), rng.standard_normal((3, 4))
    gamma, beta, running_mean, running_var = (rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4),
                                              rng.uniform(0.1, 3, 4))
    folded_weight, folded_bias = layers.fold_batch_norm(weight, None, gamma, beta, running_mean, running_var)
    expected = F.batch_norm(torch.tensor(x @ weight), torch.tensor(running_mean), torch.tensor(running_var),
                            torch.tensor(gamma), torch.tensor(beta), training=False, eps=layers.BATCH_NORM_EPS)
    close(x @ folded_weight + folded_bias, expected)


@pytest.mark.parametrize("scale", [1.0, 1e-13, 0.0])
def test_l2_normalize_matches_torch_normalize_including_the_clamped_region(scale):
    """Rows of norm ~1 (unclamped), ~1e-13 (below eps 1e-12: divided by eps) and 0."""
    rng = np.random.default_rng(5)
    u, d_y = scale * rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    t = leaf(u)
    ty = F.normalize(t, dim=1, eps=layers.L2_NORM_EPS)
    ty.backward(torch.tensor(d_y))
    close(layers.l2_normalize_forward(u)[0], ty)
    close(layers.l2_normalize_backward(d_y, *layers.l2_normalize_forward(u)), t.grad)


@pytest.mark.parametrize("activation", layers.ACTIVATIONS)
@pytest.mark.parametrize("seed", range(3))
def test_batch_normalised_mlp_matches_autograd(activation, seed):
    """Every gradient of a 3-layer MLP with batch norm before each hidden activation, and the
    running averages torch renews in the same forward."""
    rng = np.random.default_rng(seed)
    sizes, n = (5, 8, 6, 2), 12
    x, d_out = rng.standard_normal((n, sizes[0])), rng.standard_normal((n, sizes[-1]))
    weights = [rng.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [None, None, rng.standard_normal(sizes[-1])]
    norms = [layers.BatchNormParams(1 + 0.2 * rng.standard_normal(b), 0.3 * rng.standard_normal(b),
                                    0.1 * rng.standard_normal(b), rng.uniform(0.5, 1.5, b)) for b in sizes[1:-1]]
    out, cache = layers.mlp_forward(x, weights, biases, activation, norms, training=True)
    d_x, d_weights, d_biases, d_norms = layers.mlp_backward(d_out, cache)

    tx, tws, tb = leaf(x), [leaf(w) for w in weights], leaf(biases[-1])
    tnorms = [(leaf(p.gamma), leaf(p.beta), torch.tensor(p.running_mean), torch.tensor(p.running_var)) for p in norms]
    h = tx
    for tw, (tg, tbeta, t_mean, t_var) in zip(tws[:-1], tnorms):
        h = F.batch_norm(h @ tw, t_mean, t_var, tg, tbeta, training=True, momentum=layers.BATCH_NORM_MOMENTUM,
                         eps=layers.BATCH_NORM_EPS)
        h = F.leaky_relu(h, layers.LEAKY_RELU_SLOPE) if activation == "leaky_relu" else torch.relu(h)
    t_out = h @ tws[-1] + tb
    t_out.backward(torch.tensor(d_out))
    close(out, t_out)
    close(d_x, tx.grad)
    for ours, theirs in zip(d_weights, tws):
        close(ours, theirs.grad)
    close(d_biases[-1], tb.grad)
    for (d_gamma, d_beta), (tg, tbeta, t_mean, t_var), norm, norm_cache in zip(d_norms, tnorms, norms, cache.norm_caches):
        close(d_gamma, tg.grad)
        close(d_beta, tbeta.grad)
        new_mean, new_var = layers.batch_norm_running_average(norm.running_mean, norm.running_var, norm_cache)
        close(new_mean, t_mean)
        close(new_var, t_var)


@pytest.mark.parametrize("seed", range(3))
def test_an_mlp_with_a_second_reader_of_its_first_hidden_layer_matches_autograd(seed):
    """``mlp_backward(d_out, cache, d_inputs={1: g})``: the gradient of
    ``<d_out, out> + <g, h_1>`` (the MTL heads' gradient arriving at ``h_1``)."""
    rng = np.random.default_rng(seed)
    sizes, n = (4, 6, 5, 1), 9
    x, d_out, g = rng.standard_normal((n, 4)), rng.standard_normal((n, 1)), rng.standard_normal((n, 6))
    weights = [rng.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.standard_normal(b) for b in sizes[1:]]
    out, cache = layers.mlp_forward(x, weights, biases, "leaky_relu", training=True)
    d_x, d_weights, d_biases, _ = layers.mlp_backward(d_out, cache, {1: g})
    tx, tws, tbs = leaf(x), [leaf(w) for w in weights], [leaf(b) for b in biases]
    h1 = F.leaky_relu(tx @ tws[0] + tbs[0], layers.LEAKY_RELU_SLOPE)
    t_out = F.leaky_relu(h1 @ tws[1] + tbs[1], layers.LEAKY_RELU_SLOPE) @ tws[2] + tbs[2]
    ((t_out * torch.tensor(d_out)).sum() + (h1 * torch.tensor(g)).sum()).backward()
    close(out, t_out)
    close(d_x, tx.grad)
    for ours, theirs in zip(d_weights + d_biases, tws + tbs):
        close(ours, theirs.grad)


@pytest.mark.parametrize("weighted", [False, True])
def test_the_auxiliary_losses_match_torch(weighted):
    rng = np.random.default_rng(7)
    n = 8
    weights = rng.uniform(0.5, 2, n) if weighted else None
    w = torch.tensor(np.ones(n) if weights is None else weights)
    predictions, targets = rng.standard_normal((n, 3)), rng.standard_normal((n, 3))
    tp = leaf(predictions)
    expected = (w * ((tp - torch.tensor(targets)) ** 2).sum(dim=1)).sum() / n
    expected.backward()
    loss, grad = squared_error_loss(predictions, targets, weights)
    close(loss, expected)
    close(grad, tp.grad)
    if not weighted:
        close(squared_error_loss(predictions[:, :1], targets[:, :1])[0],
              F.mse_loss(torch.tensor(predictions[:, :1]), torch.tensor(targets[:, :1])))
    logits, ids = 3 * rng.standard_normal((n, 4)), rng.integers(0, 4, n)
    tl = leaf(logits)
    expected = (w * F.cross_entropy(tl, torch.tensor(ids), reduction="none")).sum() / n
    expected.backward()
    loss, grad = softmax_loss(logits, ids, weights)
    close(loss, expected)
    close(grad, tl.grad)
