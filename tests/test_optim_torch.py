"""pfd_ref's optimizers against PyTorch's (torch 2.13, CPU): Adagrad dense and on sparse
gradients, to the last bit wherever torch's own primitives round correctly; the learning-rate
warm-up against torch's LambdaLR and LinearLR.

Two primitives of torch's CPU kernels round differently from NumPy (docs/optim.md): its
vectorised multiply-adds may be fused (one rounding: ``addcmul`` in the dense Adagrad update,
the ``p + alpha x`` of a sparse update), and its float64 ``sqrt`` (MKL) is one unit in the
last place off for about 1% of inputs. The step-by-step tests below start both sides from
the same state at every step, compute every candidate result exactly (``fractions``), and
require that every bit where pfd_ref and torch differ is explained by one of these two
primitives: a different operation order or formula would leave unexplained differences.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch comparison needs torch (pip install torch==2.13.0, CPU wheel)")

from pfd_ref.layers import embedding_backward  # noqa: E402
from pfd_ref.optim import SGD, Adagrad, Adam, warmup_lr  # noqa: E402
from pfd_ref.sparse import RowSparseGrad  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning")
LR = 0.05


def _explained_by_fused_multiply_add(theirs, ours, x, y, z) -> bool:
    """Whether every entry where ``theirs`` differs from ``ours`` is ``x * y + z`` rounded
    twice (the product, then the sum: NumPy's and pfd_ref's) in ``ours`` and rounded once
    (a fused multiply-add; computed exactly with fractions) in ``theirs``; float64."""
    x, y, z, theirs, ours = np.broadcast_arrays(x, y, z, theirs, ours)
    differ = theirs != ours
    twice_rounded = x[differ] * y[differ] + z[differ]
    return np.array_equal(ours[differ], twice_rounded) and all(
        float(Fraction(a) * Fraction(b) + Fraction(c)) == t
        for a, b, c, t in zip(x[differ], y[differ], z[differ], theirs[differ]))


def _grads(rng, shape, steps, decades=(-4, 2)):
    """Gradients spanning several decades (per row for 2-d shapes)."""
    scale_shape = shape[:1] + (1,) * (len(shape) - 1)
    return [rng.normal(size=shape) * 10.0 ** rng.integers(*decades, size=scale_shape) for _ in range(steps)]


def _ours(initial_accumulator, eps, state, param, grad, sparse_rows=None):
    """One pfd_ref Adagrad step from the given accumulator and parameter; returns both, updated."""
    optimizer = Adagrad(LR, initial_accumulator, eps)
    optimizer.state["p"] = {"accumulator": state.copy()}
    params = {"p": param.copy()}
    grad = grad if sparse_rows is None else RowSparseGrad(sparse_rows, grad, param.shape[0])
    optimizer.step(params, {"p": grad})
    return optimizer.state["p"]["accumulator"], params["p"]


@pytest.mark.parametrize("initial_accumulator, eps", [(0.1, 0.0), (0.0, 1e-10)])
def test_dense_adagrad_agrees_with_torch_bit_for_bit_but_for_torchs_fused_add_and_sqrt(initial_accumulator, eps):
    rng = np.random.default_rng(1)
    param = rng.normal(size=(12, 6))
    accumulator = np.full_like(param, initial_accumulator)
    weight = torch.tensor(param, requires_grad=True)
    reference = torch.optim.Adagrad([weight], lr=LR, initial_accumulator_value=initial_accumulator, eps=eps)
    compared = 0
    for grad in _grads(rng, param.shape, 60):
        with torch.no_grad():  # both sides start the step from the same state
            weight.copy_(torch.from_numpy(param))
            reference.state[weight]["sum"].copy_(torch.from_numpy(accumulator))
        weight.grad = torch.from_numpy(grad)
        reference.step()
        torch_accumulator, torch_param = reference.state[weight]["sum"].numpy().copy(), weight.detach().numpy().copy()
        our_accumulator, our_param = _ours(initial_accumulator, eps, accumulator, param, grad)
        # a <- a + g g: pfd_ref rounds g g, then the sum; torch's may fuse both into one rounding
        assert _explained_by_fused_multiply_add(torch_accumulator, our_accumulator, grad, grad, accumulator)
        # p <- p - (lr g) / (sqrt(a) + eps): the same bits wherever a and torch's sqrt(a) agree
        same_inputs = (torch_accumulator == our_accumulator) & \
            (torch.from_numpy(our_accumulator).sqrt().numpy() == np.sqrt(our_accumulator))
        np.testing.assert_array_equal(our_param[same_inputs], torch_param[same_inputs])
        compared += same_inputs.sum()
        accumulator, param = torch_accumulator, torch_param
    assert compared > 0.8 * 60 * param.size  # most entries are compared bit for bit


@pytest.mark.parametrize("initial_accumulator, eps", [(0.1, 0.0), (0.0, 1e-10)])
def test_lazy_adagrad_agrees_with_torchs_sparse_path_bit_for_bit_but_for_its_fused_add_and_sqrt(initial_accumulator, eps):
    rng = np.random.default_rng(2)
    table = rng.normal(size=(30, 4))
    accumulator = np.full_like(table, initial_accumulator)
    weight = torch.tensor(table, requires_grad=True)
    reference = torch.optim.Adagrad([weight], lr=LR, initial_accumulator_value=initial_accumulator, eps=eps)
    compared = 0
    for step in range(60):
        rows = np.flatnonzero(rng.random(table.shape[0]) < 0.4)
        values = _grads(rng, (rows.size, table.shape[1]), 1)[0]
        with torch.no_grad():
            weight.copy_(torch.from_numpy(table))
            reference.state[weight]["sum"].copy_(torch.from_numpy(accumulator))
        weight.grad = torch.sparse_coo_tensor(torch.from_numpy(rows)[None], torch.from_numpy(values), table.shape)
        reference.step()
        torch_accumulator, torch_table = reference.state[weight]["sum"].numpy().copy(), weight.detach().numpy().copy()
        our_accumulator, our_table = _ours(initial_accumulator, eps, accumulator, table, values, rows)
        untouched = np.setdiff1d(np.arange(table.shape[0]), rows)
        for array in (our_accumulator, torch_accumulator):
            np.testing.assert_array_equal(array[untouched], accumulator[untouched])
        np.testing.assert_array_equal(our_table[untouched], table[untouched])
        np.testing.assert_array_equal(torch_table[untouched], table[untouched])
        # a[r] <- a[r] + g g: torch's sparse path adds the rounded squares, as pfd_ref does
        np.testing.assert_array_equal(our_accumulator, torch_accumulator)
        # p[r] <- p[r] - lr (g / (sqrt(a[r]) + eps)): torch may fuse the last multiply-add
        same_root = torch.from_numpy(our_accumulator[rows]).sqrt().numpy() == np.sqrt(our_accumulator[rows])
        quotient = values / (np.sqrt(our_accumulator[rows]) + eps)
        assert _explained_by_fused_multiply_add(torch_table[rows][same_root], our_table[rows][same_root],
                                                -LR, quotient[same_root], table[rows][same_root])
        compared += same_root.sum()
        accumulator, table = torch_accumulator, torch_table
    assert compared > 0.8 * 60 * 0.4 * table.size


def _max_differences(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    difference = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    return float(difference.max()), float((difference / np.abs(theirs.astype(np.float64))).max())


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 2e-4)])
@pytest.mark.parametrize("initial_accumulator, eps", [(0.1, 0.0), (0.0, 1e-10)])
def test_dense_adagrad_over_many_steps_stays_at_rounding_distance_from_torch(dtype, rtol, initial_accumulator, eps):
    """200 steps, each side on its own trajectory. float64: measured at most 3e-14 relative;
    float32: 6e-5 (torch's float32 sqrt and fused multiply-adds, over 200 steps)."""
    rng = np.random.default_rng(3)
    param = rng.normal(size=(50, 20)).astype(dtype)
    ours, optimizer = {"p": param.copy()}, Adagrad(LR, initial_accumulator, eps)
    weight = torch.tensor(param.copy(), requires_grad=True)
    reference = torch.optim.Adagrad([weight], lr=LR, initial_accumulator_value=initial_accumulator, eps=eps)
    for grad in _grads(rng, param.shape, 200):
        grad = grad.astype(dtype)
        optimizer.step(ours, {"p": grad})
        weight.grad = torch.from_numpy(grad)
        reference.step()
    _, max_relative = _max_differences(ours["p"], weight.detach().numpy())
    assert max_relative < rtol
    np.testing.assert_allclose(optimizer.state["p"]["accumulator"], reference.state[weight]["sum"].numpy(), rtol=rtol)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 2e-4)])
def test_lazy_adagrad_matches_torch_on_an_embedding_with_sparse_gradients(dtype, rtol):
    """nn.Embedding(sparse=True) with repeated ids, 100 steps: the rows the batches touched
    agree with torch.optim.Adagrad; rows never touched keep their initial bits on both sides."""
    rng = np.random.default_rng(4)
    table = rng.normal(size=(40, 5)).astype(dtype)
    embedding = torch.nn.Embedding(40, 5, sparse=True, _weight=torch.tensor(table.copy()))
    reference = torch.optim.Adagrad(embedding.parameters(), lr=LR, initial_accumulator_value=0.1, eps=0.0)
    ours, optimizer = {"e": table.copy()}, Adagrad(LR)
    touched = np.zeros(40, bool)
    for _ in range(100):
        ids = rng.integers(0, 30, size=16)  # ids 30..39 never occur
        weights = (rng.normal(size=(16, 5)) * 10.0 ** rng.integers(-3, 2, size=(16, 1))).astype(dtype)
        embedding.zero_grad()
        (embedding(torch.from_numpy(ids)) * torch.from_numpy(weights)).sum().backward()
        reference.step()
        optimizer.step(ours, {"e": embedding_backward(weights, ids, 40)})
        touched[ids] = True
    theirs = embedding.weight.detach().numpy()
    _, max_relative = _max_differences(ours["e"][touched], theirs[touched])
    assert max_relative < rtol
    np.testing.assert_array_equal(ours["e"][~touched], table[~touched])
    np.testing.assert_array_equal(theirs[~touched], table[~touched])
    assert touched.sum() == 30


def test_warmup_lr_equals_torchs_lambda_lr_bit_for_bit():
    for n_steps, start_step in ((1, 0), (3, 0), (7, 0), (1000, 0), (7, 5)):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.03)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: min(1.0, (start_step + t + 1) / n_steps))
        for t in range(n_steps + 5):
            assert optimizer.param_groups[0]["lr"] == warmup_lr(0.03, start_step + t, n_steps)
            optimizer.step()
            scheduler.step()


def test_warmup_lr_equals_torchs_linear_lr_up_to_its_rounding():
    """LinearLR(start_factor=1/N, end_factor=1, total_iters=N-1) is the same schedule, computed
    as a running product whose rounding grows with N: within 1e-14 relative up to N = 1000
    (measured at most 3e-15 there; 2.3e-13 at N = 10^5, docs/optim.md)."""
    for n_steps in (2, 7, 1000):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.03)
        scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / n_steps, end_factor=1.0,
                                                      total_iters=n_steps - 1)
        for t in range(n_steps + 5):
            assert optimizer.param_groups[0]["lr"] == pytest.approx(warmup_lr(0.03, t, n_steps), rel=1e-14, abs=0)
            optimizer.step()
            scheduler.step()


@pytest.mark.parametrize("name", ["sgd", "adam", "adagrad"])
def test_every_optimizer_with_warmup_matches_torch_with_lambda_lr(name):
    """30 steps with lr_warmup_steps = 10, float64: pfd_ref's optimizer against torch's with
    LambdaLR (SGD, Adam and Adagrad on dense gradients)."""
    rng = np.random.default_rng(5)
    param = rng.normal(size=(8, 3))
    ours = {"p": param.copy()}
    optimizer = {"sgd": SGD, "adam": Adam, "adagrad": Adagrad}[name](LR, lr_warmup_steps=10)
    weight = torch.tensor(param.copy(), requires_grad=True)
    reference = {"sgd": lambda: torch.optim.SGD([weight], lr=LR),
                 "adam": lambda: torch.optim.Adam([weight], lr=LR),
                 "adagrad": lambda: torch.optim.Adagrad([weight], lr=LR, initial_accumulator_value=0.1, eps=0.0)}[name]()
    scheduler = torch.optim.lr_scheduler.LambdaLR(reference, lambda t: min(1.0, (t + 1) / 10))
    no_warmup = {"p": param.copy()}
    plain = {"sgd": SGD, "adam": Adam, "adagrad": Adagrad}[name](LR)
    for grad in _grads(rng, param.shape, 30, decades=(-2, 1)):
        optimizer.step(ours, {"p": grad})
        plain.step(no_warmup, {"p": grad})
        weight.grad = torch.from_numpy(grad)
        reference.step()
        scheduler.step()
    np.testing.assert_allclose(ours["p"], weight.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert np.abs(ours["p"] - no_warmup["p"]).max() > 1e-3  # the warm-up made a difference
