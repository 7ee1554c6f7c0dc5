"""Several binary objectives per row: the data of a multi-head ranker (short-video ranking).

A short-video ranker estimates, for one impression, the click and the interactions after it
(like, comment, forward, follow, entering the author's profile). ``ObjectiveSet`` names the
objectives of a run and says, for each:

* ``scope``: ``"all"`` (the head is trained and evaluated on every row: the click) or
  ``"played"`` (a post-play interaction: trained and evaluated on the played rows only);
* ``weight`` ``w_k >= 0``: its weight in the sum of the heads' losses;
* ``revealed_by``: the privileged columns that give its label away. The watch time is non-zero
  only after a play, so for the click it is the label in disguise; the comment-area stay time
  is non-zero for (nearly) every comment. ``pfd_ref.multihead.distilled_objectives`` never
  distils a head from a teacher that reads one of its revealing columns.

``ObjectiveData`` is a ``Dataset`` whose ``labels`` are the first objective's, with the
``targets`` ``(n, K)`` int8 of every objective and the played-row indicator ``played``
``(n,)`` bool. ``masks(names, dtype)`` gives ``m_ik = 1`` where row ``i`` counts for
objective ``k`` (every row for scope "all", the played rows for "played").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pfd_ref.data.dataset import Dataset
from pfd_ref.validation import check_choice, check_ids, check_labels, check_scalar

SCOPES = ("all", "played")


@dataclass(frozen=True)
class ObjectiveSet:
    """The objectives of a multi-head run, in head order (validated on construction).

    names : non-empty, unique, without ``.``; scopes : one of ``SCOPES`` per objective;
    weights : ``w_k >= 0``, finite, one per objective, not all 0 (``ValueError`` naming
    ``objective_weights`` when their number differs); revealed_by : per objective, the
    privileged column names that give its label away (tuple of tuples).
    """

    names: tuple
    scopes: tuple
    weights: tuple
    revealed_by: tuple

    def __post_init__(self):
        names = tuple(self.names)
        if not names:
            raise ValueError("objectives: at least one objective is needed")
        for name in names:
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"objectives: expected column names without '.', got {name!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"objectives: {sorted({n for n in names if names.count(n) > 1})} named twice")
        weights = tuple(self.weights)
        if len(weights) != len(names):
            raise ValueError(f"objective_weights: {len(weights)} weight(s) for {len(names)} objective(s) "
                             f"{list(names)}; give one weight per objective, in the same order")
        weights = tuple(check_scalar(f"objective_weights[{k}]", w, float, low=0) for k, w in enumerate(weights))
        if not any(weights):
            raise ValueError("objective_weights: every weight is 0; no head would be trained")
        scopes = tuple(check_choice(f"scopes[{k}]", s, SCOPES) for k, s in enumerate(self.scopes))
        if len(scopes) != len(names) or len(self.revealed_by) != len(names):
            raise ValueError(f"objectives: scopes and revealed_by need one entry per objective ({len(names)})")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "scopes", scopes)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "revealed_by", tuple(tuple(r) for r in self.revealed_by))

    def index(self, names) -> np.ndarray:
        """The head positions of ``names`` (int64 ``(len(names),)``), in that order."""
        return np.array([self.names.index(name) for name in names], dtype=np.int64)

    def to_dict(self) -> dict:
        return {"names": list(self.names), "scopes": list(self.scopes), "weights": list(self.weights),
                "revealed_by": [list(r) for r in self.revealed_by]}


class ObjectiveData(Dataset):
    """A ``Dataset`` with ``K`` binary objectives (``ObjectiveSet``) per row.

    ObjectiveData(schema, columns, objectives, targets (n, K), played (n,), user_ids, day=None,
    weights=None): ``targets[:, k]`` is objective ``k``'s 0/1 label (``ValueError`` naming the
    objective's column otherwise), ``played`` a 0/1 or bool indicator of the played rows.
    An objective cannot be a column of the schema (``ValueError`` naming it: a head would
    read its own label). ``labels`` is ``targets[:, 0]``.
    """

    def __init__(self, schema, columns: dict, objectives: ObjectiveSet, targets, played, user_ids, day=None,
                 weights=None):
        if not isinstance(objectives, ObjectiveSet):
            raise ValueError(f"objectives: expected an ObjectiveSet, got {type(objectives).__name__}")
        for name in objectives.names:
            if name in schema.names:
                role = schema[name].role
                raise ValueError(f"objectives: {name!r} is a {role} column of the data; an objective cannot also be a "
                                 "feature (its head, or a teacher, would read its own label)")
        targets = np.asarray(targets)
        if targets.ndim != 2 or targets.shape[1] != len(objectives.names):
            raise ValueError(f"targets: expected shape (n, {len(objectives.names)}), got {targets.shape}")
        n = targets.shape[0]
        for k, name in enumerate(objectives.names):
            check_labels(f"objectives: column {name!r}", targets[:, k], n)
        played = check_labels("played", played, n).astype(bool)
        super().__init__(schema, columns, targets[:, 0], user_ids, day, weights)
        self.objectives, self.targets, self.played = objectives, targets.astype(np.int8), played

    def take(self, indices) -> "ObjectiveData":
        """Rows ``indices`` (as ``Dataset.take``), with their targets and played flags."""
        indices = check_ids("indices", indices, self.n)
        base = Dataset.take(self, indices)
        taken = ObjectiveData.__new__(ObjectiveData)
        taken.__dict__.update(base.__dict__)
        taken.objectives, taken.targets, taken.played = self.objectives, self.targets[indices], self.played[indices]
        return taken

    def labels_of(self, names) -> np.ndarray:
        """The 0/1 labels of the objectives ``names``, int8 ``(n, len(names))``."""
        return self.targets[:, self.objectives.index(names)]

    def masks(self, names, dtype) -> np.ndarray:
        """``m (n, len(names))`` in ``dtype``: ``m_ik = 1`` where row ``i`` counts for objective
        ``names[k]`` (every row for scope "all", the played rows for "played"), else 0."""
        played = self.played.astype(dtype)
        ones = np.ones(self.n, dtype=dtype)
        scopes = [self.objectives.scopes[k] for k in self.objectives.index(names)]
        return np.stack([ones if scope == "all" else played for scope in scopes], axis=1) if scopes else \
            np.zeros((self.n, 0), dtype=dtype)

    def positives(self) -> dict[str, tuple[int, int]]:
        """Per objective ``(positives, rows in its scope)``."""
        masks = self.masks(self.objectives.names, np.bool_)
        return {name: (int(self.targets[masks[:, k], k].sum()), int(masks[:, k].sum()))
                for k, name in enumerate(self.objectives.names)}

    def __repr__(self) -> str:
        return f"ObjectiveData(n={self.n}, objectives={list(self.objectives.names)}, played={int(self.played.sum())})"


def check_trainable(data: ObjectiveData, split: str = "training split") -> None:
    """ValueError naming the first objective with no positive (or no negative) row in its
    scope of ``data`` (the training split): its head would have nothing to learn."""
    for name, (positives, rows) in data.positives().items():
        if positives == 0 or positives == rows:
            what = "no positive" if positives == 0 else "no negative"
            raise ValueError(f"objectives: {name!r} has {what} in the {split} ({rows} rows in its scope); "
                             "drop it from --objectives or use more data")


def evaluable(data: ObjectiveData, min_positives: int) -> tuple[list[str], dict[str, str]]:
    """``(names, skipped)``: the objectives of ``data`` (a test split) with at least
    ``min_positives`` positive and as many negative rows in their scope and a user with both
    classes there (else GAUC is undefined), and each other one with the reason it is skipped."""
    names, skipped = [], {}
    masks = data.masks(data.objectives.names, np.bool_)
    for k, (name, (positives, rows)) in enumerate(data.positives().items()):
        labels, users = data.targets[masks[:, k], k], data.user_ids[masks[:, k]]
        if positives < min_positives or rows - positives < min_positives:
            skipped[name] = (f"{positives} positive(s) among {rows} rows in its scope of the test split; fewer than "
                             f"{min_positives} of a class give no usable AUC")
        elif not np.intersect1d(users[labels == 1], users[labels == 0]).size:
            skipped[name] = f"no user has both classes among its {rows} test rows (GAUC undefined)"
        else:
            names.append(name)
    return names, skipped
