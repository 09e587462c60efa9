"""The policy of one dataset: its public schema and the rules its answers obey.

Everything here is public metadata (names, types, bounds, category lists, tags): it is
what mock data is generated from and what every query is validated against before any
data is touched. Policies are written as YAML files in ``policies/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Openness(str, Enum):
    UNCONDITIONAL = "unconditional"
    CONDITIONAL = "conditional"
    NOT_OPEN = "not_open"


class Grade(str, Enum):
    CORE = "core"
    IMPORTANT = "important"
    GENERAL_1 = "general-1"
    GENERAL_2 = "general-2"
    GENERAL_3 = "general-3"
    GENERAL_4 = "general-4"


class Tag(str, Enum):
    IDENTIFIER = "identifier"
    QUASI_IDENTIFIER = "quasi_identifier"
    SENSITIVE = "sensitive"
    PUBLIC = "public"


class ColumnType(str, Enum):
    INTEGER = "integer"
    FLOAT = "float"
    CATEGORY = "category"  # a string from a declared list
    BOOLEAN = "boolean"
    STRING = "string"  # free text; only for identifiers, never aggregated


OPERATIONS = frozenset({"count", "sum", "mean", "quantile", "histogram"})


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    tag: Tag
    description: str = ""
    bounds: tuple[float, float] | None = None  # numeric columns: values are clamped to these
    categories: tuple[str, ...] | None = None  # category columns: the only values a group can take
    bins: tuple[float, ...] | None = None  # numeric columns: edges for histograms

    @property
    def numeric(self) -> bool:
        return self.type in (ColumnType.INTEGER, ColumnType.FLOAT)

    @property
    def groupable(self) -> bool:
        """Group keys must be public (declared) so that the key set itself leaks nothing."""
        return self.tag is not Tag.IDENTIFIER and (
            self.type is ColumnType.BOOLEAN or self.categories is not None
        )


@dataclass(frozen=True)
class PrivacyUnit:
    """Whom DP protects: all rows sharing ``column`` are one person, at most ``max_rows`` of them."""

    column: str
    max_rows: int


@dataclass(frozen=True)
class Policy:
    dataset: str
    title: str
    description: str
    provider: str
    topic: str
    openness: Openness
    grade: Grade
    columns: tuple[Column, ...]
    privacy_unit: PrivacyUnit
    allowed_operations: frozenset[str]
    max_epsilon_per_query: float
    default_epsilon_budget: float
    delta: float  # total delta a grant on this dataset may spend
    min_release_count: float  # a group whose noisy count is below this is suppressed
    source: str = ""  # the policy file it came from
    extra: dict = field(default_factory=dict, hash=False, compare=False)  # e.g. prices, for later parts

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)
