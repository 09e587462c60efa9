"""The runtime policy (``policies/runtime.yaml``): job limits and the script import allow-list.

Kept in a policy file so that operators, not code, decide how much a job may use; a home may
carry its own ``runtime.yaml`` to override the repository's.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from runners import Limits
from sandbox.errors import PolicyInvalid
from sandbox.sdk.guard import DEFAULT_ALLOWED

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "policies" / "runtime.yaml"
_LIMIT_FIELDS = {f.name for f in fields(Limits)}


@dataclass(frozen=True)
class RuntimePolicy:
    limits: Limits
    allowed_imports: tuple[str, ...]
    max_script_bytes: int
    pool_size: int
    source: str


def load_runtime_policy(home_root: Path | None = None) -> RuntimePolicy:
    """The home's ``runtime.yaml`` if it has one, else the repository's."""
    path = home_root / "runtime.yaml" if home_root and (home_root / "runtime.yaml").exists() else DEFAULT_PATH
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise PolicyInvalid(f"cannot read the runtime policy {path}: {type(err).__name__}",
                            "fix the YAML (see policies/runtime.yaml for the format)") from None
    _only(doc, {"job_limits", "script", "pool_size"}, path, "")
    limits_doc = doc.get("job_limits") or {}
    script = doc.get("script") or {}
    _only(limits_doc, _LIMIT_FIELDS, path, "job_limits.")
    _only(script, {"max_bytes", "allowed_imports"}, path, "script.")
    try:
        limits = Limits(**limits_doc)
    except (TypeError, ValueError) as err:
        raise PolicyInvalid(f"{path}: job_limits: {err}", "give positive numbers; tmpfs_mb below memory_mb") from None
    allowed = script.get("allowed_imports", DEFAULT_ALLOWED)
    unknown = sorted(set(allowed) - set(DEFAULT_ALLOWED))
    if unknown:
        raise PolicyInvalid(
            f"{path}: script.allowed_imports names modules the guard has no vetted proxy for: {', '.join(unknown)}",
            f"choose among: {', '.join(DEFAULT_ALLOWED)}",
        )
    return RuntimePolicy(
        limits=limits, allowed_imports=tuple(allowed), max_script_bytes=int(script.get("max_bytes", 262144)),
        pool_size=int(doc.get("pool_size", 0)), source=str(path),
    )


def _only(doc: object, allowed: set[str], path: Path, prefix: str) -> None:
    if not isinstance(doc, dict):
        raise PolicyInvalid(f"{path}: {prefix or 'the file'} must be a mapping", "see policies/runtime.yaml")
    extra = sorted(set(doc) - allowed)
    if extra:
        raise PolicyInvalid(f"{path}: unknown setting {prefix}{extra[0]}", f"known: {', '.join(sorted(allowed))}")
