"""Feature schema: which columns exist, what they hold, and who may read them.

Every column of a dataset is described by one ``FeatureSpec``:

* ``kind``: ``"categorical"`` (one id per row, in ``[0, vocab_size)``),
  ``"multi_categorical"`` (a variable-length list of ids per row, pooled by ``pooling``), or
  ``"dense"`` (``width`` floats per row);
* ``role``: ``"regular"`` (available when serving; the student reads these) or
  ``"privileged"`` (available in training logs only; only a teacher may read these);
* ``tower``: for a regular feature, the tower of a two-tower model it belongs to
  (``"user"`` or ``"item"``). A privileged feature has ``tower=None``: in the tasks of the
  paper it describes a (user, item) pair or an event after the impression, not one side.

A ``Schema`` is an ordered tuple of specs with unique names. It converts to and from JSON,
which is how a saved dataset carries its schema.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pfd_ref.validation import POOLINGS, check_scalar

KINDS = ("categorical", "multi_categorical", "dense")
ROLES = ("regular", "privileged")
TOWERS = ("user", "item")


@dataclass(frozen=True)
class FeatureSpec:
    """Description of one column; validated on construction (``ValueError`` naming the field).

    name : non-empty column name, without ``.`` (the separator of parameter names and file keys).
    kind : ``"categorical" | "multi_categorical" | "dense"``.
    role : ``"regular" | "privileged"``.
    tower : ``"user" | "item"`` for a regular feature; ``None`` for a privileged one.
    vocab_size : number of ids (``>= 1``) for the categorical kinds; 0 for dense.
    pooling : ``"sum" | "mean"``, how a multi-id row is pooled (read only for
        ``multi_categorical``; an empty row pools to zeros either way).
    width : number of floats per row (``>= 1``) for dense; 1 for the categorical kinds.
    """

    name: str
    kind: str
    role: str
    tower: str | None
    vocab_size: int = 0
    pooling: str = "mean"
    width: int = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or "." in self.name:
            raise ValueError(f"name: expected a non-empty string without '.' (parameter names and file keys are "
                             f"dotted: <model>.embed.<field>), got {self.name!r}")
        where = f"(feature {self.name!r})"
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {self.kind!r} {where}")
        if self.role not in ROLES:
            raise ValueError(f"role: expected one of {ROLES}, got {self.role!r} {where}")
        if self.role == "regular" and self.tower not in TOWERS:
            raise ValueError(f"tower: a regular feature needs a tower in {TOWERS}, got {self.tower!r} {where}")
        if self.role == "privileged" and self.tower is not None:
            raise ValueError(
                f"tower: a privileged feature has tower None (it describes a user-item pair), "
                f"got {self.tower!r} {where}"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {self.pooling!r} {where}")
        for field in ("vocab_size", "width"):
            try:
                object.__setattr__(self, field, check_scalar(field, getattr(self, field), int))
            except ValueError as error:
                raise ValueError(f"{error} {where}") from None
        if self.kind == "dense":
            if self.width < 1:
                raise ValueError(f"width: a dense feature needs width >= 1, got {self.width} {where}")
            if self.vocab_size != 0:
                raise ValueError(f"vocab_size: must be 0 for a dense feature, got {self.vocab_size} {where}")
        else:
            if self.vocab_size < 1:
                raise ValueError(
                    f"vocab_size: a {self.kind} feature needs vocab_size >= 1, got {self.vocab_size} {where}"
                )
            if self.width != 1:
                raise ValueError(f"width: must be 1 for a {self.kind} feature, got {self.width} {where}")

    def to_dict(self) -> dict:
        """Plain dict of the fields (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSpec":
        """Inverse of ``to_dict``; ``ValueError`` on unknown or missing keys."""
        if not isinstance(data, dict):
            raise ValueError(f"data: expected a dict, got {type(data).__name__}")
        try:
            return cls(**data)
        except TypeError as error:
            raise ValueError(f"data: not a FeatureSpec dict ({error})") from None


@dataclass(frozen=True)
class Schema:
    """An ordered tuple of ``FeatureSpec`` with unique names.

    ``schema["name"]`` returns a spec (``KeyError`` if absent); ``"name" in schema``,
    ``len(schema)`` and iteration work as for the tuple ``schema.features``.
    """

    features: tuple[FeatureSpec, ...]

    def __post_init__(self):
        features = tuple(self.features)
        for spec in features:
            if not isinstance(spec, FeatureSpec):
                raise ValueError(f"features: expected FeatureSpec items, got {type(spec).__name__}")
        names = [spec.name for spec in features]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"features: duplicate feature names {duplicates}")
        object.__setattr__(self, "features", features)

    @property
    def names(self) -> tuple[str, ...]:
        """Column names in schema order."""
        return tuple(spec.name for spec in self.features)

    def regular(self, tower: str | None = None) -> tuple[FeatureSpec, ...]:
        """Regular features in schema order; only those of ``tower`` when it is given."""
        if tower is not None and tower not in TOWERS:
            raise ValueError(f"tower: expected one of {TOWERS} or None, got {tower!r}")
        return tuple(s for s in self.features if s.role == "regular" and (tower is None or s.tower == tower))

    def privileged(self) -> tuple[FeatureSpec, ...]:
        """Privileged features in schema order."""
        return tuple(s for s in self.features if s.role == "privileged")

    def __getitem__(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(f"name: no feature {name!r} in the schema; features are {list(self.names)}")

    def __contains__(self, name) -> bool:
        return name in self.names

    def __iter__(self):
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    def to_json(self) -> str:
        """``{"features": [spec.to_dict(), ...]}`` as a JSON string."""
        return json.dumps({"features": [spec.to_dict() for spec in self.features]})

    @classmethod
    def from_json(cls, text: str) -> "Schema":
        """Inverse of ``to_json``; ``ValueError`` if ``text`` is not such a JSON document."""
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"text: not valid JSON ({error})") from None
        if not isinstance(data, dict) or not isinstance(data.get("features"), list):
            raise ValueError('text: expected a JSON object {"features": [...]}')
        return cls(tuple(FeatureSpec.from_dict(item) for item in data["features"]))
