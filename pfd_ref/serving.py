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
  No privileged column and no label is written;
* MLP students only: ``first_layer.user``, ``first_layer.item`` and ``first_layer.cross``, the
  rows of the (exported) first weight matrix ``W_0`` that multiply the user-tower fields'
  columns of the MLP input, the item-tower fields' and the other fields' (each block in
  field order), so that a server computes the user's share once per request
  (``first_layer_blocks``; the ``mlp_scores_split`` kernel). The cross block is there for the
  paper's fine-ranking layout, where user x item features are inputs; a pfd_ref schema gives
  every regular field a tower, so a student's cross block has no rows.

``ServedStudent.top_k(user_keys, k)`` returns, for each user, the ``k`` best catalogue items
with their scores (logits), best first, ties to the lower catalogue index;
``ServedStudent.rank_candidates(user_key, candidate_keys, k)`` does the same over one
request's candidates. A two-tower student scores ``S <f(u), f(v)> + b`` (``f``: l2
normalisation or the identity, ``S``: the tower scale; ``models.TwoTower``) with the item
vectors ``f(v)`` precomputed once, the user vector ``f(u)`` per request, the top-k of
``<f(u), f(v)>`` by the ``top_k_items`` kernel (``S > 0`` leaves the order unchanged; with
``candidates=`` for a request), and the reported scores ``S <f(u), f(v)> + b``: the model's
logits. An MLP student scores every (user, item) pair with the user block of the first layer
computed once per user and the items' encoded inputs once per catalogue
(``mlp_scores_split`` + ``top_k_scores``). The kernels run through ``pfd_ref.backend``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pfd_ref import backend
from pfd_ref.data import Dataset, MultiIds
from pfd_ref.layers import negative_slope
from pfd_ref.data.dataset import load_npz, pack_columns, save_npz, unpack_columns
from pfd_ref.models import FieldEncoder, TwoTower, build_model
from pfd_ref.schema import Schema
from pfd_ref.validation import check_scalar

INT64_RANGE = (-(2**63), 2**63 - 1)
FORMAT = "pfd_ref.student/2"  # 2: dotted keys (pack_columns); 1 had param/<name>, users/<field>
INPUT_BLOCKS = ("user", "item", "cross")  # the MLP input's blocks; "cross": fields of neither tower


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


def _input_block(field) -> str:
    return field.tower if field.tower in ("user", "item") else "cross"


def first_layer_blocks(model, params: dict) -> dict[str, np.ndarray]:
    """The rows of an MLP student's first weight matrix ``W_0 (D, h_1)`` by input block.

    The MLP input ``x`` concatenates the fields' columns in field order (``FieldEncoder``:
    ``embed_dim`` columns per categorical field, ``width`` per dense one). Block ``b`` of
    ``INPUT_BLOCKS`` gets the rows of ``W_0`` at the columns of its fields, in field order,
    so that ``x @ W_0 = x_user @ W_user + x_item @ W_item + x_cross @ W_cross`` with
    ``x_b`` the columns of block ``b``'s fields. Returns C-contiguous ``(D_b, h_1)`` arrays.
    """
    w0 = params[model.mlp.names[0][0]]
    rows = {block: [] for block in INPUT_BLOCKS}
    start = 0
    for f in model.fields:
        width = f.width if f.kind == "dense" else model.embed_dim
        rows[_input_block(f)].extend(range(start, start + width))
        start += width
    return {block: np.ascontiguousarray(w0[np.array(r, dtype=np.int64)]) for block, r in rows.items()}


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
    if not isinstance(model, TwoTower):
        arrays.update(pack_columns("first_layer", first_layer_blocks(model, params)))
    return save_npz(path, arrays)


class ServedStudent:
    """A loaded student with its user and item tables; see the module docstring."""

    def __init__(self, model, params: dict, user_keys, user_rows: FeatureRows, item_keys, item_rows: FeatureRows,
                 first_layer: dict | None = None):
        if model.buffer_names:
            raise ValueError("model: a served model has its batch normalisation folded into its linear layers "
                             "(model.exported(params), as save_student writes it)")
        self.model, self.params = model, params
        self.user_keys, self.user_rows = user_keys, user_rows
        self.item_keys, self.item_rows = item_keys, item_rows
        self.first_layer = first_layer
        self._item_vectors = None
        self._item_inputs = None

    @classmethod
    def load(cls, path) -> "ServedStudent":
        """Read a file written by ``save_student``, checked whole (``ValueError`` naming the file
        and the array): the format, the config, every array the model reads and no other,
        unique sorted integer keys, each catalogue column one row per key with ids inside its
        table, every parameter of the right shape, dtype and finite (one scored pair); an MLP
        student's file must also hold its split first layer, equal to ``W_0``'s rows."""
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
        split = not isinstance(model, TwoTower)  # an MLP student's file holds its split first layer
        known = {"format", "config", "user_keys", "item_keys", *pack_columns("param", params),
                 *(f"first_layer.{b}" for b in INPUT_BLOCKS if split),
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
            if split:
                student.first_layer = _load_first_layer(model, params, archive)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        return student

    def item_vectors(self) -> np.ndarray:
        """Two-tower only: ``f(v)`` of every catalogue item, ``(N, k)`` C-contiguous, computed once."""
        if not isinstance(self.model, TwoTower):
            raise ValueError("model: item vectors exist only for a two-tower student")
        if self._item_vectors is None:
            self._item_vectors = np.ascontiguousarray(self.model.item_vectors(self.params, self.item_rows))
        return self._item_vectors

    def user_vectors(self, user_keys) -> np.ndarray:
        """Two-tower only: ``f(u)`` of each user, ``(m, k)`` C-contiguous."""
        if not isinstance(self.model, TwoTower):
            raise ValueError("model: user vectors exist only for a two-tower student")
        return self._user_vectors(self._user_index(user_keys))

    def _user_vectors(self, index: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.model.user_vectors(self.params, self._rows(self.user_rows, index)))

    def logits(self, inner_products: np.ndarray) -> np.ndarray:
        """Two-tower only: the logits ``S <f(u), f(v)> + b`` of inner products ``<f(u), f(v)>``."""
        logits = self.model.tower_scale * inner_products
        return logits + self.params[f"{self.model.prefix}.bias"][0] if self.model.bias else logits

    def _user_index(self, user_keys) -> np.ndarray:
        """The table row of each user key (``_key_index``)."""
        return _key_index("users", "user", "user ids", "user table", self.user_keys, user_keys)

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
        if isinstance(self.model, TwoTower):
            scores, ids = backend.top_k_items(self.item_vectors(), self._user_vectors(index), k)
            scores = self.logits(scores)
        else:
            scores, ids = zip(*(backend.top_k_scores(self._mlp_scores(user), k) for user in index))
            scores, ids = np.stack(scores), np.stack(ids)
        return self.item_keys[ids], scores

    def rank_candidates(self, user_key, candidate_keys, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One request: ``(item_keys (k',), scores (k',))`` of the ``k' = min(k, c)`` best of the
        ``c`` candidates ``candidate_keys`` (keys of catalogue items) for the user ``user_key``,
        best first, ties to the lower catalogue index; a key listed twice is ranked twice.
        Two-tower: the candidates' precomputed vectors are gathered, scored and selected in
        one pass (``top_k_items(..., candidates=)``); MLP: the user block of the first layer
        once, the candidates' rows of the catalogue's encoded inputs (``mlp_scores_split``),
        then ``top_k_scores``."""
        user = self._user_index([user_key])
        index = _key_index("candidates", "item", "item keys", "catalogue", self.item_keys, candidate_keys)
        if isinstance(self.model, TwoTower):
            scores, ids = backend.top_k_items(self.item_vectors(), self._user_vectors(user)[0], k, candidates=index)
            return self.item_keys[ids], self.logits(scores)
        index = np.sort(index)  # catalogue order: top_k_scores breaks ties by position
        scores, positions = backend.top_k_scores(self._mlp_scores(user[0], index), k)
        return self.item_keys[index[positions]], scores

    def item_inputs(self) -> np.ndarray:
        """MLP only: the item-tower block of the MLP input for every catalogue item,
        ``(N, D_item)`` C-contiguous, computed once (``first_layer['item']`` multiplies it)."""
        if self._item_inputs is None:
            self._item_inputs = self._encode("item", self.item_rows)
        return self._item_inputs

    def _dtype(self) -> np.dtype:
        return self.params[self.model.mlp.names[0][0]].dtype

    def _encode(self, block: str, rows: FeatureRows) -> np.ndarray:
        fields = tuple(f for f in self.model.fields if _input_block(f) == block)
        n = len(next(iter(rows.columns.values()))) if rows.columns else 0
        if not fields:
            return np.zeros((n, 0), self._dtype())
        encoder = FieldEncoder(fields, self.model.embed_dim, self.model.encoder.table_names)
        return np.ascontiguousarray(encoder.forward(self.params, rows, self._dtype())[0])

    def _mlp_scores(self, user: int, items: np.ndarray | None = None) -> np.ndarray:
        """Logits of the catalogue items ``items`` (all when None) for the user at index
        ``user``: the split first layer, the user block once (``mlp_scores_split``)."""
        x_user = self._encode("user", self._rows(self.user_rows, np.array([user])))[0]
        x_items = self.item_inputs() if items is None else self.item_inputs()[items]
        names = self.model.mlp.names
        weights = [self.first_layer["item"]] + [self.params[w] for w, _ in names[1:]]
        biases = [self.params[b] for _, b in names]
        return backend.mlp_scores_split(x_user, x_items, self.first_layer["user"], weights, biases,
                                        negative_slope=negative_slope(self.model.mlp.activation))[:, 0]


def read_candidates(path) -> dict[int, np.ndarray]:
    """``{user: item keys (c,) int64}`` from a CSV file with the header ``user,item``, one
    candidate per row, users in the order they first appear. ``ValueError`` naming
    ``--candidates`` and the file for a bad header, a value that is not an integer, no rows,
    or a (user, item) pair listed twice."""
    try:
        with open(path) as handle:
            header = handle.readline().strip().replace(" ", "")
            if header != "user,item":
                raise ValueError(f"--candidates: {path}: expected the header 'user,item', got {header!r}")
            rows = [line.replace(" ", "") for line in handle.read().splitlines() if line.strip()]
        if not rows:
            raise ValueError(f"--candidates: {path}: expected rows of two integers user,item after the header")
        pairs = np.loadtxt(rows, delimiter=",", dtype=np.int64, ndmin=2)
    except OSError as err:
        raise ValueError(f"--candidates: cannot read {path} ({err.strerror})") from None
    except ValueError as err:
        if str(err).startswith("--candidates"):
            raise
        raise ValueError(f"--candidates: {path}: expected two integer columns user,item ({err})") from None
    if pairs.shape[1] != 2:
        raise ValueError(f"--candidates: {path}: expected rows of two integers user,item after the header")
    unique, counts = np.unique(pairs, axis=0, return_counts=True)
    if np.any(counts > 1):
        user, item = unique[np.argmax(counts > 1)]
        raise ValueError(f"--candidates: {path}: user {user} lists item {item} twice")
    users, first = np.unique(pairs[:, 0], return_index=True)
    return {int(user): pairs[pairs[:, 0] == user, 1] for user in users[np.argsort(first)]}


def rank_requests(student: ServedStudent, users, k: int, candidates_path=None, item_vectors_path=None):
    """``pfd-ref score``: ``(users, [(items (k',), scores (k',)) per user])``.

    users : user keys, or None to take them from the candidates file; candidates_path : a CSV
    read by ``read_candidates`` (each user's candidates, one request each); item_vectors_path
    (two-tower only): an ``.npy`` of item vectors ``f(v)`` scored instead of the exported
    catalogue, memory-mapped and read in blocks (``pfd_ref.catalogue``), whose items are
    its row numbers. Scores are logits."""
    candidates = read_candidates(candidates_path) if candidates_path is not None else None
    users = list(candidates) if users is None else list(users)
    if candidates is not None:
        missing = [user for user in users if user not in candidates]
        if missing:
            raise ValueError(f"--candidates: {candidates_path} lists no candidates for user {missing[0]}")
    if item_vectors_path is None:
        if candidates is None:
            return users, list(zip(*student.top_k(users, k)))
        return users, [student.rank_candidates(user, candidates[user], k) for user in users]
    from pfd_ref import catalogue
    if not isinstance(student.model, TwoTower):
        raise ValueError(f"--item-vectors: only for a two-tower student; {item_vectors_path} cannot be scored by an MLP "
                         "student")
    user_vectors = student.user_vectors(users)
    if candidates is None:
        scores, rows = catalogue.top_k_from_file(item_vectors_path, user_vectors, k)
        return users, [(row, student.logits(score)) for row, score in zip(rows, scores)]
    with catalogue.ItemVectorFile(item_vectors_path, dtype=user_vectors.dtype, dim=user_vectors.shape[1]) as opened:
        ranked = [backend.top_k_items(opened.vectors, u, k, candidates=candidates[user])
                  for user, u in zip(users, user_vectors)]
    return users, [(rows, student.logits(scores)) for scores, rows in ranked]


def _key_index(name: str, what: str, plural: str, table: str, keys: np.ndarray, wanted) -> np.ndarray:
    """Positions of the keys ``wanted`` in the sorted int64 ``keys``; ValueError naming ``name``
    and the first key that is not an integer (``1.7``, ``True``, ``"3"``) or not in the table
    (a key beyond 64 bits never is: it is refused, not wrapped). An integer array is checked
    as a whole; anything else key by key."""
    if isinstance(wanted, np.ndarray) and wanted.dtype.kind in "iu":
        wanted = wanted.reshape(-1)
        if wanted.dtype.kind == "u" and wanted.size and wanted.max() > INT64_RANGE[1]:
            raise ValueError(f"{name}: {what} {int(wanted.max())} is not in the exported student's {table} "
                             "(ids are 64-bit)")
        wanted = wanted.astype(np.int64)
    else:
        items = np.asarray(wanted, dtype=object).reshape(-1).tolist()
        bad = next((k for k in items if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer))), None)
        if bad is not None:
            raise ValueError(f"{name}: expected integer {plural}, got {bad!r}")
        outside = next((k for k in items if not INT64_RANGE[0] <= k <= INT64_RANGE[1]), None)
        if outside is not None:
            raise ValueError(f"{name}: {what} {outside} is not in the exported student's {table} (ids are 64-bit)")
        wanted = np.array(items, dtype=np.int64)
    index = np.searchsorted(keys, wanted)
    known = (index < len(keys)) & (keys[np.minimum(index, len(keys) - 1)] == wanted) if len(keys) else index < 0
    if not np.all(known):
        raise ValueError(f"{name}: {what} {int(wanted[~known][0])} is not in the exported student's {table}")
    return index


def _load_first_layer(model, params: dict, archive: dict) -> dict:
    """The ``first_layer.<block>`` arrays of an MLP student's file, checked against ``W_0``
    (of checked parameters); the caller names the file."""
    missing = [f"first_layer.{b}" for b in INPUT_BLOCKS if f"first_layer.{b}" not in archive]
    if missing:
        raise ValueError(f"the MLP student's split first layer is missing ({', '.join(missing)}); "
                         "files written before it was added must be exported again (`pfd-ref run --save`)")
    expected = first_layer_blocks(model, params)
    blocks = {}
    for b in INPUT_BLOCKS:
        block = archive[f"first_layer.{b}"]
        if block.dtype != expected[b].dtype or not np.array_equal(block, expected[b]):
            raise ValueError(f"first_layer.{b} ({block.dtype} {block.shape}) is not the {b} block of the "
                             f"rows of {model.mlp.names[0][0]} ({expected[b].dtype} {expected[b].shape})")
        blocks[b] = np.ascontiguousarray(block)
    return blocks


# ----------------------------------------------------------------------------- the paper's cost figure

TOWER_WIDTHS = (1024, 512, 256, 128)  # the paper's §5.2 tower: a 1024-wide input mapped to a 128-d vector


def tower_cost_figure(candidates: int = 10_000, repeats: int = 5, seed: int = 0) -> dict:
    """The paper's §5.2 cost figure measured with this package's kernels: what one candidate
    costs when it is mapped through a tower (``TOWER_WIDTHS``, ReLU between layers, float32)
    against the inner product of its precomputed 128-d vector with the user's.

    Multiply-adds per candidate: the tower ``sum_l in_l out_l = 1024*512 + 512*256 + 256*128
    = 688128``, the inner product ``128``: a ratio of 5376 (the paper: ~6.9e5 vs 128,
    ~5400x). Time per candidate, two ways, each the median of ``repeats`` rounds in which
    the two run one after the other (inputs from ``numpy.random.default_rng(seed)``):

    * batched: the ``mlp_scores`` kernel on ``(candidates, 1024)`` inputs against the
      ``score_items`` kernel on ``(candidates, 128)`` item vectors, each divided by
      ``candidates`` (``time_ratio``);
    * one at a time, as the paper's loop of repetitions: one call per candidate, a
      ``(1, 1024)`` input against a ``(1, 128)`` vector (``time_ratio_one_at_a_time``);
      fixed per-call costs (checks, dispatch) dominate the inner product here.

    The kernels run through ``pfd_ref.backend`` (on the NumPy backend this times the twins).
    The paper measured 89.695 s against 0.108 s over 10^5 repetitions (~830x). Returns a
    dict with ``multiply_adds_tower``, ``multiply_adds_inner_product``,
    ``multiply_add_ratio``, ``tower_s``, ``inner_product_s`` (seconds per candidate,
    batched), ``time_ratio``, the same three with ``_one_at_a_time``, ``candidates`` and
    ``repeats``.
    """
    rng = np.random.default_rng(seed)
    dims = TOWER_WIDTHS
    weights = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32) for a, b in zip(dims[:-1], dims[1:])]
    biases = [np.zeros(b, np.float32) for b in dims[1:]]
    inputs = rng.standard_normal((candidates, dims[0])).astype(np.float32)
    vectors = rng.standard_normal((candidates, dims[-1])).astype(np.float32)
    user = rng.standard_normal(dims[-1]).astype(np.float32)
    one_input, one_vector = inputs[:1].copy(), vectors[:1].copy()
    calls = max(1, min(candidates, 1000))  # calls per sample of the one-at-a-time timing
    work = {
        "tower": (lambda: backend.mlp_scores(inputs, weights, biases), candidates),
        "inner_product": (lambda: backend.score_items(vectors, user), candidates),
        "tower_one_at_a_time": (lambda: [backend.mlp_scores(one_input, weights, biases) for _ in range(calls)], calls),
        "inner_product_one_at_a_time": (lambda: [backend.score_items(one_vector, user) for _ in range(calls)], calls),
    }
    samples = {name: [] for name in work}
    for name, (run, _) in work.items():
        run()  # compile or load, and warm the caches
    for _ in range(repeats):
        for name, (run, per) in work.items():
            start = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - start) / per)
    seconds = {name: float(np.median(values)) for name, values in samples.items()}
    tower_madds = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return {
        "multiply_adds_tower": tower_madds, "multiply_adds_inner_product": dims[-1],
        "multiply_add_ratio": tower_madds / dims[-1],
        "tower_s": seconds["tower"], "inner_product_s": seconds["inner_product"],
        "time_ratio": seconds["tower"] / seconds["inner_product"],
        "tower_s_one_at_a_time": seconds["tower_one_at_a_time"],
        "inner_product_s_one_at_a_time": seconds["inner_product_one_at_a_time"],
        "time_ratio_one_at_a_time": seconds["tower_one_at_a_time"] / seconds["inner_product_one_at_a_time"],
        "candidates": candidates, "repeats": repeats,
    }
