"""The MTL control (method ``mtl``): auxiliary heads on the student predict its privileged features.

Instead of learning from a teacher, the student learns to predict each privileged feature
from its regular inputs (Xu et al. 2020, section 5.3 and Table 4). As in the paper, the
tasks share the student's first hidden layer and each privileged feature has its own MLP
on it; the student's objective is

    L = L_hard(y, s) + alpha * sum_f L_f(o_f, z_f)

with ``alpha`` the auxiliary weight (``DistillConfig.mtl_weight``), ``o_f`` head ``f``'s
outputs and ``z_f`` the feature's target. Only the main head is served: the heads are a
separate model (parameters ``aux.<field>.<j>.weight`` ...) that the student's export never
sees.

Targets (``auxiliary_targets``, statistics from the training split only):

==============  =============================================  ===========================
kind            which privileged fields                        loss ``L_f`` (``losses``)
==============  =============================================  ===========================
"binary"        dense, every training value 0 or 1             log loss of each column
                                                               (``hard_loss`` on its logit)
"continuous"    any other dense field                          squared error of the
                                                               standardised column
                                                               ``z = (x - mean) / std``
                                                               (``squared_error_loss``)
"categorical"   categorical (one id per row, V ids)            softmax log loss over the V
                                                               ids (``softmax_loss``)
==============  =============================================  ===========================

``mean`` and ``std`` are the column's mean and population standard deviation over the rows
the student trains on (never the test split; ``std`` 0 is replaced by 1), so a continuous
target has mean 0 and variance 1 on the training split and the squared error is in units of
its variance. A multi-id privileged field has no target (ValueError).

The heads (``AuxiliaryHeads``): each repeats the student's MLP above its first hidden
layer, ``h_1 -> hidden[1:] -> width_f`` (the paper's 512-256-128 student: each task has its
own 256-128 MLP on the shared 512 units), with the student's activation and batch
normalisation, and a linear output of ``width_f`` units (the field's width, or V). The
gradient of ``alpha sum_f L_f`` reaches the student's first layer and embeddings through
``h_1`` (``MLPRanker.backward``'s ``d_first_hidden``); docs/derivations.md derives it.
Only the MLP student has a layer that sees user and item together; a two-tower student
gets no heads (``distill.METHOD_RULES``: the paper ran MTL on its MLP student only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pfd_ref.data import Dataset
from pfd_ref.losses import hard_loss, softmax_loss, squared_error_loss
from pfd_ref.models import MLPStack
from pfd_ref.schema import Schema

TARGET_KINDS = ("binary", "continuous", "categorical")
PREFIX = "aux"  # parameter names aux.<field>.<j>.weight, ...; loss terms aux.<field>


@dataclass(frozen=True)
class AuxTarget:
    """What one auxiliary head predicts: privileged field ``field``, its ``kind`` (one of
    ``TARGET_KINDS``), ``width`` outputs (the dense width, or the number of ids), and for a
    continuous field the training split's per-column ``mean`` and ``std`` (tuples of floats)."""

    field: str
    kind: str
    width: int
    mean: tuple | None = None
    std: tuple | None = None

    def to_dict(self) -> dict:
        return {"field": self.field, "kind": self.kind, "width": self.width,
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "AuxTarget":
        mean, std = data.get("mean"), data.get("std")
        return cls(data["field"], data["kind"], int(data["width"]), None if mean is None else tuple(mean),
                   None if std is None else tuple(std))

    def values(self, batch: Dataset, dtype) -> np.ndarray:
        """The target of every row of ``batch``: ``(n, width)`` in ``dtype`` (binary: the 0/1
        column; continuous: ``(x - mean) / std``, computed in float64 and then rounded), or the
        ``(n,)`` int64 ids (categorical)."""
        column = batch.columns[self.field]
        if self.kind == "categorical":
            return column
        if self.kind == "binary":
            return column.astype(dtype)
        return ((column - np.array(self.mean)) / np.array(self.std)).astype(dtype)


def check_targets_schema(schema: Schema) -> None:
    """ValueError naming ``method`` unless ``schema`` has privileged fields and none of them
    is multi-id (each needs a target)."""
    privileged = schema.privileged()
    if not privileged:
        raise ValueError("method: 'mtl' predicts the privileged features, and the data has none")
    for spec in privileged:
        if spec.kind == "multi_categorical":
            raise ValueError(f"method: 'mtl' has no auxiliary target for the multi-id privileged field {spec.name!r}")


def auxiliary_targets(data: Dataset) -> tuple[AuxTarget, ...]:
    """One ``AuxTarget`` per privileged field of ``data`` (the training split), in schema
    order; the kinds and statistics of the module's table. ValueError (``check_targets_schema``)
    when there is none or one is multi-id."""
    check_targets_schema(data.schema)
    targets = []
    for spec in data.schema.privileged():
        if spec.kind == "categorical":
            targets.append(AuxTarget(spec.name, "categorical", spec.vocab_size))
            continue
        column = data.columns[spec.name]
        if np.all((column == 0) | (column == 1)):
            targets.append(AuxTarget(spec.name, "binary", spec.width))
            continue
        mean, std = column.mean(axis=0), column.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        targets.append(AuxTarget(spec.name, "continuous", spec.width, tuple(float(v) for v in mean),
                                 tuple(float(v) for v in std)))
    return tuple(targets)


class AuxiliaryHeads:
    """One MLP per ``AuxTarget`` on the student's first hidden layer ``h_1`` ``(n, input_dim)``.

    Head ``f`` has layer sizes ``(input_dim, *hidden, width_f)`` (``models.MLPStack`` with
    prefix ``aux.<field>``: ``activation`` after every hidden layer, batch normalisation
    before it when ``batch_norm``, a linear output). ``prefix`` is ``"aux"``
    (``distill.INIT_STREAM`` draws its initial parameters from their own stream).
    """

    prefix = PREFIX

    def __init__(self, targets, input_dim: int, hidden=(), activation: str = "relu", batch_norm: bool = False):
        self.targets = tuple(targets)
        self.input_dim = int(input_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.stacks = tuple(MLPStack(f"{self.prefix}.{t.field}", (self.input_dim, *self.hidden, t.width), activation,
                                     batch_norm) for t in self.targets)

    @property
    def buffer_names(self) -> tuple[str, ...]:
        return tuple(name for stack in self.stacks for name in stack.buffer_names)

    def param_names(self) -> list[str]:
        return [name for stack in self.stacks for name in stack.param_names()]

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
        """Each head's ``MLPStack.init_params``, in target order, from ``rng``."""
        params = {}
        for stack in self.stacks:
            params.update(stack.init_params(rng, np.dtype(dtype)))
        return params

    def forward(self, params: dict, first_hidden: np.ndarray, training: bool = False) -> tuple[list, list]:
        """The outputs ``o_f`` ``(n, width_f)`` of every head on ``h_1`` and their caches."""
        outputs, caches = [], []
        for stack in self.stacks:
            out, cache = stack.forward(params, first_hidden, training)
            outputs.append(out)
            caches.append(cache)
        return outputs, caches

    def losses(self, outputs: list, batch: Dataset, weights: np.ndarray | None) -> tuple[dict, list]:
        """``({"aux.<field>": L_f}, [dL_f/do_f])``: each head's loss against its target (the
        module's table; a binary field of width k sums the log losses of its k columns)."""
        terms, d_outputs = {}, []
        for target, out in zip(self.targets, outputs):
            values = target.values(batch, out.dtype)
            if target.kind == "continuous":
                loss, d_out = squared_error_loss(out, values, weights)
            elif target.kind == "categorical":
                loss, d_out = softmax_loss(out, values, weights)
            else:
                columns = [hard_loss(out[:, c], values[:, c], weights) for c in range(target.width)]
                loss = columns[0][0]
                for column_loss, _ in columns[1:]:
                    loss = loss + column_loss
                d_out = np.stack([d for _, d in columns], axis=1)
            terms[f"{self.prefix}.{target.field}"] = loss
            d_outputs.append(d_out)
        return terms, d_outputs

    def backward(self, caches: list, d_outputs: list) -> tuple[np.ndarray, dict]:
        """``(dL/dh_1, grads)``: every head's ``MLPStack.backward``; ``dL/dh_1`` is the sum of
        the heads' input gradients, in target order."""
        d_first_hidden, grads = None, {}
        for stack, cache, d_out in zip(self.stacks, caches, d_outputs):
            d_x, head_grads = stack.backward(cache, d_out)
            grads.update(head_grads)
            d_first_hidden = d_x if d_first_hidden is None else d_first_hidden + d_x
        return d_first_hidden, grads

    def running_averages(self, params: dict, caches: list) -> dict[str, np.ndarray]:
        updated = {}
        for stack, cache in zip(self.stacks, caches):
            updated.update(stack.running_averages(params, cache))
        return updated

    def config(self) -> dict:
        stack = self.stacks[0]
        return {"prefix": self.prefix, "targets": [t.to_dict() for t in self.targets], "input_dim": self.input_dim,
                "hidden": list(self.hidden), "activation": stack.activation, "batch_norm": stack.batch_norm}
