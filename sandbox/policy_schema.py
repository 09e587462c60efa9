"""JSON Schema of a policy file (``policies/*.yaml``).

The schema checks shape: which keys exist, their types and enumerations. Rules that
relate fields to each other (bounds only on numeric columns, bins inside bounds, the
privacy unit naming an identifier column, ...) are checked in ``sandbox.policy`` after
the schema passes. Unknown keys are errors everywhere except inside ``prices``, which is
free-form until pricing is built.
"""
from __future__ import annotations

from sandbox.policy import OPERATIONS, ColumnType, Grade, Openness, Tag

#: Names of columns: safe as identifiers in SQL, polars expressions and JSON queries.
COLUMN_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"

_number = {"type": "number"}

PRIVACY_UNIT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["column", "max_rows"],
    "properties": {
        "column": {"type": "string", "minLength": 1},
        "max_rows": {"type": "integer", "minimum": 1},
    },
}

#: Settings shared through ``defaults:`` and overridable per dataset.
SETTINGS = {
    "openness": {"enum": [o.value for o in Openness]},
    "grade": {"enum": [g.value for g in Grade]},
    "provider": {"type": "string", "minLength": 1},
    "topic": {"type": "string", "minLength": 1},
    "allowed_operations": {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": {"enum": sorted(OPERATIONS)},
    },
    "max_epsilon_per_query": {"type": "number", "exclusiveMinimum": 0},
    "default_epsilon_budget": {"type": "number", "exclusiveMinimum": 0},
    "delta": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
    "min_release_count": {"type": "number", "minimum": 0},
    "privacy_unit": PRIVACY_UNIT,
    "prices": {"type": "object"},  # free-form; kept in Policy.extra["prices"]
}

#: Keys a dataset must end up with after ``defaults:`` are applied.
REQUIRED_SETTINGS = (
    "openness",
    "grade",
    "provider",
    "topic",
    "allowed_operations",
    "max_epsilon_per_query",
    "default_epsilon_budget",
    "delta",
    "min_release_count",
    "privacy_unit",
)

COLUMN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "type", "tag"],
    "properties": {
        "name": {"type": "string", "pattern": COLUMN_NAME_PATTERN},
        "type": {"enum": [t.value for t in ColumnType]},
        "tag": {"enum": [t.value for t in Tag]},
        "description": {"type": "string"},
        "bounds": {"type": "array", "minItems": 2, "maxItems": 2, "items": _number},
        "categories": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "bins": {"type": "array", "minItems": 2, "items": _number},
    },
}

DATASET = {
    "type": "object",
    "additionalProperties": False,
    "required": ["title", "columns"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "columns": {"type": "array", "minItems": 1, "items": COLUMN},
        **SETTINGS,
    },
}

POLICY_FILE = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "data sandbox policy file",
    "type": "object",
    "additionalProperties": False,
    "required": ["datasets"],
    "properties": {
        "defaults": {"type": "object", "additionalProperties": False, "properties": SETTINGS},
        "datasets": {"type": "object", "minProperties": 1, "additionalProperties": DATASET},
    },
}
