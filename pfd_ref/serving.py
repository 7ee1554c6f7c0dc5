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
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pfd_ref import backend
from pfd_ref.data import Dataset, MultiIds
from pfd_ref.layers import negative_slope
from pfd_ref.data.dataset import load_npz, pack_columns, save_npz, unpack_columns
from pfd_ref.models import TwoTower, build_model
from pfd_ref.schema import Schema
from pfd_ref.validation import check_scalar

INT64_RANGE = (-(2**63), 2**63 - 1)
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


def _check_catalogue(tower: str, keys: np.ndarray, columns: dict, fields) -> None:
    """ValueError naming ``{tower}_keys`` unless 1-d, integer, unique and sorted, with at
    least one key, or naming ``{tower}s.<field>`` unless each column holds one valid row
    per key (the column checks of ``Dataset``)."""
    if keys.ndim != 1 or keys.dtype.kind not in "iu" or keys.size == 0:
        raise ValueError(f"{tower}_keys: expected a non-empty 1-d integer array, got {keys.dtype} {keys.shape}")
    if np.any(np.diff(keys) <= 0):
        raise ValueError(f"{tower}_keys: expected unique keys in increasing order (as save_student writes them)")
    try:
        Dataset(Schema(tuple(fields)), columns, np.zeros(keys.size, np.int8), np.zeros(keys.size, np.int64))
    except ValueError as error:
        raise ValueError(f"{tower}s: {error}") from None


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
    return save_npz(path, arrays)


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
        """Read a file written by ``save_student``, checked whole (``ValueError`` naming the file
        and the array): the format, the config, every array the model reads and no other,
        unique sorted integer keys, each catalogue column one row per key with ids inside its
        table, every parameter of the right shape, dtype and finite (one scored pair)."""
        archive = load_npz(path, "model")
        where = f"model: {os.fspath(path)!r}"
        if "format" not in archive or str(archive["format"]) != FORMAT:
            raise ValueError(f"{where} is not a pfd_ref student file (expected format {FORMAT})")
        try:
            model = build_model(json.loads(str(archive["config"])))
            fields = _model_fields(model)
            tables = {tower: unpack_columns(tower + "s", archive, [f for f in fields if f.tower == tower])
                      for tower in ("user", "item")}
            keys = {tower: archive[f"{tower}_keys"] for tower in ("user", "item")}
            params = {name: archive[f"param.{name}"] for name in model.param_names()}
        except KeyError as error:
            raise ValueError(f"{where} lacks the array {error}") from None
        except (json.JSONDecodeError, ValueError) as error:
            raise ValueError(f"{where}: its 'config' is not a student's ({error})") from None
        known = {"format", "config", "user_keys", "item_keys", *pack_columns("param", params),
                 *pack_columns("users", tables["user"]), *pack_columns("items", tables["item"])}
        unknown = [name for name in archive if name not in known]
        if unknown:
            raise ValueError(f"{where} holds array(s) {unknown} that its student does not read")
        try:
            for tower in ("user", "item"):
                _check_catalogue(tower, keys[tower], tables[tower], [f for f in fields if f.tower == tower])
            student = cls(model, params, keys["user"], FeatureRows(tables["user"]), keys["item"],
                          FeatureRows(tables["item"]))
            first = FeatureRows({**student._rows(student.user_rows, np.zeros(1, np.int64)).columns,
                                 **student._rows(student.item_rows, np.zeros(1, np.int64)).columns})
            model.forward(params, first)  # checks every parameter's dtype, shape and finiteness
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        return student

    def item_vectors(self) -> np.ndarray:
        """Two-tower only: ``v`` of every catalogue item, ``(N, k)`` C-contiguous, computed once."""
        if not isinstance(self.model, TwoTower):
            raise ValueError("model: item vectors exist only for a two-tower student")
        if self._item_vectors is None:
            self._item_vectors = np.ascontiguousarray(self.model.item_vectors(self.params, self.item_rows))
        return self._item_vectors

    def _user_index(self, user_keys) -> np.ndarray:
        """The table row of each user key; ValueError naming the first key that is not an
        integer (``1.7``, ``True``, ``"3"``) or not in the table (a key beyond 64 bits never is)."""
        keys = np.asarray(user_keys, dtype=object).reshape(-1).tolist()
        bad = next((k for k in keys if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer))), None)
        if bad is not None:
            raise ValueError(f"users: expected integer user ids, got {bad!r}")
        outside = next((k for k in keys if not INT64_RANGE[0] <= k <= INT64_RANGE[1]), None)
        if outside is not None:
            raise ValueError(f"users: user {outside} is not in the exported student's user table (ids are 64-bit)")
        user_keys = np.array(keys, dtype=np.int64)
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
        of the ``m`` users, best first (scores are logits in the parameters' dtype). ``k``: an
        integer >= 1; ``user_keys``: integers (ValueError naming the first that is not, or that
        is not in the user table)."""
        k = check_scalar("k", k, int, low=1)
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
