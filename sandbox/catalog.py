"""The catalog: which datasets exist, their public metadata and policy, their current version.

A dataset is registered from a CSV or Parquet file and a policy file. The file is checked
against the policy's public schema, encrypted into the vault, and the catalog row and the
audit entries are written in one transaction: if anything fails, nothing is changed and no
vault file is left behind.

The ``datasets`` table holds public metadata only: nothing derived from the data except the
version (the SHA-256 of the encrypted Parquet's plaintext). No row counts, no statistics.

Every check of a file reports the column, the rule and the number of offending rows, never a
value. Mock data is generated from the public schema alone and never touches the vault.
"""
from __future__ import annotations

import csv
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import polars as pl
from sqlalchemy import JSON, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from sandbox.db import Base, Database, UTCDateTime
from sandbox.errors import AlreadyExists, InvalidInput, NotFound, PolicyRefused
from sandbox.policy import ColumnType, Policy, Tag, parse_policy_text, read_policy_file
from sandbox.vault import Vault, check_dataset_name

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The polars type each declared column type is stored (and mocked) as.
POLARS_TYPES: dict[ColumnType, pl.DataType] = {
    ColumnType.INTEGER: pl.Int64(),
    ColumnType.FLOAT: pl.Float64(),
    ColumnType.CATEGORY: pl.String(),
    ColumnType.BOOLEAN: pl.Boolean(),
    ColumnType.STRING: pl.String(),
}

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")


class DatasetRow(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    title: Mapped[str] = mapped_column(String(500))
    provider: Mapped[str] = mapped_column(String(500))
    topic: Mapped[str] = mapped_column(String(200))
    openness: Mapped[str] = mapped_column(String(20))
    grade: Mapped[str] = mapped_column(String(20))
    version: Mapped[str] = mapped_column(String(64))  # SHA-256 of the Parquet plaintext
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)  # Policy.to_dict()
    policy_source: Mapped[str] = mapped_column(Text)  # the policy file it was loaded from
    policy_sha256: Mapped[str] = mapped_column(String(64))  # of that file's bytes
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # User name of the provider who registered it (None: registered by an operator).
    owner: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)


@dataclass(frozen=True)
class Added:
    """What ``Catalog.add`` did; ``warnings`` go to the provider only (never to the audit log)."""

    name: str
    version: str
    replaced: str | None = None  # the previous version, when --replace was used
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _utc(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------------------
# Reading and checking a provider's file
# ------------------------------------------------------------------------------------------


def _unreadable(path: Path, what: str, hint: str) -> InvalidInput:
    return InvalidInput(f"cannot register {path.name}: {what}", hint)


def _scan_csv(path: Path) -> None:
    """Every record must have as many fields as the header (polars silently pads short ones)."""
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                raise _unreadable(path, "the file is empty", "give a CSV file with a header row and data rows")
            width, bad, first = len(header), 0, 0
            for record in reader:
                if len(record) != width and record:
                    bad += 1
                    first = first or reader.line_num
    except UnicodeDecodeError:
        raise _unreadable(path, "the file is not UTF-8 text", "save the CSV as UTF-8") from None
    except csv.Error:
        raise _unreadable(path, "the CSV is malformed (a quote or line break is out of place)",
                          "check the file's quoting; export it again as standard CSV") from None
    if bad:
        raise _unreadable(
            path, f"the CSV is malformed: {bad} record(s) do not have the header's {width} fields "
            f"(first at line {first})", "fix those lines (a missing or extra separator, or a stray quote)")


def read_file(path: Path) -> pl.DataFrame:
    """A provider's CSV (every column read as text) or Parquet file, with clear errors."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"no file at {path}", "check the path of the data file")
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file", "give the path of a CSV or Parquet file")
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise InvalidInput(f"cannot register {path.name}: unknown file type {suffix or '(none)'}",
                           "give a .csv or .parquet file")
    if path.stat().st_size == 0:
        raise _unreadable(path, "the file is empty", "give a file with a header row and data rows")
    try:
        if suffix in CSV_SUFFIXES:
            _scan_csv(path)
            frame = pl.read_csv(path, infer_schema=False, encoding="utf8")
        else:
            frame = pl.read_parquet(path)
    except (InvalidInput, NotFound):
        raise
    except Exception as exc:  # noqa: BLE001 - polars' messages can quote data: never pass them on
        kind = "CSV" if suffix in CSV_SUFFIXES else "Parquet"
        log.debug("reading %s failed with %s", path.name, type(exc).__name__)
        raise _unreadable(path, f"the file is not readable as {kind} ({type(exc).__name__})",
                          f"check that it is a well-formed {kind} file; export it again if in doubt") from None
    if frame.height == 0:
        raise _unreadable(path, "the file has no data rows", "give a file with at least one data row")
    return frame


def _parse_column(source: pl.Series, ctype: ColumnType) -> tuple[pl.Series | None, int, str]:
    """Convert to the declared type: (series, rows that cannot be converted, what they are not)."""
    name, dtype = source.name, source.dtype
    is_text = dtype == pl.String or dtype == pl.Categorical or isinstance(dtype, pl.Enum)
    v = pl.col("v")
    frame = source.to_frame("v")
    if is_text:  # surrounding blanks are ignored and an empty field is a missing value
        stripped = v.cast(pl.String).str.strip_chars()
        frame = frame.select(pl.when(stripped == "").then(None).otherwise(stripped).alias("v"))
    present = frame.get_column("v").is_not_null()

    def convert(expr: pl.Expr) -> pl.Series:
        return frame.select(expr.alias("v")).get_column("v").rename(name)

    def result(out: pl.Series, expected: str) -> tuple[pl.Series, int, str]:
        return out, int((present & out.is_null()).sum()), expected

    if ctype is ColumnType.INTEGER:
        if is_text or dtype.is_integer():
            return result(convert(v.cast(pl.Int64, strict=False)), "whole numbers")
        if dtype.is_float():
            whole = v.is_finite() & (v == v.round(0))
            return result(convert(pl.when(whole).then(v.cast(pl.Int64, strict=False))), "whole numbers")
        return None, int(present.sum()), f"whole numbers (the file stores {dtype})"
    if ctype is ColumnType.FLOAT:
        if is_text or dtype.is_numeric():
            x = v.cast(pl.Float64, strict=False)
            return result(convert(pl.when(x.is_finite()).then(x)), "finite numbers")
        return None, int(present.sum()), f"numbers (the file stores {dtype})"
    if ctype is ColumnType.BOOLEAN:
        if dtype == pl.Boolean:
            return source, 0, ""
        if is_text:
            low = v.str.to_lowercase()
            expr = pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
            return result(convert(expr.cast(pl.Boolean)), "booleans (true/false, yes/no or 1/0)")
        if dtype.is_integer():
            expr = pl.when(v == 1).then(True).when(v == 0).then(False)
            return result(convert(expr.cast(pl.Boolean)), "booleans (1 or 0)")
        return None, int(present.sum()), f"booleans (the file stores {dtype})"
    # category and string columns hold text
    if is_text:
        if ctype is ColumnType.CATEGORY:
            return convert(v), 0, ""
        return source.cast(pl.String), 0, ""  # identifiers are kept exactly as given
    if dtype.is_integer() or dtype == pl.Boolean:
        return source.cast(pl.String), 0, ""
    return None, int(present.sum()), f"text (the file stores {dtype})"


def conform(frame: pl.DataFrame, policy: Policy, *, source: str = "the file",
            drop_undeclared: bool = False) -> tuple[pl.DataFrame, list[str]]:
    """Check ``frame`` against the policy's schema and convert it to the declared types.

    Raises ``InvalidInput`` listing every problem (column, rule, number of rows; never a
    value). Returns the converted frame (declared columns, in declared order) and warnings.
    """
    problems: list[str] = []
    warnings: list[str] = []
    present = set(frame.columns)
    declared = policy.column_names
    missing = [c for c in declared if c not in present]
    undeclared = [c for c in frame.columns if c not in set(declared)]
    if missing and len(missing) == len(declared):
        raise InvalidInput(
            f"{source} has none of the columns the policy of {policy.dataset} declares",
            "the first line of the file must be a header naming the columns: "
            + ", ".join(declared),
        )
    if missing:
        problems.append("missing declared column(s): " + ", ".join(missing))
    if undeclared:
        # a header name is schema, not data; but a malformed header can hold data, so only
        # plain names are echoed
        shown = [c for c in undeclared if _SAFE_NAME.match(c)]
        hidden = len(undeclared) - len(shown)
        names = ", ".join(shown) + (f" and {hidden} other(s)" if hidden and shown else f"{hidden} column(s)" if hidden else "")
        if drop_undeclared:
            warnings.append(f"dropped {len(undeclared)} column(s) the policy does not declare: {names}")
        else:
            problems.append(f"column(s) the policy does not declare: {names} "
                            "(declare them in the policy, or remove them from the file)")

    converted: list[pl.Series] = []
    for col in policy.columns:
        if col.name not in present:
            continue
        series, bad, expected = _parse_column(frame.get_column(col.name), col.type)
        if series is None or bad:
            problems.append(f"column {col.name!r} ({col.type.value}): {bad} row(s) are not {expected}")
            continue
        nulls = int(series.null_count())
        if col.tag is Tag.IDENTIFIER and series.dtype == pl.String:
            nulls = int((series.is_null() | (series.str.strip_chars() == "")).sum())
        if col.tag is Tag.IDENTIFIER and nulls:
            problems.append(f"column {col.name!r} (identifier): {nulls} row(s) are empty; identifiers must not be")
        if col.type is ColumnType.CATEGORY and col.categories is not None:
            outside = int((series.is_not_null() & ~series.is_in(list(col.categories))).sum())
            if outside:
                problems.append(f"column {col.name!r} (category): {outside} row(s) hold a value that is not "
                                "one of the declared categories")
        if col.numeric and col.bounds is not None and col.tag is not Tag.IDENTIFIER:
            lo, hi = col.bounds
            outside = int(((series < lo) | (series > hi)).fill_null(False).sum())
            if outside:
                warnings.append(f"column {col.name!r}: {outside} row(s) lie outside the bounds [{lo}, {hi}]; "
                                "answers clamp them to the bounds")
        if col.tag is not Tag.IDENTIFIER and nulls:
            warnings.append(f"column {col.name!r}: {nulls} row(s) are empty")
        converted.append(series.cast(POLARS_TYPES[col.type]))

    unit = policy.privacy_unit
    if not problems and unit.column in present:
        ids = next(s for s in converted if s.name == unit.column)
        over = int((ids.value_counts().get_column("count") > unit.max_rows).sum())
        if over:
            problems.append(f"column {unit.column!r} (privacy unit): {over} unit(s) have more than "
                            f"{unit.max_rows} row(s), the most the policy allows per unit")
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise InvalidInput(
            f"{source} does not match the policy of dataset {policy.dataset} "
            f"({len(problems)} problem(s)):\n{listing}",
            "fix the file or the policy and add it again; nothing was stored",
        )
    return pl.DataFrame(converted), warnings


# ------------------------------------------------------------------------------------------
# Mock data: from the public schema only
# ------------------------------------------------------------------------------------------


def mock_frame(policy: Policy, rows: int, seed: int = 0) -> pl.DataFrame:
    """``rows`` mock rows drawn uniformly from the declared bounds and categories.

    Identifiers are ``mock-000001``, ...; the privacy unit column repeats each id up to
    ``max_rows`` times. Reads nothing but the policy, so it reveals nothing but the policy.
    """
    if rows < 0:
        raise InvalidInput("the number of mock rows cannot be negative", "ask for 0 or more rows")
    rng = np.random.default_rng(seed)
    width = max(6, len(str(rows)))
    data: dict[str, pl.Series] = {}
    for col in policy.columns:
        if col.tag is Tag.IDENTIFIER:
            per = policy.privacy_unit.max_rows if col.name == policy.privacy_unit.column else 1
            ids = np.arange(rows) // per + 1
            if col.numeric:
                values: Any = ids
            else:
                values = [f"mock-{i:0{width}d}" for i in ids]
        elif col.type is ColumnType.BOOLEAN:
            values = rng.random(rows) < 0.5
        elif col.type is ColumnType.CATEGORY:
            cats = list(col.categories or ("",))
            values = [cats[i] for i in rng.integers(0, len(cats), rows)]
        elif col.numeric:
            lo, hi = col.bounds or (0, 1)
            if col.type is ColumnType.INTEGER:
                values = rng.integers(math.ceil(lo), math.floor(hi) + 1, rows)
            else:
                values = rng.uniform(lo, hi, rows)
        else:  # a non-identifier string column cannot pass policy validation
            values = [f"mock-{i + 1:0{width}d}" for i in range(rows)]
        data[col.name] = pl.Series(col.name, values, dtype=POLARS_TYPES[col.type])
    return pl.DataFrame(list(data.values()))


# ------------------------------------------------------------------------------------------
# The catalog
# ------------------------------------------------------------------------------------------


class Catalog:
    """Datasets: register (vault + row + audit, atomically), look up, describe, mock.

    Read methods take an optional ``session`` to read inside the caller's transaction;
    without one they read committed state through ``db.read()``, which never waits for a
    writer (so a read made while the caller holds an open write transaction does not hang).
    """

    def __init__(self, db: Database, vault: Vault, audit: Any) -> None:
        self.db = db
        self.vault = vault
        self.audit = audit

    def _read(self, session: Session | None, fn: Callable[[Session], T]) -> T:
        if session is not None:
            return fn(session)
        with self.db.read() as own:
            return fn(own)

    @staticmethod
    def _row(session: Session, name: str) -> DatasetRow | None:
        return session.scalar(select(DatasetRow).where(DatasetRow.name == name))

    # -- registering ---------------------------------------------------------------------

    def add(
        self,
        path: Path,
        name: str,
        policy_path: Path,
        actor: Any,
        replace: bool = False,
        *,
        drop_undeclared: bool = False,
        owner: str | None = None,
    ) -> Added:
        """Register the CSV/Parquet file ``path`` as dataset ``name`` under its policy.

        ``actor`` is a ``sandbox.actors.Actor`` (``name`` and ``role``). With ``replace`` an
        existing dataset gets a new version (older vault files are kept: past answers and audit
        entries refer to them). Undeclared columns are refused unless ``drop_undeclared``.
        All or nothing: on any error the catalog, the audit log and the vault are unchanged.
        With ``owner`` (a provider's user name; a provider actor's own name by default) the
        dataset is that provider's: a new one is recorded as owned by it, and an existing one
        that is not its own is refused.
        """
        check_dataset_name(name)
        path, policy_path = Path(path), Path(policy_path)
        actor_name, role = getattr(actor, "name", str(actor)), getattr(actor, "role", "operator")
        if owner is None and role == "provider":  # a provider always acts on its own datasets
            owner = actor_name
        text, policy_sha = read_policy_file(policy_path)
        policies = parse_policy_text(text, str(policy_path))
        if name not in policies:
            raise NotFound(
                f"policy file {policy_path} declares no dataset {name!r}",
                "declared there: " + ", ".join(sorted(policies)) + "; give --name one of these or add it to the file",
            )
        policy = policies[name]
        with self.db.transaction() as session:
            existing = self._row(session, name)
            if existing is not None and not replace:
                raise self._exists(name)
            self._check_owner(existing, name, owner)
        frame, warnings = conform(read_file(path), policy, source=path.name, drop_undeclared=drop_undeclared)
        stored = self.vault.store(name, frame)
        del frame
        try:
            with self.db.transaction() as session:
                row = self._row(session, name)
                if row is not None and not replace:
                    raise self._exists(name)
                self._check_owner(row, name, owner)
                now = datetime.now(timezone.utc)
                previous = row.version if row is not None else None
                if row is None:
                    row = DatasetRow(name=name, created_at=now, owner=owner)
                    session.add(row)
                row.title, row.provider, row.topic = policy.title, policy.provider, policy.topic
                row.openness, row.grade = policy.openness.value, policy.grade.value
                row.version, row.policy = stored.version, policy.to_dict()
                row.policy_source, row.policy_sha256, row.updated_at = str(policy_path), policy_sha, now
                session.flush()
                self.audit.record(
                    session, actor=actor_name, role=role, action="policy.loaded",
                    objects={"dataset": name},
                    details={"policy_file": str(policy_path), "sha256": policy_sha},
                )
                details: dict[str, Any] = {"file": path.name}
                if previous is not None:
                    details["replaced_version"] = previous
                self.audit.record(
                    session, actor=actor_name, role=role, action="dataset.added",
                    objects={"dataset": name, "version": stored.version},
                    dataset_version=stored.version, details=details,
                )
        except IntegrityError:
            self._undo(stored)
            raise self._exists(name) from None
        except BaseException:
            self._undo(stored)
            raise
        return Added(name, stored.version, previous, tuple(warnings))

    def _undo(self, stored: Any) -> None:
        if stored.created:
            try:
                self.vault.remove(stored.dataset, stored.version)
            except OSError:  # pragma: no cover - reported, the original error matters more
                log.error("could not remove the vault file of an unregistered version of %s", stored.dataset)

    @staticmethod
    def _check_owner(row: DatasetRow | None, name: str, owner: str | None) -> None:
        if row is not None and owner is not None and row.owner != owner:
            raise PolicyRefused(
                f"dataset {name} is not registered by {owner}; a provider may update only its own datasets",
                "ask an operator or the dataset's provider, or register it under another name",
            )

    @staticmethod
    def _exists(name: str) -> AlreadyExists:
        return AlreadyExists(
            f"a dataset named {name} is already in the catalog",
            "use --replace to add a new version of it, or choose another name",
        )

    # -- reading -------------------------------------------------------------------------

    def list(self, session: Session | None = None) -> list[DatasetRow]:
        return self._read(session, lambda s: list(s.scalars(select(DatasetRow).order_by(DatasetRow.name))))

    def names(self, session: Session | None = None) -> list[str]:
        return self._read(session, lambda s: list(s.scalars(select(DatasetRow.name).order_by(DatasetRow.name))))

    def get(self, name: str, session: Session | None = None) -> DatasetRow:
        def fetch(s: Session) -> DatasetRow:
            row = self._row(s, name)
            if row is None:
                raise NotFound(f"no dataset named {name!r} in the catalog",
                               "see `sandbox dataset list` for the datasets there are")
            return row

        return self._read(session, fetch)

    def policy(self, name: str, session: Session | None = None) -> Policy:
        return Policy.from_dict(self.get(name, session).policy)

    def describe(self, name: str, session: Session | None = None) -> dict[str, Any]:
        """Public metadata only: what the catalog page and `dataset show` display."""
        row = self.get(name, session)
        p = Policy.from_dict(row.policy)
        public = p.to_dict()
        return {
            "name": row.name,
            "title": p.title,
            "description": p.description,
            "provider": p.provider,
            "topic": p.topic,
            "openness": p.openness.value,
            "grade": p.grade.value,
            "version": row.version,
            "columns": public["columns"],
            "privacy_unit": public["privacy_unit"],
            "allowed_operations": public["allowed_operations"],
            "max_epsilon_per_query": p.max_epsilon_per_query,
            "default_epsilon_budget": p.default_epsilon_budget,
            "delta": p.delta,
            "min_release_count": p.min_release_count,
            "prices": p.extra.get("prices"),
            "created_at": _utc(row.created_at),
            "updated_at": _utc(row.updated_at),
        }

    # -- data ----------------------------------------------------------------------------

    def load(self, name: str, version: str | None = None, session: Session | None = None) -> pl.DataFrame:
        """The real rows (decrypted): for the broker only. Defaults to the current version."""
        if version is None:
            version = self.get(name, session).version
        return self.vault.load(name, version)

    def mock(self, name_or_policy: str | Policy, rows: int, seed: int = 0,
             session: Session | None = None) -> pl.DataFrame:
        """Mock rows from the public schema only; never reads the vault."""
        policy = name_or_policy if isinstance(name_or_policy, Policy) else self.policy(name_or_policy, session)
        return mock_frame(policy, rows, seed)
