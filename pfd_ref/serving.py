"""Serving the student: export it alone, load it, precompute item vectors, score and top-k.

An exported file (``save_student``) is one ``.npz`` holding, under the dotted keys of
``pfd_ref.data.dataset.pack_columns``:

* ``format``: the string ``pfd_ref.student/2``;
* ``config``: the student's ``config()`` as JSON (regular fields only);
* ``param.<name>``: every parameter the student reads, nothing of the teacher, with batch
  normalisation folded into the linear layers (``model.exported``: its running averages
  give ``W' = W gamma / sqrt(running_var + eps)``, ``b' = (b - running_mean) gamma /
  sqrt(running_var + eps) + beta``), so ``config`` describes plain linear layers and the
  serving kernels are those of a model without batch normalisation;
* ``users.<field>`` and ``items.<field>``: the user-tower and item-tower regular columns of
  each user and item seen in training (the row of its last impression; a multi-id column as
  ``users.<field>.values`` and ``.offsets``), in the order of ``user_keys`` (the dataset's
  ``user_ids``) and ``item_keys`` (the first categorical item-tower field, e.g. ``item_id``).
  No privileged column and no label is written.

``ServedStudent.top_k(user_keys, k)`` returns, for each user, the ``k`` best catalogue items
with their scores (logits), best first, ties to the lower catalogue index. A two-tower student
scores ``S <f(u), f(v)> + b`` (``f``: l2 normalisation or the identity, ``S``: the tower
scale; ``models.TwoTower``) with the item vectors ``f(v)`` precomputed once, the user vector
``f(u)`` per request, the top-k of ``<f(u), f(v)>`` by the ``top_k_items`` kernel (``S > 0``
leaves the order unchanged), and the reported scores ``S <f(u), f(v)> + b``: the model's
logits. An MLP student scores every (user, item) pair (``mlp_scores`` +
``top_k_scores``). The kernels run through ``pfd_ref.backend``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pfd_ref import backend
from pfd_ref.data import Dataset, MultiIds
from pfd_ref.layers import negative_slope
from pfd_ref.data.dataset import load_npz, pack_columns, unpack_columns
from pfd_ref.models import TwoTower, build_model

FORMAT = "pfd_ref.student/2"  # 2: dotted keys (pack_columns); 1 had param/<name>, users/<field>


class FeatureRows(NamedTuple):
    """Columns of some rows, enough for a model's ``forward`` (which reads ``.columns`` only)."""

    columns: dict


def _last_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(unique sorted keys, index of each key's last row)``."""
    reversed_keys = keys[::-1]
    unique, first_in_reversed = np.unique(reversed_keys, return_index=True)
    return unique, len(keys) - 1 - first_in_reversed


def _item_key_field(model) -> str:
    fields = model.item_fields if isinstance(model, TwoTower) else [f for f in model.fields if f.tower == "item"]
    for f in fields:
        if f.kind == "categorical":
            return f.name
    raise ValueError("model: the student has no categorical item-tower field to key the catalogue by")


def _model_fields(model):
    return model.user_fields + model.item_fields if isinstance(model, TwoTower) else model.fields


def save_student(path, result, data: Dataset) -> Path:
    """Write the student of ``result`` (a ``TrainResult``) and the user/item rows of its
    training ``data`` to ``path`` (directories created). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model, params = result.student.exported(result.student_params())
    fields = _model_fields(model)
    user_fields = [f for f in fields if f.tower == "user"]
    item_fields = [f for f in fields if f.tower == "item"]
    user_keys, user_rows = _last_rows(data.user_ids)
    item_keys, item_rows = _last_rows(data.columns[_item_key_field(model)])
    users, items = data.take(user_rows), data.take(item_rows)
    arrays = {"format": np.array(FORMAT), "config": np.array(json.dumps(model.config())),
              "user_keys": user_keys.astype(np.int64), "item_keys": item_keys.astype(np.int64)}
    arrays.update(pack_columns("param", params))
    arrays.update(pack_columns("users", {f.name: users.columns[f.name] for f in user_fields}))
    arrays.update(pack_columns("items", {f.name: items.columns[f.name] for f in item_fields}))
    with open(path, "wb") as handle:  # a file handle: np.savez would append ".npz" to a bare name
        np.savez(handle, **arrays)
    return path


class ServedStudent:
    """A loaded student with its user and item tables; see the module docstring."""

    def __init__(self, model, params: dict, user_keys, user_rows: FeatureRows, item_keys, item_rows: FeatureRows):
        if model.buffer_names:
            raise ValueError("model: a served model has its batch normalisation folded into its linear layers "
                             "(model.exported(params), as save_student writes it)")
        self.model, self.params = model, params
        self.user_keys, self.user_rows = user_keys, user_rows
        self.item_keys, self.item_rows = item_keys, item_rows
        self._item_vectors = None

    @classmethod
    def load(cls, path) -> "ServedStudent":
        """Read a file written by ``save_student``; ``ValueError`` naming the file otherwise."""
        archive = load_npz(path, "model")
        if "format" not in archive or str(archive["format"]) != FORMAT:
            raise ValueError(f"model: {path} is not a pfd_ref student file (expected format {FORMAT})")
        model = build_model(json.loads(str(archive["config"])))
        fields = _model_fields(model)
        user_rows = FeatureRows(unpack_columns("users", archive, [f for f in fields if f.tower == "user"]))
        item_rows = FeatureRows(unpack_columns("items", archive, [f for f in fields if f.tower == "item"]))
        return cls(model, unpack_columns("param", archive), archive["user_keys"], user_rows, archive["item_keys"],
                   item_rows)

    def item_vectors(self) -> np.ndarray:
        """Two-tower only: ``v`` of every catalogue item, ``(N, k)`` C-contiguous, computed once."""
        if not isinstance(self.model, TwoTower):
            raise ValueError("model: item vectors exist only for a two-tower student")
        if self._item_vectors is None:
            self._item_vectors = np.ascontiguousarray(self.model.item_vectors(self.params, self.item_rows))
        return self._item_vectors

    def _user_index(self, user_keys) -> np.ndarray:
        user_keys = np.asarray(user_keys, dtype=np.int64).reshape(-1)
        index = np.searchsorted(self.user_keys, user_keys)
        known = (index < len(self.user_keys)) & (self.user_keys[np.minimum(index, len(self.user_keys) - 1)] == user_keys)
        if not np.all(known):
            raise ValueError(f"users: user {int(user_keys[~known][0])} is not in the exported student's user table")
        return index

    def _rows(self, rows: FeatureRows, index: np.ndarray) -> FeatureRows:
        return FeatureRows({name: (col.take(index) if isinstance(col, MultiIds) else col[index])
                            for name, col in rows.columns.items()})

    def top_k(self, user_keys, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(item_keys (m, k'), scores (m, k'))`` of the ``k' = min(k, N)`` best items for each
        of the ``m`` users, best first (scores are logits in the parameters' dtype)."""
        index = self._user_index(user_keys)
        if len(index) == 0:
            raise ValueError("users: at least one user is needed")
        users = self._rows(self.user_rows, index)
        if isinstance(self.model, TwoTower):
            u = np.ascontiguousarray(self.model.user_vectors(self.params, users))
            scores, ids = backend.top_k_items(self.item_vectors(), u, k)
            scores = self.model.tower_scale * scores
            if self.model.bias:
                scores = scores + self.params[f"{self.model.prefix}.bias"][0]
        else:
            scores, ids = zip(*(self._mlp_top_k(self._rows(self.user_rows, index[j:j + 1]), k) for j in range(len(index))))
            scores, ids = np.stack(scores), np.stack(ids)
        return self.item_keys[ids], scores

    def _mlp_top_k(self, user: FeatureRows, k: int):
        n_items = len(self.item_keys)
        repeated = self._rows(user, np.zeros(n_items, dtype=np.int64))
        pairs = FeatureRows({**repeated.columns, **self.item_rows.columns})
        dtype = self.params[self.model.mlp.names[0][0]].dtype
        x, _ = self.model.encoder.forward(self.params, pairs, dtype)
        weights = [self.params[w] for w, _ in self.model.mlp.names]
        biases = [self.params[b] for _, b in self.model.mlp.names]
        scores = backend.mlp_scores(np.ascontiguousarray(x), weights, biases,
                                    negative_slope=negative_slope(self.model.mlp.activation))[:, 0]
        return backend.top_k_scores(scores, k)
