"""The canonical bytes of an audit entry: what its Merkle leaf hash covers.

JSON with sorted keys, no whitespace, UTF-8 (not \\u escapes), no NaN/Infinity. Anyone
holding an exported line can hash it again with nothing but ``hashlib``.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Mapping

#: The fields of an entry, all of them hashed; ``seq`` is its index in the Merkle tree.
ENTRY_FIELDS = (
    "seq", "time", "actor", "role", "action", "outcome", "objects",
    "dataset_version", "grant_id", "purpose", "details",
)

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def canonical_bytes(entry: Mapping[str, Any]) -> bytes:
    return canonical_json({k: entry[k] for k in ENTRY_FIELDS}).encode("utf-8")


def format_time(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC with microseconds and ``Z``; naive times are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(_TIME_FORMAT)


def utc_now() -> str:
    return format_time(datetime.now(timezone.utc))
