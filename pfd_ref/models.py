"""The two model kinds of pfd_ref, built from ``pfd_ref.layers``.

* ``MLPRanker``: ``logit = MLP([e_1, ..., e_F, dense_1, ...])`` over the concatenated field
  embeddings and dense columns of its fields (the CVR student, the CVR teachers and the
  "stronger model" teacher of the CTR task).
* ``TwoTower``: ``logit = S <f(u), f(v)> + b`` with ``u = MLP_user(x_user)``,
  ``v = MLP_item(x_item)``, ``f`` the identity or the l2 normalisation and ``S`` a scale
  (the inner-product pre-ranking student of the CTR task). Its ``pfd`` teacher puts the
  privileged (user x item) fields into the user tower, see docs/method.md.

Every MLP has ReLU or LeakyReLU hidden activations, optionally with batch normalisation
before them (``MLPStack``). ``forward(params, batch, training=False)``: with batch
normalisation, training mode uses the batch's statistics and evaluation mode (the default:
``train.predict``, serving) the running averages, which are buffers kept among the
parameters (``buffer_names``; no gradient, so no optimizer step touches them) and renewed by
the training loop from ``running_averages(params, cache)`` after each step.
``exported(params)`` folds batch normalisation into the linear layers for serving.

A model owns a parameter-name prefix and reads only the columns of its own fields
(``feature_names``), so a student built from regular fields cannot read a privileged column.
Every model has ``init_params(rng, dtype)``, ``forward(params, batch, training=False) ->
(logits, cache)``, ``backward(params, cache, d_logits) -> grads``, ``running_averages``,
``buffer_names`` and ``exported``; the chain rules are in docs/derivations.md ("Models").

Validation happens once per call, at the model's boundary (``forward``), and the functions
of ``pfd_ref.layers``, which trust their inputs, do the arithmetic. ``forward`` checks each
embedding table's dtype and shape, the ids of the batch (a ``Dataset`` validated them at
construction, so only its field specs are compared; any other batch, such as serving's
rows, is checked id by id), each MLP's weights, biases and batch-normalisation parameters
(shapes, dtype, finite) and the finiteness of each MLP's input, which covers every table row the batch looks up and every
dense value. ``backward`` checks the shape and dtype of ``d_logits`` and trusts the cache of
its own ``forward``.
"""

from __future__ import annotations

import numpy as np

from pfd_ref import layers
from pfd_ref.data import Dataset, MultiIds
from pfd_ref.schema import FeatureSpec
from pfd_ref.sparse import RowSparseGrad
from pfd_ref.validation import (FLOAT_DTYPES, check_choice, check_float_array, check_float_dtype, check_ids, check_offsets,
                                check_scalar, check_shape, float_dtype)

EMBEDDING_INIT_STD = 0.05
TOWER_NORMS = ("none", "l2")  # the two-tower output normalisation: none, or u / max(||u||, eps)
SHARED_PREFIX = "shared"  # the owner of a table that teacher and student share


def _batch_column(batch, field: FeatureSpec):
    """The batch's column of ``field``, its ids known to lie inside ``[0, vocab_size)``.

    A ``Dataset`` checked its columns against its schema when it was built, so a column is
    used as it is when the schema gives the field the model's kind and vocabulary size; the
    ids of any other batch are checked here (``ValueError`` naming ``batch.columns['name']``).
    """
    column = batch.columns[field.name]
    if field.kind == "dense":
        return column
    if isinstance(batch, Dataset):  # its columns are exactly its schema's fields
        spec = batch.schema[field.name]
        if spec.kind == field.kind and spec.vocab_size == field.vocab_size:
            return column
    label = f"batch.columns[{field.name!r}]"
    if field.kind == "categorical":
        return check_ids(label, column, field.vocab_size)
    values = check_ids(f"{label}.values", column.values, field.vocab_size)
    return MultiIds(values, check_offsets(f"{label}.offsets", column.offsets, values.shape[0]))


def check_params_present(model, params: dict) -> None:
    """Raise ValueError naming the parameters of ``model.param_names()`` that ``params`` lacks."""
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict of parameter name -> array, got {type(params).__name__}")
    missing = [name for name in model.param_names() if name not in params]
    if missing:
        raise ValueError(f"params: missing {', '.join(map(repr, missing))} (read by the {model.prefix} model)")


def _check_d_logits(d_logits, n: int, dtype: np.dtype) -> np.ndarray:
    d_logits = check_float_dtype("d_logits", d_logits, dtype)
    check_shape("d_logits", d_logits, (n,))
    return d_logits


def _check_mlp_params(x, weights, biases, norms, training: bool) -> None:
    """``x (n, in)`` finite; ``W_j (in_j, out_j)``, ``b_j (out_j,)`` (None where batch
    normalisation follows) and each ``BatchNormParams`` array ``(out_j,)`` finite, chained, of
    x's dtype; with batch statistics (``norms`` and ``training``), at least 2 rows.

    The parameters' shapes and dtypes are tested in one pass and their values in one
    finiteness pass over all of them concatenated (a forward reads 6-14 of them); only a
    failure runs the checks array by array that name the bad one (``_name_bad_mlp_param``)."""
    x = check_float_array("x", x, ndim=2)
    if norms is not None and training and x.shape[0] < 2:
        raise ValueError(f"x: batch normalisation with batch statistics needs at least 2 rows, got {x.shape[0]}")
    dtype, width, arrays = x.dtype, x.shape[1], []
    for j, (weight, bias) in enumerate(zip(weights, biases)):
        if not (isinstance(weight, np.ndarray) and weight.dtype == dtype and weight.ndim == 2 and weight.shape[0] == width):
            break
        width = weight.shape[1]
        layer = [weight] if bias is None else [weight, bias]
        if norms is not None and j < len(norms):
            layer.extend(norms[j])
        if not all(isinstance(array, np.ndarray) and array.dtype == dtype and array.shape == (width,)
                   for array in layer[1:]):
            break
        arrays.extend(layer)
    else:
        if not arrays or np.isfinite(np.concatenate([array.reshape(-1) for array in arrays])).all():
            return
    _name_bad_mlp_param(x, weights, biases, norms)


def _name_bad_mlp_param(x, weights, biases, norms) -> None:
    """Raise ValueError naming the first of ``weights``, ``biases`` and ``norms`` that
    ``_check_mlp_params`` refuses (dtype, dimensions, shape, or a NaN or an infinity)."""
    width = x.shape[1]
    for j, (weight, bias) in enumerate(zip(weights, biases)):
        weight = check_float_array(f"weights[{j}]", weight, ndim=2, dtype=x.dtype)
        check_shape(f"weights[{j}]", weight, (width, None))
        width = weight.shape[1]
        if bias is not None:
            check_shape(f"biases[{j}]", check_float_array(f"biases[{j}]", bias, ndim=1, dtype=x.dtype), (width,))
        if norms is not None and j < len(norms):
            for name, array in zip(layers.BatchNormParams._fields, norms[j]):
                check_shape(f"norms[{j}].{name}", check_float_array(f"norms[{j}].{name}", array, ndim=1, dtype=x.dtype),
                            (width,))


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, dtype) -> np.ndarray:
    """``W ~ U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``, shape ``(fan_in, fan_out)``.

    Drawn in float64 and rounded to ``dtype``, so float32 and float64 models from one seed
    start from the same values up to rounding.
    """
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)


class FieldEncoder:
    """Embeds a group of fields and concatenates them into one input row per example.

    ``x = [e_1, ..., e_C, dense_1, ..., dense_D]`` of shape ``(n, C * embed_dim + sum(widths))``
    where ``e_f`` is the embedding of categorical field ``f`` (``table_f[id]``, or the
    sum/mean of ``table_f`` over a multi-id row) and ``dense_j`` are dense columns, cast to
    the parameters' dtype. Table ``f`` is the parameter ``table_names[f]`` of shape
    ``(vocab_size_f, embed_dim)``; two encoders that name the same table share it.
    """

    def __init__(self, fields: tuple[FeatureSpec, ...], embed_dim: int, table_names: dict[str, str]):
        self.fields = tuple(fields)
        self.embed_dim = int(embed_dim)
        self.table_names = {f.name: table_names[f.name] for f in self.fields if f.kind != "dense"}
        self.output_dim = sum(self.embed_dim if f.kind != "dense" else f.width for f in self.fields)
        blocks, start = [], 0
        for f in self.fields:
            width = f.width if f.kind == "dense" else self.embed_dim
            blocks.append((f, start, width))
            start += width
        # (field, start, width) of each field's column block x[:, start:start + width]
        self.field_columns = tuple(blocks)
        self._shared_tables = frozenset(name for name in self.table_names.values() if is_shared_table(name))

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        """Embedding tables ``~ N(0, EMBEDDING_INIT_STD^2)``, shape ``(vocab_size, embed_dim)``."""
        return {
            self.table_names[f.name]: (EMBEDDING_INIT_STD * rng.standard_normal((f.vocab_size, self.embed_dim))).astype(dtype)
            for f in self.fields
            if f.kind != "dense"
        }

    def _table(self, params: dict, field: FeatureSpec, dtype: np.dtype) -> np.ndarray:
        """Table of ``field``; ``ValueError`` naming it unless a ``dtype`` array of shape ``(vocab_size, embed_dim)``."""
        name = self.table_names[field.name]
        table = params[name]
        shape = (field.vocab_size, self.embed_dim)
        if not isinstance(table, np.ndarray) or table.dtype != dtype or table.shape != shape:
            got = f"{table.dtype} {table.shape}" if isinstance(table, np.ndarray) else type(table).__name__
            raise ValueError(f"params[{name!r}]: expected a {dtype} array of shape {shape}, got {got}")
        return table

    def forward(self, params: dict, batch: Dataset, dtype: np.dtype,
                shared: "SharedTables | None" = None) -> tuple[np.ndarray, tuple]:
        """Return ``x`` of shape ``(n, output_dim)`` in ``dtype`` (the model's), and a cache.

        Each field's lookup writes its rows straight into its column block of ``x``
        (``field_columns``; the same values as concatenating the lookups). Checks each
        table's dtype and shape and the batch's ids (``_batch_column``); the finiteness of
        ``x`` is left to the MLP that reads it. With ``shared``, a table another model of the
        step also reads (``shared.embed.<field>``) is looked up once (``SharedTables.rows``:
        the first model's block of its ``x``, which the second copies) and its gradient is
        left to ``shared`` (``backward``)."""
        columns = [_batch_column(batch, f) for f in self.fields]
        first = columns[0]
        x = np.empty((first.n if isinstance(first, MultiIds) else first.shape[0], self.output_dim), dtype)
        for (f, start, width), column in zip(self.field_columns, columns):
            if f.kind == "dense":
                x[:, start:start + width] = column.reshape(x.shape[0], width)  # cast to dtype as astype does
                continue
            name, table = self.table_names[f.name], self._table(params, f, dtype)
            if shared is not None and name in self._shared_tables:
                def look_up():  # into this x; the block is what the other model copies
                    return embedding_rows(f, table, column, x, start)[:, start:start + width]  # noqa: B023 (called at once)
                rows = shared.rows(name, look_up)
                if rows.base is not x:  # the other model looked them up
                    x[:, start:start + width] = rows
            else:
                embedding_rows(f, table, column, x, start)
        return x, (columns, shared)

    def backward(self, cache: tuple, d_x: np.ndarray) -> dict:
        """The tables' row-sparse gradients, each read from its field's column block of
        ``d_x (n, output_dim)`` in place; a shared table's block goes to the forward's
        ``SharedTables`` instead (it scatters the sum of both models' blocks once)."""
        columns, shared = cache
        grads = {}
        d_x = np.ascontiguousarray(d_x)
        for (f, start, width), column in zip(self.field_columns, columns):
            if f.kind == "dense":
                continue
            name = self.table_names[f.name]
            if shared is not None and name in self._shared_tables:
                shared.add_gradient(name, f, column, d_x[:, start:start + width])
            else:
                grads[name] = table_gradient(f, column, d_x, start, width)
        return grads


def is_shared_table(name: str) -> bool:
    """Whether the table parameter ``name`` is one that two models read (``shared.embed.<field>``)."""
    return name.startswith(SHARED_PREFIX + ".")


def embedding_rows(field: FeatureSpec, table: np.ndarray, column, out: np.ndarray | None = None,
                   start: int = 0) -> np.ndarray:
    """Each batch row's embedding of ``field`` ``(n, d)``: ``layers.embedding_forward`` or
    ``layers.pooled_embedding_forward`` (a multi-id field); with ``out`` ``(n, D)``, written
    into its columns ``[start, start + d)`` and ``out`` returned."""
    if field.kind == "categorical":
        return layers.embedding_forward(table, column, out, start)
    return layers.pooled_embedding_forward(table, column.values, column.offsets, field.pooling, out, start)


def table_gradient(field: FeatureSpec, column, d_rows: np.ndarray, start: int = 0,
                   width: int | None = None) -> RowSparseGrad:
    """The row-sparse gradient of ``field``'s table given ``d_rows`` ``(n, d)``, the gradient of
    each batch row's looked-up (or pooled) embedding (or ``(n, D)`` read in its columns
    ``[start, start + width)``): ``layers.embedding_backward`` or
    ``layers.pooled_embedding_backward``."""
    if field.kind == "categorical":
        return layers.embedding_backward(d_rows, column, field.vocab_size, start, width)
    return layers.pooled_embedding_backward(d_rows, column.values, column.offsets, field.vocab_size, field.pooling,
                                            start, width)


class SharedTables:
    """One step's work on the tables that teacher and student share (``shared.embed.<field>``).

    Forward: the first model to read a table computes the batch's rows (or pooled rows) and
    the second reuses them (``rows``): the same ids, the same table, the same values. Backward:
    each model's encoder adds its slice of ``dL/dx`` for the table (``add_gradient``: the
    teacher's, then the student's), and ``gradients()`` scatters the sum once per table:
    ``d_table[v] = sum_{i: id_i = v} (d_t[i] + d_s[i])``, the sum of the two paths'
    gradients (``distill.step_gradients``; docs/derivations.md). One instance serves one
    step; pass it to the ``forward`` of both models and call ``gradients()`` after both
    backward passes.
    """

    def __init__(self):
        self._rows, self._pending = {}, {}

    def rows(self, name: str, lookup) -> np.ndarray:
        """The rows of table ``name`` for this step's batch: ``lookup()`` the first time, the
        same array after."""
        if name not in self._rows:
            self._rows[name] = lookup()
        return self._rows[name]

    def add_gradient(self, name: str, field: FeatureSpec, column, d_rows: np.ndarray) -> None:
        """Add ``d_rows`` ``(n, d)`` to the pending gradient of table ``name``'s rows."""
        if name in self._pending:
            self._pending[name] = (field, column, self._pending[name][2] + d_rows)
        else:
            self._pending[name] = (field, column, d_rows)

    def gradients(self) -> dict[str, RowSparseGrad]:
        """Each shared table's row-sparse gradient (``table_gradient`` of the summed rows)."""
        return {name: table_gradient(field, column, d_rows) for name, (field, column, d_rows) in self._pending.items()}


class MLPStack:
    """The parameters of an MLP with layer sizes ``sizes = (in, h_1, ..., out)`` and its
    forward/backward (``layers.mlp_forward`` / ``layers.mlp_backward``).

    Layer ``j`` has ``{prefix}.{j}.weight (in_j, out_j)`` and ``{prefix}.{j}.bias (out_j,)``;
    with ``batch_norm`` a hidden layer has no bias (the batch mean subtraction cancels it) and
    instead ``{prefix}.{j}.bn.gamma``, ``{prefix}.{j}.bn.beta`` (trained) and the buffers
    ``{prefix}.{j}.bn.running_mean``, ``{prefix}.{j}.bn.running_var`` (running averages,
    never given a gradient, so no optimizer touches them). ``activation`` ("relu" or
    "leaky_relu") follows every hidden layer; the output layer is linear.
    """

    def __init__(self, prefix: str, sizes: tuple[int, ...], activation: str = "relu", batch_norm: bool = False):
        self.prefix = prefix
        self.sizes = tuple(int(s) for s in sizes)
        self.activation = layers.check_activation(activation)
        self.batch_norm = bool(batch_norm)
        last = len(self.sizes) - 2
        self.names = [(f"{prefix}.{j}.weight", None if self.batch_norm and j < last else f"{prefix}.{j}.bias")
                      for j in range(last + 1)]
        self.norm_names = [layers.BatchNormParams(*(f"{prefix}.{j}.bn.{part}" for part in layers.BatchNormParams._fields))
                           for j in range(last)] if self.batch_norm else []

    def param_names(self) -> list[str]:
        """The names of this MLP's parameters (buffers included), in ``init_params`` order."""
        return [name for pair in self.names for name in pair if name is not None] + \
            [name for norm in self.norm_names for name in norm]

    @property
    def buffer_names(self) -> tuple[str, ...]:
        """The running averages (not trained): ``{prefix}.{j}.bn.running_mean`` and ``.running_var``."""
        return tuple(name for norm in self.norm_names for name in (norm.running_mean, norm.running_var))

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        """Glorot-uniform weights, zero biases; with batch normalisation ``gamma = 1``,
        ``beta = 0``, ``running_mean = 0``, ``running_var = 1`` (PyTorch's and Keras's initial values)."""
        params = {}
        for (w_name, b_name), fan_in, fan_out in zip(self.names, self.sizes[:-1], self.sizes[1:]):
            params[w_name] = glorot_uniform(rng, fan_in, fan_out, dtype)
            if b_name is not None:
                params[b_name] = np.zeros(fan_out, dtype=dtype)
        for norm, width in zip(self.norm_names, self.sizes[1:]):
            params.update({norm.gamma: np.ones(width, dtype), norm.beta: np.zeros(width, dtype),
                           norm.running_mean: np.zeros(width, dtype), norm.running_var: np.ones(width, dtype)})
        return params

    def _norms(self, params: dict):
        return [layers.BatchNormParams(*(params[name] for name in norm)) for norm in self.norm_names] or None

    def forward(self, params: dict, x: np.ndarray, training: bool = False):
        """``layers.mlp_forward`` after checking ``x`` (finite) and the parameters (dtypes,
        shapes, finite; ``_check_mlp_params``): batch statistics when ``training``, else the
        running averages folded into the weights."""
        weights = [params[w] for w, _ in self.names]
        biases = [None if b is None else params[b] for _, b in self.names]
        norms = self._norms(params)
        _check_mlp_params(x, weights, biases, norms, training)
        return layers.mlp_forward(x, weights, biases, self.activation, norms, training)

    def backward(self, cache, d_out: np.ndarray, d_inputs: dict | None = None) -> tuple[np.ndarray, dict]:
        """``layers.mlp_backward`` on the cache of a training-mode ``forward`` (``ValueError``
        naming the cache for an evaluation-mode one with batch normalisation); ``d_inputs``
        as there (gradients that other readers send a hidden layer's output)."""
        d_x, d_weights, d_biases, d_norms = layers.mlp_backward(d_out, cache, d_inputs)
        grads = {}
        for (w_name, b_name), d_w, d_b in zip(self.names, d_weights, d_biases):
            grads[w_name] = d_w
            if b_name is not None:
                grads[b_name] = d_b
        for norm, (d_gamma, d_beta) in zip(self.norm_names, d_norms):
            grads[norm.gamma], grads[norm.beta] = d_gamma, d_beta
        return d_x, grads

    def running_averages(self, params: dict, cache) -> dict[str, np.ndarray]:
        """The buffers after the training-mode forward of ``cache``
        (``layers.batch_norm_running_average``, momentum ``layers.BATCH_NORM_MOMENTUM``);
        empty without batch normalisation."""
        updated = {}
        for norm, norm_cache in zip(self.norm_names, cache.norm_caches):
            updated[norm.running_mean], updated[norm.running_var] = layers.batch_norm_running_average(
                params[norm.running_mean], params[norm.running_var], norm_cache, layers.BATCH_NORM_MOMENTUM)
        return updated

    def folded_params(self, params: dict) -> dict[str, np.ndarray]:
        """The parameters of this MLP without batch normalisation (``{prefix}.{j}.weight`` and
        ``.bias`` for every layer) computing what an evaluation-mode ``forward`` computes:
        each batch-normalised layer folded with its running averages (``layers.fold_batch_norm``)."""
        out = {}
        for j, (w_name, b_name) in enumerate(self.names):
            if j < len(self.norm_names):
                folded_bias = f"{self.prefix}.{j}.bias"
                out[w_name], out[folded_bias] = layers.fold_batch_norm(
                    params[w_name], None, *(params[name] for name in self.norm_names[j]))
            else:
                out[w_name], out[b_name] = params[w_name], params[b_name]
        return out


def _table_names(prefix: str, fields, shared_fields: tuple[str, ...]) -> dict[str, str]:
    """Embedding-table parameter name of each field: ``{prefix}.embed.{field}``, or
    ``{SHARED_PREFIX}.embed.{field}`` for the fields in ``shared_fields`` (pfd_ref.distill.SHARING
    decides which those are)."""
    return {f.name: f"{SHARED_PREFIX if f.name in shared_fields else prefix}.embed.{f.name}" for f in fields}


def _exported_tables(trained: FieldEncoder, served: FieldEncoder, params: dict) -> dict[str, np.ndarray]:
    """The tables of ``trained`` under the names of ``served`` (the same fields, none shared):
    a table shared with a teacher in training (``shared.embed.<field>``) is served as the
    model's own (``<prefix>.embed.<field>``), so a served student does not depend on how it
    was trained."""
    return {served.table_names[field]: params[name] for field, name in trained.table_names.items()}


def check_tower_norm(tower_norm, tower_scale) -> tuple[str, float]:
    """Return ``(tower_norm, float(tower_scale))``; ``ValueError`` naming the bad one."""
    return (check_choice("tower_norm", tower_norm, TOWER_NORMS),
            check_scalar("tower_scale", tower_scale, float, low=0, low_open=True))  # it multiplies every score


class MLPRanker:
    """``logit_i = MLP(x_i)[0]`` with ``x = FieldEncoder(fields)(batch)``.

    Shapes: batch of ``n`` rows -> ``x (n, D)`` -> logits ``(n,)``; ``hidden`` gives the
    hidden sizes, each followed by ``activation`` ("relu" or "leaky_relu") with batch
    normalisation before it when ``batch_norm`` (``MLPStack``); the output layer has one unit
    and no activation.
    """

    kind = "mlp"

    def __init__(self, prefix: str, fields, embed_dim: int = 16, hidden=(64, 32), shared_fields=(),
                 activation: str = "relu", batch_norm: bool = False):
        self.prefix = prefix
        self.fields = tuple(fields)
        self.embed_dim = int(embed_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.shared_fields = tuple(shared_fields)
        self.encoder = FieldEncoder(self.fields, self.embed_dim, _table_names(prefix, self.fields, self.shared_fields))
        self.mlp = MLPStack(f"{prefix}.mlp", (self.encoder.output_dim, *self.hidden, 1), activation, batch_norm)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def buffer_names(self) -> tuple[str, ...]:
        """Parameters that are running averages, not trained (batch normalisation)."""
        return self.mlp.buffer_names

    def param_names(self) -> list[str]:
        """The names of the parameters this model reads, in ``init_params`` order."""
        return [*self.encoder.table_names.values(), *self.mlp.param_names()]

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
        dtype = float_dtype("dtype", dtype)
        return {**self.encoder.init_params(rng, dtype), **self.mlp.init_params(rng, dtype)}

    def forward(self, params: dict, batch: Dataset, training: bool = False,
                shared: SharedTables | None = None) -> tuple[np.ndarray, tuple]:
        """Return logits ``(n,)`` and the cache for ``backward``. ``training``: batch
        normalisation uses the batch's statistics (and ``backward`` is possible); otherwise
        (evaluation, serving) its running averages. ``shared``: the step's ``SharedTables``
        (the tables this model shares with another are looked up once and get their
        gradient from it)."""
        check_params_present(self, params)
        x, encoder_cache = self.encoder.forward(params, batch, params[self.mlp.names[0][0]].dtype, shared)
        out, mlp_cache = self.mlp.forward(params, x, training)
        return out[:, 0], (encoder_cache, mlp_cache)

    def first_hidden(self, cache: tuple) -> np.ndarray:
        """``h_1``, the output of the first hidden layer (after its activation), shape
        ``(n, hidden[0])``, from the cache of ``forward``: what the auxiliary heads of the MTL
        control read (``pfd_ref.auxiliary``)."""
        return cache[1].inputs[1]

    def backward(self, params: dict, cache: tuple, d_logits: np.ndarray, d_first_hidden: np.ndarray | None = None) -> dict:
        """Gradients of ``sum_i d_logits_i * logit_i`` for every trained parameter (embeddings
        row-sparse; none for the buffers). ``d_first_hidden`` ``(n, hidden[0])``: the gradient
        that other readers of ``first_hidden`` send it (the MTL control's auxiliary losses),
        added where the recursion reaches ``h_1``; None for none."""
        encoder_cache, mlp_cache = cache
        d_logits = _check_d_logits(d_logits, mlp_cache.inputs[0].shape[0], mlp_cache.inputs[0].dtype)
        d_inputs = None if d_first_hidden is None else {1: d_first_hidden}
        d_x, grads = self.mlp.backward(mlp_cache, d_logits[:, None], d_inputs)
        return {**grads, **self.encoder.backward(encoder_cache, d_x)}

    def running_averages(self, params: dict, cache: tuple) -> dict[str, np.ndarray]:
        """The buffers after the training-mode forward of ``cache`` (empty without batch normalisation)."""
        return self.mlp.running_averages(params, cache[1])

    def exported(self, params: dict) -> tuple["MLPRanker", dict]:
        """The model to serve and its parameters: batch normalisation folded into the linear
        layers (``MLPStack.folded_params``), buffers dropped, tables shared in training renamed
        to the model's own (``_exported_tables``); the same logits as ``forward`` in evaluation
        mode, up to rounding."""
        served = MLPRanker(self.prefix, self.fields, self.embed_dim, self.hidden, (), self.mlp.activation)
        return served, {**_exported_tables(self.encoder, served.encoder, params), **self.mlp.folded_params(params)}

    def config(self) -> dict:
        return {
            "kind": self.kind, "prefix": self.prefix, "fields": [f.to_dict() for f in self.fields],
            "embed_dim": self.embed_dim, "hidden": list(self.hidden), "shared_fields": list(self.shared_fields),
            "activation": self.mlp.activation, "batch_norm": self.mlp.batch_norm,
        }


class TwoTower:
    """``logit_i = S <f(u_i), f(v_i)> + b`` with ``u = MLP_user(x_user) (n, k)``,
    ``v = MLP_item(x_item) (n, k)``.

    ``user_fields`` feed the user tower and ``item_fields`` the item tower; ``tower_hidden``
    are the hidden sizes of both towers (each followed by ``activation``, with batch
    normalisation before it when ``batch_norm``) and ``out_dim = k`` their output width (a
    linear last layer). ``f`` is the identity (``tower_norm="none"``) or the l2 normalisation
    ``u / max(||u||, layers.L2_NORM_EPS)`` (``"l2"``, the paper's); ``S = tower_scale > 0``
    (the paper: 5 with l2). ``b`` (parameter ``{prefix}.bias``, shape ``(1,)``) is present
    when ``bias``.
    """

    kind = "two_tower"

    def __init__(self, prefix: str, user_fields, item_fields, embed_dim: int = 16, tower_hidden=(64,),
                 out_dim: int = 32, bias: bool = True, shared_fields=(), activation: str = "relu",
                 batch_norm: bool = False, tower_norm: str = "none", tower_scale: float = 1.0):
        self.prefix = prefix
        self.user_fields = tuple(user_fields)
        self.item_fields = tuple(item_fields)
        self.embed_dim = int(embed_dim)
        self.tower_hidden = tuple(int(h) for h in tower_hidden)
        self.out_dim = int(out_dim)
        self.bias = bool(bias)
        self.shared_fields = tuple(shared_fields)
        self.tower_norm, self.tower_scale = check_tower_norm(tower_norm, tower_scale)
        names = _table_names(prefix, self.user_fields + self.item_fields, self.shared_fields)
        self.user_encoder = FieldEncoder(self.user_fields, self.embed_dim, names)
        self.item_encoder = FieldEncoder(self.item_fields, self.embed_dim, names)
        self.user_mlp = MLPStack(f"{prefix}.user_tower", (self.user_encoder.output_dim, *self.tower_hidden, self.out_dim),
                                 activation, batch_norm)
        self.item_mlp = MLPStack(f"{prefix}.item_tower", (self.item_encoder.output_dim, *self.tower_hidden, self.out_dim),
                                 activation, batch_norm)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.user_fields + self.item_fields)

    @property
    def buffer_names(self) -> tuple[str, ...]:
        """Parameters that are running averages, not trained (batch normalisation)."""
        return self.user_mlp.buffer_names + self.item_mlp.buffer_names

    def param_names(self) -> list[str]:
        """The names of the parameters this model reads, in ``init_params`` order."""
        names = [*self.user_encoder.table_names.values(), *self.item_encoder.table_names.values()]
        names += [*self.user_mlp.param_names(), *self.item_mlp.param_names()]
        return names + ([f"{self.prefix}.bias"] if self.bias else [])

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
        dtype = float_dtype("dtype", dtype)
        params = {
            **self.user_encoder.init_params(rng, dtype), **self.item_encoder.init_params(rng, dtype),
            **self.user_mlp.init_params(rng, dtype), **self.item_mlp.init_params(rng, dtype),
        }
        if self.bias:
            params[f"{self.prefix}.bias"] = np.zeros(1, dtype=dtype)
        return params

    def _dtype(self, params: dict) -> np.dtype:
        """The parameters' dtype (every forward path starts here, so it checks that none is missing)."""
        check_params_present(self, params)
        return params[self.user_mlp.names[0][0]].dtype

    def _normalized(self, tower_output: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(f(u), ||u||)`` with ``f`` the tower normalisation (norms None for "none")."""
        if self.tower_norm == "none":
            return tower_output, None
        return layers.l2_normalize_forward(tower_output, layers.L2_NORM_EPS)

    def user_vectors(self, params: dict, batch: Dataset) -> np.ndarray:
        """``f(u)`` of shape ``(n, out_dim)``: the user tower's output, l2-normalised when
        ``tower_norm`` is "l2" (evaluation mode; for serving)."""
        x = self.user_encoder.forward(params, batch, self._dtype(params))[0]
        return self._normalized(self.user_mlp.forward(params, x)[0])[0]

    def item_vectors(self, params: dict, batch: Dataset) -> np.ndarray:
        """``f(v)`` of shape ``(n, out_dim)``, as ``user_vectors`` (precomputed offline for serving)."""
        x = self.item_encoder.forward(params, batch, self._dtype(params))[0]
        return self._normalized(self.item_mlp.forward(params, x)[0])[0]

    def forward(self, params: dict, batch: Dataset, training: bool = False,
                shared: SharedTables | None = None) -> tuple[np.ndarray, tuple]:
        """Return logits ``(n,)`` and the cache for ``backward``; ``training`` and ``shared`` as
        in ``MLPRanker.forward``."""
        x_user, user_enc_cache = self.user_encoder.forward(params, batch, self._dtype(params), shared)
        x_item, item_enc_cache = self.item_encoder.forward(params, batch, self._dtype(params), shared)
        u, user_cache = self.user_mlp.forward(params, x_user, training)
        v, item_cache = self.item_mlp.forward(params, x_item, training)
        (u_hat, u_norms), (v_hat, v_norms) = self._normalized(u), self._normalized(v)
        logits = layers.inner_product_forward(u_hat, v_hat, self.tower_scale, self._bias(params, u.dtype))
        return logits, (user_enc_cache, item_enc_cache, user_cache, item_cache, u_hat, v_hat, u_norms, v_norms)

    def _bias(self, params: dict, dtype: np.dtype) -> np.ndarray | None:
        """The bias ``(1,)`` (checked: dtype, shape, finite), or None for a model without one."""
        if not self.bias:
            return None
        name = f"{self.prefix}.bias"
        bias = check_float_array(f"params[{name!r}]", params[name], ndim=1, dtype=dtype)
        check_shape(f"params[{name!r}]", bias, (1,))
        return bias

    def backward(self, params: dict, cache: tuple, d_logits: np.ndarray) -> dict:
        """Gradients of ``sum_i d_logits_i * logit_i``: ``layers.inner_product_backward``
        (``d_f(u) = S d_logits * f(v)``, ``d_f(v) = S d_logits * f(u)``, the bias's ``d_b``);
        through the l2 normalisation (``layers.l2_normalize_backward``) when ``tower_norm`` is
        "l2"; then each tower's MLP and encoder backward."""
        user_enc_cache, item_enc_cache, user_cache, item_cache, u_hat, v_hat, u_norms, v_norms = cache
        d_logits = _check_d_logits(d_logits, u_hat.shape[0], u_hat.dtype)
        bias = params[f"{self.prefix}.bias"] if self.bias else None
        d_u, d_v, d_bias = layers.inner_product_backward(d_logits, u_hat, v_hat, self.tower_scale, bias)
        if self.tower_norm == "l2":
            d_u = layers.l2_normalize_backward(d_u, u_hat, u_norms, layers.L2_NORM_EPS)
            d_v = layers.l2_normalize_backward(d_v, v_hat, v_norms, layers.L2_NORM_EPS)
        d_x_user, grads = self.user_mlp.backward(user_cache, d_u)
        d_x_item, item_grads = self.item_mlp.backward(item_cache, d_v)
        grads.update(item_grads)
        if self.bias:
            grads[f"{self.prefix}.bias"] = d_bias
        grads.update(self.user_encoder.backward(user_enc_cache, d_x_user))
        grads.update(self.item_encoder.backward(item_enc_cache, d_x_item))
        return grads

    def running_averages(self, params: dict, cache: tuple) -> dict[str, np.ndarray]:
        """The buffers of both towers after the training-mode forward of ``cache``."""
        return {**self.user_mlp.running_averages(params, cache[2]), **self.item_mlp.running_averages(params, cache[3])}

    def exported(self, params: dict) -> tuple["TwoTower", dict]:
        """The model to serve and its parameters: each tower's batch normalisation folded into
        its linear layers (``MLPStack.folded_params``), buffers dropped, tables shared in training
        renamed to the model's own (``_exported_tables``); ``tower_norm`` and ``tower_scale`` kept
        (serving normalises and scales as ``forward`` does)."""
        served = TwoTower(self.prefix, self.user_fields, self.item_fields, self.embed_dim, self.tower_hidden,
                          self.out_dim, self.bias, (), self.user_mlp.activation, False, self.tower_norm, self.tower_scale)
        tables = {**_exported_tables(self.user_encoder, served.user_encoder, params),
                  **_exported_tables(self.item_encoder, served.item_encoder, params)}
        bias = {f"{self.prefix}.bias": params[f"{self.prefix}.bias"]} if self.bias else {}
        return served, {**tables, **self.user_mlp.folded_params(params), **self.item_mlp.folded_params(params), **bias}

    def config(self) -> dict:
        return {
            "kind": self.kind, "prefix": self.prefix,
            "user_fields": [f.to_dict() for f in self.user_fields],
            "item_fields": [f.to_dict() for f in self.item_fields],
            "embed_dim": self.embed_dim, "tower_hidden": list(self.tower_hidden), "out_dim": self.out_dim,
            "bias": self.bias, "shared_fields": list(self.shared_fields), "activation": self.user_mlp.activation,
            "batch_norm": self.user_mlp.batch_norm, "tower_norm": self.tower_norm, "tower_scale": self.tower_scale,
        }


class MultiHeadRanker(MLPRanker):
    """A shared-bottom multi-objective ranker: ``logits_i = MLP(x_i)`` of shape ``(K,)``, one
    logit per objective.

    The bottom is the MLP's hidden layers (``hidden``, each followed by ``activation``, with
    batch normalisation before it when ``batch_norm``), shared by every objective; head ``k``
    is column ``k`` of the linear output layer ``{prefix}.mlp.{L}.weight (hidden[-1], K)`` and
    its bias entry ``{prefix}.mlp.{L}.bias[k]`` (``L = len(hidden)``): ``z_ik = h_i . W_L[:, k]
    + b_L[k]``. Shapes: batch of ``n`` rows -> ``x (n, D)`` -> logits ``(n, K)``.
    ``objectives`` names the heads in order; ``distilled`` the heads that a teacher's soft
    labels reach in training (``pfd_ref.multihead.build_objective_models`` sets it by the
    leakage rule; it does not change what the model computes).
    """

    kind = "multihead"

    def __init__(self, prefix: str, fields, objectives, embed_dim: int = 16, hidden=(64, 32), shared_fields=(),
                 activation: str = "relu", batch_norm: bool = False, distilled=()):
        super().__init__(prefix, fields, embed_dim, hidden, shared_fields, activation, batch_norm)
        self.objectives, self.distilled = tuple(objectives), tuple(distilled)
        if not self.objectives or not set(self.distilled) <= set(self.objectives):
            raise ValueError(f"objectives: a multi-head model needs at least one head, and distilled heads among them "
                             f"(got {list(self.objectives)}, distilled {list(self.distilled)})")
        self.mlp = MLPStack(f"{prefix}.mlp", (self.encoder.output_dim, *self.hidden, len(self.objectives)), activation,
                            batch_norm)

    def forward(self, params: dict, batch: Dataset, training: bool = False,
                shared: SharedTables | None = None) -> tuple[np.ndarray, tuple]:
        """Return logits ``(n, K)`` and the cache for ``backward`` (``training`` and ``shared``
        as in ``MLPRanker.forward``)."""
        x, encoder_cache = self.encoder.forward(params, batch, params[self.mlp.names[0][0]].dtype, shared)
        out, mlp_cache = self.mlp.forward(params, x, training)
        return out, (encoder_cache, mlp_cache)

    def backward(self, params: dict, cache: tuple, d_logits: np.ndarray) -> dict:
        """Gradients of ``sum_ik d_logits_ik * z_ik`` (``d_logits (n, K)``) for every trained
        parameter: ``layers.mlp_backward`` with the heads' gradients as the output layer's
        (``dW_L = h^T dZ``, ``db_L = 1^T dZ``, ``dh = dZ W_L^T``), then the encoder's."""
        encoder_cache, mlp_cache = cache
        x = mlp_cache.inputs[0]
        d_logits = check_float_dtype("d_logits", d_logits, x.dtype)
        check_shape("d_logits", d_logits, (x.shape[0], len(self.objectives)))
        d_x, grads = self.mlp.backward(mlp_cache, d_logits)
        return {**grads, **self.encoder.backward(encoder_cache, d_x)}

    def exported(self, params: dict) -> tuple["MultiHeadRanker", dict]:
        """As ``MLPRanker.exported``: batch normalisation folded, tables renamed to the model's own."""
        served = MultiHeadRanker(self.prefix, self.fields, self.objectives, self.embed_dim, self.hidden, (),
                                 self.mlp.activation)
        return served, {**_exported_tables(self.encoder, served.encoder, params), **self.mlp.folded_params(params)}

    def config(self) -> dict:
        return {**super().config(), "objectives": list(self.objectives), "distilled": list(self.distilled)}


def build_model(config: dict):
    """Rebuild an ``MLPRanker``, ``TwoTower`` or ``MultiHeadRanker`` from its ``config()`` dict."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in MODEL_KINDS:
        raise ValueError(f"config: unknown model kind {kind!r}; expected one of {tuple(MODEL_KINDS)}")
    try:
        for key in ("fields", "user_fields", "item_fields"):
            if key in config:
                config[key] = [FeatureSpec.from_dict(f) for f in config[key]]
        return MODEL_KINDS[kind](**config)
    except (TypeError, KeyError) as error:
        raise ValueError(f"config: not the config() of a {kind} model ({error})") from None




MODEL_KINDS = {model.kind: model for model in (MLPRanker, TwoTower, MultiHeadRanker)}
