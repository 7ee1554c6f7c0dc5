"""Multi-objective PFD: a multi-head student distilled head by head (short-video ranking).

The student is a ``models.MultiHeadRanker`` over the regular fields with one logit head per
objective ``k = 1..K`` of an ``ObjectiveSet``; the teacher of a method (``distill.METHOD_RULES``,
``TEACHER_FIELDS``, ``SHARING``: the same table as the one-label case) is a multi-head ranker
too, over its fields, with a head for each *distilled* objective. The student minimises

    L_s = sum_k w_k [ (1 - lambda_k) L_hard,k(y_k, s_k) + lambda_k L_soft,k(s_k, t_k) ]

and a synchronous teacher ``L_t = sum_{k distilled} w_k L_hard,k(y_k, t_k)``, where
``lambda_k = lambda`` (``distill.lambda_at``) for a distilled head and 0 otherwise, and each
head's losses are ``losses.hard_loss`` / ``losses.soft_loss`` with the row weights
``r_ik = m_ik * w_i`` (``m_ik`` = 1 where row ``i`` is in objective ``k``'s scope:
``ObjectiveData.masks``). The stop-gradient holds per head: ``t_k`` is a constant in
``L_soft,k``, so the teacher moves by its own hard losses only.

**The leakage rule** (``distilled_objectives``): a head is distilled only when its teacher
reads none of the columns that give its label away (``ObjectiveSet.revealed_by``). The watch
time is non-zero only after a play, so a teacher that reads it knows the click; the click
head (scope "all": trained and evaluated on every row) is therefore trained on its hard loss
alone under pfd, pfd+md and lupi, and distilled only from md's teacher, which reads no
privileged column. The interaction heads (scope "played": trained and evaluated on the
played rows) are distilled from the watch-time teacher, except one whose own revealing
column (e.g. the comment-area stay time for the comment) the teacher reads. A method whose
teacher would distil no head is refused. The student reads no privileged column (its fields
are ``schema.regular()``), and no model reads an objective (``ObjectiveData`` refuses an
objective that is also a column).
"""

from __future__ import annotations

import numpy as np

from pfd_ref.data.objectives import ObjectiveData, ObjectiveSet
from pfd_ref.distill import (METHOD_RULES, TEACHER_FIELDS, DistillConfig, ModelSizes, StepOutput, check_method_fits,
                             lambda_at, shared_fields, student_objective)
from pfd_ref.models import MultiHeadRanker, SharedTables


def distilled_objectives(objectives: ObjectiveSet, teacher_fields) -> tuple[str, ...]:
    """The leakage rule: the objectives, in head order, whose label none of ``teacher_fields``
    (the names of the columns a teacher reads) gives away (``objectives.revealed_by``)."""
    reads = set(teacher_fields)
    return tuple(name for name, revealing in zip(objectives.names, objectives.revealed_by) if not reads & set(revealing))


def build_objective_models(schema, objectives: ObjectiveSet, method: str, sizes: ModelSizes, sharing: str = "none"):
    """``(student, teacher or None)`` for multi-objective ``method``: ``MultiHeadRanker``s, the
    student over ``schema.regular()`` with a head per objective (``student.distilled``: the
    heads its teacher distils), the teacher over the method's ``TEACHER_FIELDS`` (its
    ``sizes.strong_hidden`` for "strong", else ``sizes.student_hidden``) with a head per
    distilled objective (``distilled_objectives``). ``sharing`` as in ``distill.build_models``.
    ValueError naming ``method`` for mtl (no auxiliary heads here) or for a teacher that could
    distil no head without reading its label."""
    rule = check_method_fits(schema, method, "mlp", sizes)
    if rule.auxiliary:
        raise ValueError(f"method: {method!r} is not defined for the multi-head student (its auxiliary heads are "
                         "defined on a one-label student); choose among baseline, md, lupi, pfd, pfd+md")
    teacher_fields = TEACHER_FIELDS[rule.teacher_fields](schema) if rule.teacher else ()
    distilled = distilled_objectives(objectives, (f.name for f in teacher_fields)) if rule.teacher else ()
    if rule.teacher and not distilled:
        raise ValueError(f"method: {method!r}'s teacher reads a column that gives away the label of every objective "
                         f"{list(objectives.names)} (ObjectiveSet.revealed_by), so no head may be distilled from it")
    teacher_reads = {f.name for f in teacher_fields}
    shared = tuple(name for name in shared_fields(schema, sharing) if name in teacher_reads)
    options = dict(shared_fields=shared, activation=sizes.activation, batch_norm=sizes.batch_norm)
    student = MultiHeadRanker("student", schema.regular(), objectives.names, sizes.embed_dim, sizes.student_hidden,
                              distilled=distilled, **options)
    if not rule.teacher:
        return student, None
    hidden = sizes.strong_hidden if rule.teacher == "strong" else sizes.student_hidden
    return student, MultiHeadRanker("teacher", teacher_fields, distilled, sizes.embed_dim, hidden, **options)


def multi_objective_loss(logits: np.ndarray, labels: np.ndarray, row_weights: np.ndarray, head_weights,
                         teacher_logits: np.ndarray | None, distilled, lam: float, config: DistillConfig,
                         names) -> tuple[dict, np.ndarray]:
    """``L = sum_k w_k [ a(lambda_k) H_k + lambda_k S_k ]`` and ``dL/dz`` ``(n, K)``.

    logits ``z (n, K)``; labels ``y (n, K)`` 0/1; row_weights ``r (n, K)`` (``m_ik w_i``, the
    logits' dtype); head_weights ``w (K,)``; teacher_logits ``t (n, K)`` (read only at the
    distilled heads; None without a teacher); distilled ``(K,)`` bool; ``lambda_k = lam`` at a
    distilled head, else 0; ``a`` as ``config.hard_weight``; names ``(K,)`` the objectives.
    Head ``k`` is ``distill.student_objective(z_k, y_k, t_k, lambda_k, config, r_k)``:
    ``H_k = hard_loss(z_k, y_k, r_k) = sum_i r_ik l(z_ik, y_ik) / n``, ``S_k = soft_loss(z_k,
    t_k, T, r_k)``, and ``dL/dz_k = w_k (a(lambda_k) dH_k/dz_k + lambda_k dS_k/dz_k)``.
    Returns ``(terms, d_logits)``: ``hard.<name>``, ``soft.<name>`` (distilled heads) and
    ``hard = sum_k w_k H_k``, ``soft = sum_{k distilled} w_k S_k``, ``student_total = L``.
    """
    terms, d_logits = {}, np.zeros_like(logits)
    hard = soft = total = logits.dtype.type(0)
    for k, name in enumerate(names):
        teacher_k = teacher_logits[:, k] if teacher_logits is not None and distilled[k] else None
        head, d_logits[:, k] = student_objective(logits[:, k], labels[:, k], teacher_k,
                                                 lam if teacher_k is not None else 0.0, config, row_weights[:, k])
        weight = logits.dtype.type(head_weights[k])
        d_logits[:, k] *= weight
        terms[f"hard.{name}"] = head["hard"]
        hard = hard + weight * head["hard"]
        if teacher_k is not None:
            terms[f"soft.{name}"] = head["soft"]
            soft = soft + weight * head["soft"]
        total = total + weight * head["student_total"]
    terms.update(hard=hard, soft=soft if teacher_logits is not None else np.nan, student_total=total)
    return terms, d_logits


def _head_inputs(batch: ObjectiveData, names, dtype):
    """Labels ``(n, K)``, row weights ``r = m * w`` ``(n, K)`` and head weights ``(K,)`` of ``names``."""
    rows = batch.masks(names, dtype)
    if batch.weights is not None:
        rows = rows * batch.weights.astype(dtype, copy=False)[:, None]
    head_weights = np.array([batch.objectives.weights[k] for k in batch.objectives.index(names)])
    return batch.labels_of(names), rows, head_weights


def objective_step_gradients(student: MultiHeadRanker, teacher: MultiHeadRanker | None, params: dict,
                             batch: ObjectiveData, step: int, config: DistillConfig,
                             frozen_teacher_logits: np.ndarray | None = None, auxiliary=None) -> StepOutput:
    """``distill.step_gradients`` for multi-head models (``train.run_step`` calls it for a
    ``MultiHeadRanker`` student): losses and gradients of step ``step`` on ``batch``.

    Sync (``teacher``): the teacher's gradient is that of ``L_t``, the sum of its heads' hard
    losses; the student's that of ``L_s`` (``multi_objective_loss``) with the teacher's logits
    as constants, head by head; a shared table gets the sum of both paths
    (``models.SharedTables``). Two-stage: ``frozen_teacher_logits`` ``(n, len(student.distilled))``.
    Neither: the student's hard losses only (the baseline, or a teacher trained alone).
    ``terms``: the student's (``multi_objective_loss``), ``teacher_hard`` (sync) and ``total``.
    """
    if auxiliary is not None:
        raise ValueError("auxiliary: the multi-head student has no auxiliary heads")
    dtype = params[student.mlp.names[0][0]].dtype
    grads, terms, buffers = {}, {}, {}
    shared = SharedTables() if teacher is not None else None
    distilled_logits = frozen_teacher_logits
    if teacher is not None:
        distilled_logits, t_cache = teacher.forward(params, batch, training=True, shared=shared)
        t_terms, d_t = multi_objective_loss(distilled_logits, *_head_inputs(batch, teacher.objectives, dtype),
                                            None, np.zeros(len(teacher.objectives), bool), 0.0, config,
                                            teacher.objectives)
        grads = teacher.backward(params, t_cache, d_t)
        buffers = teacher.running_averages(params, t_cache)
        terms["teacher_hard"] = t_terms["student_total"]
    teacher_logits, distilled = None, np.isin(student.objectives, student.distilled)
    if distilled_logits is not None:  # the teacher's heads placed at the student's distilled heads
        teacher_logits = np.zeros((batch.n, len(student.objectives)), dtype=distilled_logits.dtype)
        teacher_logits[:, distilled] = distilled_logits
    lam = 0.0 if teacher_logits is None else lambda_at(step, config)
    s_logits, s_cache = student.forward(params, batch, training=True, shared=shared)
    student_terms, d_s = multi_objective_loss(s_logits, *_head_inputs(batch, student.objectives, dtype),
                                              teacher_logits, distilled, lam, config, student.objectives)
    terms.update(student_terms)
    terms["total"] = terms["student_total"] + terms.get("teacher_hard", 0)
    grads.update(student.backward(params, s_cache, d_s))
    if shared is not None:
        grads.update(shared.gradients())
    buffers.update(student.running_averages(params, s_cache))
    return StepOutput(lam, s_logits, distilled_logits, terms, grads, buffers)
