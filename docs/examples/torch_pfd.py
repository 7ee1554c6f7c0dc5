"""PFD in PyTorch autograd, rebuilt from a pfd_ref oracle case alone (docs/oracle.md).

This is the independent implementation that ``tests/test_oracle_torch.py`` checks every
golden case against, and the example of docs/oracle.md: it reads nothing from pfd_ref, only
the case file (its ``meta`` JSON, ``input.*`` and ``param.*`` arrays), and writes the
case's ``output.*`` arrays under the same names::

    pfd-ref oracle dump --model mlp --method pfd --mode sync --temperature 2 --out case.npz
    python docs/examples/torch_pfd.py case.npz theirs.npz [--bug no-detach]
    pfd-ref oracle check case.npz theirs.npz

``--bug`` seeds one of four typical mistakes, to see what the checker reports:
``no-detach`` (the soft loss moves the teacher), ``no-t-squared`` (the soft loss lacks its
``T^2`` factor), ``lambda-in-warmup`` (the soft loss is weighted by lambda from step 0),
``lr-warmup-off-by-one`` (the learning-rate warm-up's factor is t / N instead of (t + 1) / N).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

BUGS = ("no-detach", "no-t-squared", "lambda-in-warmup", "lr-warmup-off-by-one")
BN_PARTS = ("gamma", "beta", "running_mean", "running_var")
LAZY_RULE = "torch.optim.SparseAdam on embedding tables + torch.optim.Adam elsewhere"
DENSE_RULE = "torch.optim.Adam on every parameter"
ADAGRAD_LAZY_RULE = "torch.optim.Adagrad on every parameter, embedding tables with sparse gradients"
ADAGRAD_DENSE_RULE = "torch.optim.Adagrad on every parameter (embedding gradients densified)"
SGD_RULE = "torch.optim.SGD on every parameter"
LR_WARMUP_RULE = "torch.optim.lr_scheduler.LambdaLR"


def load_case(path) -> tuple[dict, dict]:
    """``(meta, arrays)`` of a case file; nothing in it needs pickling."""
    with np.load(path, allow_pickle=False) as file:
        arrays = {name: file[name] for name in file.files}
    return json.loads(str(arrays["meta"])), arrays


class Model:
    """One model of the case, from its layout in ``meta["models"]``.

    Field inputs are concatenated in layout order: a categorical field is a row of its table,
    a multi-id field the mean or sum of its rows (an empty row gives zeros), a dense column
    is used as it is. An MLP computes ``x @ W + b`` per layer with the layout's activation
    (ReLU, or LeakyReLU with its ``negative_slope``) between layers; with ``batch_norm`` a
    hidden layer computes ``F.batch_norm(x @ W, running_mean, running_var, gamma, beta)``
    instead of adding a bias (batch statistics in training mode, which also renews the running
    averages in place; the running averages in evaluation mode).
    MLP ranker: ``logit = MLP(x)[:, 0]``; multi-head: ``logits = MLP(x)`` ``(n, K)``, column k
    objective k's head; two-tower: ``logit = S <f(MLP_u(x_u)), f(MLP_v(x_v))> + b``
    with ``f`` = ``F.normalize`` (``tower_norm`` "l2") or the identity, ``S`` = ``tower_scale``.
    """

    def __init__(self, layout: dict, params: dict, arrays: dict, schema: dict, sparse: bool):
        self.layout, self.params, self.arrays, self.schema, self.sparse = layout, params, arrays, schema, sparse

    def _inputs(self, slots: list) -> torch.Tensor:
        parts = []
        for slot in slots:
            field = self.schema[slot["field"]]
            name = f"input.{field['name']}"
            if field["kind"] == "dense":
                parts.append(torch.from_numpy(self.arrays[name]).to(self.dtype))
            elif field["kind"] == "categorical":
                parts.append(F.embedding(torch.from_numpy(self.arrays[name]), self.params[slot["table"]],
                                         sparse=self.sparse))
            else:
                parts.append(F.embedding_bag(torch.from_numpy(self.arrays[name + ".values"]), self.params[slot["table"]],
                                             torch.from_numpy(self.arrays[name + ".offsets"]), mode=field["pooling"],
                                             sparse=self.sparse, include_last_offset=True))
        return torch.cat(parts, dim=1)

    def _mlp(self, x: torch.Tensor, layers: list, training: bool) -> torch.Tensor:
        norm = self.layout["batch_norm"]
        for j, layer in enumerate(layers):
            if j == 1:
                self.first_hidden = x  # the first hidden layer's output: what mtl's heads read
            if j == len(layers) - 1:
                return x @ self.params[f"{layer}.weight"] + self.params[f"{layer}.bias"]
            if norm is None:
                x = x @ self.params[f"{layer}.weight"] + self.params[f"{layer}.bias"]
            else:
                bn = {part: self.params[f"{layer}.bn.{part}"] for part in BN_PARTS}
                x = F.batch_norm(x @ self.params[f"{layer}.weight"], bn["running_mean"], bn["running_var"],
                                 weight=bn["gamma"], bias=bn["beta"], training=training, momentum=norm["momentum"],
                                 eps=norm["eps"])
            x = F.leaky_relu(x, self.layout["negative_slope"]) if self.layout["activation"] == "leaky_relu" else torch.relu(x)

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.params.values())).dtype

    def _stacks(self) -> list:
        layout = self.layout
        return [layout["user_mlp"], layout["item_mlp"]] if layout["kind"] == "two_tower" else [layout["mlp"]]

    def _slots(self) -> list:
        layout = self.layout
        return layout["user_inputs"] + layout["item_inputs"] if layout["kind"] == "two_tower" else layout["inputs"]

    def parameter_names(self) -> set:
        """The trained parameters: tables, weights, biases (none before batch norm), gamma, beta, ``bias``."""
        layout = self.layout
        names = {slot["table"] for slot in self._slots() if slot["table"]}
        if layout.get("bias"):
            names.add(layout["bias"])
        for layers in self._stacks():
            for j, layer in enumerate(layers):
                hidden_with_norm = layout["batch_norm"] is not None and j < len(layers) - 1
                names |= {f"{layer}.{part}" for part in (("weight", "bn.gamma", "bn.beta") if hidden_with_norm
                                                          else ("weight", "bias"))}
        return names

    def buffer_names(self) -> list:
        """The running averages of batch normalisation (not trained), hidden layers only."""
        if self.layout["batch_norm"] is None:
            return []
        return [f"{layer}.bn.{part}" for layers in self._stacks() for layer in layers[:-1]
                for part in ("running_mean", "running_var")]

    def logits(self, training: bool = True) -> torch.Tensor:
        layout = self.layout
        if layout["kind"] == "mlp":
            return self._mlp(self._inputs(layout["inputs"]), layout["mlp"], training)[:, 0]
        if layout["kind"] == "multihead":
            return self._mlp(self._inputs(layout["inputs"]), layout["mlp"], training)
        u = self._mlp(self._inputs(layout["user_inputs"]), layout["user_mlp"], training)
        v = self._mlp(self._inputs(layout["item_inputs"]), layout["item_mlp"], training)
        if layout["tower_norm"] == "l2":
            u, v = F.normalize(u, dim=1, eps=layout["tower_norm_eps"]), F.normalize(v, dim=1, eps=layout["tower_norm_eps"])
        logits = layout["tower_scale"] * (u * v).sum(dim=1)
        return logits + self.params[layout["bias"]][0] if layout["bias"] else logits


class AuxiliaryHeads(Model):
    """mtl's heads, from ``meta["models"]["auxiliary"]``: one MLP per target (its layer
    prefixes in ``target["mlp"]``, the layout's activation and batch normalisation) on the
    student's first hidden layer's output."""

    def _slots(self) -> list:
        return []

    def _stacks(self) -> list:
        return [target["mlp"] for target in self.layout["targets"]]

    def outputs(self, first_hidden: torch.Tensor) -> list:
        return [self._mlp(first_hidden, target["mlp"], training=True) for target in self.layout["targets"]]

    def losses(self, outputs: list, weights, n: int) -> dict:
        """``aux.<field>`` per target: mean_i w_i l_i with l_i the squared error of the
        standardised column (continuous), the sum of the columns' BCE (binary) or the
        softmax cross-entropy of the id (categorical)."""
        terms = {}
        for target, out in zip(self.layout["targets"], outputs):
            column = self.arrays[f"input.{target['field']}"]
            if target["kind"] == "categorical":
                per_row = F.cross_entropy(out, torch.from_numpy(column), reduction="none")
            elif target["kind"] == "binary":
                per_row = F.binary_cross_entropy_with_logits(out, torch.from_numpy(column).to(out.dtype),
                                                             reduction="none").sum(dim=1)
            else:
                standardised = (column - np.array(target["mean"])) / np.array(target["std"])
                per_row = ((out - torch.from_numpy(standardised).to(out.dtype)) ** 2).sum(dim=1)
            terms[f"aux.{target['field']}"] = (per_row if weights is None else weights * per_row).sum() / n
        return terms


def objective_losses(meta: dict, arrays: dict, s, t, lam: float, weights, sync: bool, bug: str | None = None) -> dict:
    """A multi-head case's losses (``meta["objectives"]``: names, scopes "all"/"played",
    weights w_k): row weights r_ik = m_ik w_i (m_ik = 1 for scope "all", the played flag for
    "played"); hard_k = mean_i r_ik BCE(s_ik, y_ik); soft_k = T^2 mean_i r_ik BCE(s_ik / T,
    sigmoid(t_ik / T)) with ``t`` detached, for the distilled heads (the student layout's
    ``distilled``: the teacher's heads, in order); student_total = sum_k w_k (a_k hard_k +
    lambda_k soft_k) with lambda_k = lambda on a distilled head and 0 elsewhere (a_k = 1 -
    lambda_k, or 1 with hard weight "one"); teacher_hard = sum over the teacher's heads of
    w_k hard_k of its logits (sync)."""
    case, objectives = meta["case"], meta["objectives"]
    distilled = meta["models"]["student"]["distilled"]
    targets = torch.from_numpy(arrays["input.targets"]).to(s.dtype)
    played = torch.from_numpy(arrays["input.played"]).to(s.dtype)
    temperature = case["temperature"]

    def rows(k):
        mask = torch.ones_like(played) if objectives["scopes"][k] == "all" else played
        return mask if weights is None else mask * weights

    losses, hard_sum, soft_sum, total = {}, 0.0, 0.0, 0.0
    teacher_hard = 0.0
    for k, name in enumerate(objectives["names"]):
        w = objectives["weights"][k]
        hard = F.binary_cross_entropy_with_logits(s[:, k], targets[:, k], weight=rows(k))
        losses[f"hard.{name}"] = hard
        hard_sum, lam_k = hard_sum + w * hard, 0.0
        if t is not None and name in distilled:
            j = distilled.index(name)
            target = torch.sigmoid((t[:, j] if bug == "no-detach" else t[:, j].detach()) / temperature)
            soft_factor = 1.0 if bug == "no-t-squared" else temperature**2
            soft = soft_factor * F.binary_cross_entropy_with_logits(s[:, k] / temperature, target, weight=rows(k))
            losses[f"soft.{name}"] = soft
            soft_sum, lam_k = soft_sum + w * soft, lam
            if sync:
                teacher_hard = teacher_hard + w * F.binary_cross_entropy_with_logits(t[:, j], targets[:, k],
                                                                                     weight=rows(k))
        a = 1.0 - lam_k if case["hard_weight"] == "one_minus_lambda" else 1.0
        total = total + w * (a * hard + lam_k * soft if lam_k else hard)
    losses.update(hard=hard_sum, student_total=total)
    if t is not None:
        losses["soft"] = soft_sum
    if sync:
        losses["teacher_hard"] = teacher_hard
    losses["total"] = total + (teacher_hard if sync else 0.0)
    return losses


def _optimizers(case: dict, trained: dict, tables: set) -> tuple[list, str]:
    """The torch optimizers of the case's rule (``meta.optimizer_rule``): Adam lazy = SparseAdam
    on the (sparse-gradient) tables + Adam on the rest; Adam dense = one Adam; Adagrad = one
    Adagrad (it takes sparse and dense gradients); SGD = one SGD."""
    if case["optimizer"] == "sgd":
        return [torch.optim.SGD(list(trained.values()), lr=case["lr"])], SGD_RULE
    if case["optimizer"] == "adagrad":
        hyper = dict(lr=case["lr"], initial_accumulator_value=case["adagrad_initial_accumulator"],
                     eps=case["adagrad_eps"])
        rule = ADAGRAD_LAZY_RULE if case["adagrad_sparse"] == "lazy" else ADAGRAD_DENSE_RULE
        return [torch.optim.Adagrad(list(trained.values()), **hyper)], rule
    hyper = dict(lr=case["lr"], betas=(case["beta1"], case["beta2"]), eps=case["eps"])
    if case["adam_sparse"] == "dense":
        return [torch.optim.Adam(list(trained.values()), **hyper)], DENSE_RULE
    sparse = [p for name, p in trained.items() if name in tables]
    dense = [p for name, p in trained.items() if name not in tables]
    return [torch.optim.SparseAdam(sparse, **hyper), torch.optim.Adam(dense, **hyper)], LAZY_RULE


def lr_warmup(case: dict, optimizers: list, bug: str | None = None) -> list:
    """With ``lr_warmup_steps`` N > 0, one ``LambdaLR`` per optimizer: the case's step t (0-based)
    uses lr * min(1, (start_step + t + 1) / N); stepped after every optimizer step. None without."""
    if not case["lr_warmup_steps"]:
        return []
    offset = case["start_step"] + (0 if bug == "lr-warmup-off-by-one" else 1)
    factor = lambda t: min(1.0, (offset + t) / case["lr_warmup_steps"])  # noqa: E731
    return [torch.optim.lr_scheduler.LambdaLR(optimizer, factor) for optimizer in optimizers]


def lambda_at(case: dict, step: int, bug: str | None = None) -> float:
    """The soft-loss weight at global (0-based) ``step``: 0 during the warm-up, lambda after."""
    return case["lambda_"] if step >= case["warmup_steps"] or bug == "lambda-in-warmup" else 0.0


def run_case(meta: dict, arrays: dict, bug: str | None = None) -> tuple[dict, str]:
    """The case's ``output.*`` arrays computed by PyTorch autograd, and the optimizer rule used.

    Per step k = 1..meta["steps"] on the case's batch: lambda_k = lambda once the global step
    ``start_step + k - 1 >= warmup_steps`` (0 before, and always 0 without a teacher);
    hard = mean_i w_i BCE(s_i, y_i); soft = T^2 mean_i w_i BCE(s_i / T, sigmoid(t_i / T)) with
    ``t`` detached; student_total = a hard + lambda_k soft (a = 1 - lambda_k or 1);
    total = student_total + teacher_hard in sync mode (teacher_hard = mean_i w_i BCE(t_i, y_i)),
    else student_total (the two-stage teacher is frozen: its logits are computed once, without
    gradient, in evaluation mode). ``total.backward()``, then one step of the case's optimizer
    (and of its learning-rate scheduler, when the case has a warm-up). Every logit of a step is
    computed in training mode (batch normalisation on the batch's statistics, its running
    averages renewed); with batch normalisation the student's logits in evaluation mode after
    the last step are ``output.eval_student_logits``. A multi-head case (student layout kind
    "multihead") has one logit per objective and the losses of ``objective_losses``.
    """
    if bug not in (None, *BUGS):
        raise ValueError(f"bug: expected one of {BUGS} or None, got {bug!r}")
    case = meta["case"]
    schema = {field["name"]: field for field in meta["schema"]["features"]}
    params = {name.removeprefix("param."): torch.tensor(value) for name, value in arrays.items() if name.startswith("param.")}
    # the embedding lookups give sparse gradients where the rule updates the tables lazily
    table_updates = {"adam": case["adam_sparse"], "adagrad": case["adagrad_sparse"]}.get(case["optimizer"], "dense")
    lazy = table_updates == "lazy"
    student = Model(meta["models"]["student"], params, arrays, schema, sparse=lazy)
    teacher = None if meta["models"]["teacher"] is None else Model(meta["models"]["teacher"], params, arrays, schema,
                                                                   sparse=lazy)
    auxiliary = None if meta["models"].get("auxiliary") is None else AuxiliaryHeads(
        meta["models"]["auxiliary"], params, arrays, schema, sparse=lazy)
    sync = teacher is not None and case["mode"] == "sync"
    trained_names = student.parameter_names() | (teacher.parameter_names() if sync else set())
    buffer_names = student.buffer_names() + (teacher.buffer_names() if sync else [])
    if auxiliary is not None:
        trained_names |= auxiliary.parameter_names()
        buffer_names += auxiliary.buffer_names()
    for name in trained_names:
        params[name].requires_grad_(True)
    trained = {name: p for name, p in params.items() if name in trained_names}
    tables = {slot["table"] for model in (student, teacher) if model for key, slots in model.layout.items()
              if key.endswith("inputs") for slot in slots if slot["table"]}
    optimizers, rule = _optimizers(case, trained, tables)
    schedulers = lr_warmup(case, optimizers, bug)
    if schedulers:
        rule += "; learning rate: " + LR_WARMUP_RULE
    labels = torch.from_numpy(arrays["input.labels"]).to(student.dtype)
    weights = torch.from_numpy(arrays["input.weights"]) if "input.weights" in arrays else None
    temperature = case["temperature"]
    if teacher is not None and not sync:
        with torch.no_grad():  # the frozen teacher in evaluation mode (running averages)
            frozen_teacher_logits = teacher.logits(training=False)
    lambdas = [lambda_at(case, case["start_step"] + k, bug) if teacher is not None else 0.0 for k in range(meta["steps"])]
    outputs = {"output.lambdas": torch.tensor(lambdas, dtype=torch.float64)}
    lrs = []
    for k, lam in enumerate(lambdas, start=1):
        for p in trained.values():
            p.grad = None
        s = student.logits()
        if student.layout["kind"] == "multihead":
            t = (teacher.logits() if sync else frozen_teacher_logits) if teacher is not None else None
            losses = objective_losses(meta, arrays, s, t, lam, weights, sync, bug)
            total = losses["total"]
        else:
            total, losses, t = _one_label_losses(case, student, teacher, sync, s, labels, weights, lam, temperature,
                                                 auxiliary, frozen_teacher_logits if teacher is not None and not sync
                                                 else None, bug)
        total.backward()
        if k == 1:
            outputs["output.student_logits"] = s
            if teacher is not None:
                outputs["output.teacher_logits"] = t
            outputs.update({f"output.loss.{term}": value for term, value in losses.items()})
            outputs.update({f"output.grad.{name}": p.grad.to_dense() for name, p in trained.items()})
        lrs.append(optimizers[0].param_groups[0]["lr"])
        for optimizer in optimizers:
            optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
        if k in (1, 3):
            outputs.update({f"output.after{k}.{name}": p.detach().clone() for name, p in trained.items()})
            outputs.update({f"output.after{k}.{name}": params[name].clone() for name in buffer_names})
    if schedulers:
        outputs["output.lrs"] = torch.tensor(lrs, dtype=torch.float64)
    if student.layout["batch_norm"] is not None:
        with torch.no_grad():
            outputs["output.eval_student_logits"] = student.logits(training=False)
    return {name: value.detach().numpy() for name, value in outputs.items()}, rule


def _one_label_losses(case, student, teacher, sync, s, labels, weights, lam, temperature, auxiliary,
                      frozen_teacher_logits, bug):
    """``(total, losses, teacher logits or None)`` of a one-label case (``run_case``)."""
    t = None
    hard = F.binary_cross_entropy_with_logits(s, labels, weight=weights)
    losses = {"hard": hard}
    total = student_total = hard
    if teacher is not None:
        t = teacher.logits() if sync else frozen_teacher_logits
        if sync:
            losses["teacher_hard"] = F.binary_cross_entropy_with_logits(t, labels, weight=weights)
        target = torch.sigmoid((t if bug == "no-detach" else t.detach()) / temperature)
        soft_factor = 1.0 if bug == "no-t-squared" else temperature**2
        soft = soft_factor * F.binary_cross_entropy_with_logits(s / temperature, target, weight=weights)
        hard_scale = 1.0 - lam if case["hard_weight"] == "one_minus_lambda" else 1.0
        student_total = hard_scale * hard + lam * soft
        total = student_total + losses.get("teacher_hard", 0.0)
        losses["soft"] = soft
    if auxiliary is not None:  # mtl: student_total = hard + alpha sum_f aux.<field>
        aux_terms = auxiliary.losses(auxiliary.outputs(student.first_hidden), weights, labels.shape[0])
        losses.update(aux_terms)
        losses["aux"] = sum(aux_terms.values())
        student_total = total = student_total + case["mtl_weight"] * losses["aux"]
    losses.update(student_total=student_total, total=total)
    return total, losses, t


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="PFD in PyTorch on a pfd_ref oracle case")
    parser.add_argument("case", help="a case written by `pfd-ref oracle dump`")
    parser.add_argument("out", help="where to write this implementation's output.* arrays (.npz)")
    parser.add_argument("--bug", choices=BUGS, default=None, help="seed one typical mistake")
    args = parser.parse_args(argv)
    outputs, rule = run_case(*load_case(args.case), bug=args.bug)
    np.savez(args.out, **outputs)
    print(f"wrote {len(outputs)} arrays to {args.out} (optimizer: {rule})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
