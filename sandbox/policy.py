"""The policy of one dataset: its public schema and the rules its answers obey.

Everything here is public metadata (names, types, bounds, category lists, tags): it is
what mock data is generated from and what every query is validated against before any
data is touched. Policies are written as YAML files in ``policies/``.
"""
from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from sandbox.errors import NotFound, PolicyInvalid


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

#: Dataset names: lower case, safe as a file name in the vault and in URLs.
DATASET_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"


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

    # -- serialisation (the catalog stores the policy as JSON, so the broker needs no file)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form; ``Policy.from_dict(p.to_dict()) == p``."""
        return {
            "dataset": self.dataset,
            "title": self.title,
            "description": self.description,
            "provider": self.provider,
            "topic": self.topic,
            "openness": self.openness.value,
            "grade": self.grade.value,
            "columns": [
                {
                    "name": c.name,
                    "type": c.type.value,
                    "tag": c.tag.value,
                    "description": c.description,
                    "bounds": list(c.bounds) if c.bounds is not None else None,
                    "categories": list(c.categories) if c.categories is not None else None,
                    "bins": list(c.bins) if c.bins is not None else None,
                }
                for c in self.columns
            ],
            "privacy_unit": {"column": self.privacy_unit.column, "max_rows": self.privacy_unit.max_rows},
            "allowed_operations": sorted(self.allowed_operations),
            "max_epsilon_per_query": self.max_epsilon_per_query,
            "default_epsilon_budget": self.default_epsilon_budget,
            "delta": self.delta,
            "min_release_count": self.min_release_count,
            "source": self.source,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Policy":
        """Inverse of ``to_dict``; raises ``PolicyInvalid`` on a malformed document."""
        try:
            return cls(
                dataset=d["dataset"],
                title=d["title"],
                description=d.get("description", ""),
                provider=d["provider"],
                topic=d["topic"],
                openness=Openness(d["openness"]),
                grade=Grade(d["grade"]),
                columns=tuple(
                    Column(
                        name=c["name"],
                        type=ColumnType(c["type"]),
                        tag=Tag(c["tag"]),
                        description=c.get("description", ""),
                        bounds=tuple(c["bounds"]) if c.get("bounds") is not None else None,  # type: ignore[arg-type]
                        categories=tuple(c["categories"]) if c.get("categories") is not None else None,
                        bins=tuple(c["bins"]) if c.get("bins") is not None else None,
                    )
                    for c in d["columns"]
                ),
                privacy_unit=PrivacyUnit(d["privacy_unit"]["column"], int(d["privacy_unit"]["max_rows"])),
                allowed_operations=frozenset(d["allowed_operations"]),
                max_epsilon_per_query=d["max_epsilon_per_query"],
                default_epsilon_budget=d["default_epsilon_budget"],
                delta=d["delta"],
                min_release_count=d["min_release_count"],
                source=d.get("source", ""),
                extra=dict(d.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            name = d.get("dataset", "?") if isinstance(d, dict) else "?"
            raise PolicyInvalid(
                f"the stored policy of dataset {name!r} is malformed ({type(exc).__name__}: {exc})",
                "register the dataset again with a valid policy file (`sandbox dataset add --replace`)",
            ) from None


# ---------------------------------------------------------------------------------------
# Policy files (YAML)
# ---------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML that also reads ``1e-6`` as a number (YAML 1.1 insists on ``1.0e-6``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy file: where (path and line), what, and what to do."""

    path: str  # e.g. "datasets.farmers.columns[3].bounds"
    line: int  # 1-based; 0 when unknown
    message: str
    hint: str

    def render(self, file: str) -> str:
        return f"{file}:{self.line}: {self.path or '(top level)'}: {self.message}"


class _Located:
    """A parsed YAML document plus the node tree, to map a JSON path to a line number."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def line(self, path: tuple[Any, ...], key: bool = True) -> int:
        """Line of the node at ``path``; of its key (``key=True``) when it is a mapping value.

        A path that does not exist (a missing key) maps to its deepest existing ancestor.
        """
        node = self.root
        if node is None:
            return 1
        mark = node.start_mark
        for part in path:
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                        mark = k.start_mark if key else v.start_mark
                        node = v
                        break
                else:
                    break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                mark = node.start_mark
            else:
                break
        return mark.line + 1

    def duplicate_keys(self) -> list[tuple[tuple[Any, ...], int, str]]:
        """Keys given twice in one mapping: YAML would silently keep the last one."""
        found: list[tuple[tuple[Any, ...], int, str]] = []

        def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
            if isinstance(node, yaml.MappingNode):
                seen: set[str] = set()
                for k, v in node.value:
                    kv = k.value if isinstance(k, yaml.ScalarNode) else repr(k)
                    if kv in seen:
                        found.append((path + (kv,), k.start_mark.line + 1, kv))
                    seen.add(kv)
                    walk(v, path + (kv,))
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    walk(item, path + (i,))

        if self.root is not None:
            walk(self.root, ())
        return found


def _format_path(path: tuple[Any, ...], data: Any = None) -> str:
    """``("datasets", "farmers", "columns", 3, "bounds")`` -> ``datasets.farmers.columns[3].bounds``.

    A column index is followed by the column's name when it has one, e.g. ``columns[3](age)``.
    """
    out = ""
    node = data
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            item = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(item, dict) and isinstance(item.get("name"), str) and out.endswith(f"columns[{part}]"):
                out += f"({item['name']})"
            node = item
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _type_name(schema_type: Any) -> str:
    names = {"object": "a mapping (key: value)", "array": "a list", "string": "a string",
             "number": "a number", "integer": "a whole number", "boolean": "true or false"}
    if isinstance(schema_type, list):
        return " or ".join(names.get(t, t) for t in schema_type)
    return names.get(schema_type, str(schema_type))


def _schema_problems(data: Any, located: _Located) -> list[PolicyProblem]:
    import jsonschema

    from sandbox.policy_schema import POLICY_FILE

    validator = jsonschema.Draft202012Validator(POLICY_FILE)
    problems: list[PolicyProblem] = []
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        path = tuple(err.absolute_path)
        v = err.validator
        if v == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - set(allowed), key=str):
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(PolicyProblem(
                    _format_path(path + (key,), data), located.line(path + (key,)),
                    f"unknown key {key!r}",
                    hint + "allowed keys here: " + ", ".join(allowed),
                ))
            continue
        if v == "required":
            missing = err.message.split("'")[1] if "'" in err.message else "?"
            message, hint = f"missing required key {missing!r}", f"add {missing}: to this mapping"
        elif v == "type":
            message = f"must be {_type_name(err.validator_value)}"
            hint = "quote it if it is text (YAML reads yes/no/on/off as booleans and 2025-01-01 as a date)" \
                if err.validator_value == "string" else "fix the value's type"
        elif v == "enum":
            choices = ", ".join(map(str, err.validator_value))
            message, hint = f"{err.instance!r} is not allowed", f"use one of: {choices}"
        elif v in ("minItems", "maxItems"):
            n = err.validator_value
            if err.schema.get("minItems") == err.schema.get("maxItems"):
                message, hint = f"must have exactly {n} items", "write it as [low, high]"
            elif v == "minItems":
                message, hint = f"must have at least {n} item(s)", "add the missing items"
            else:
                message, hint = f"must have at most {n} items", "remove the extra items"
        elif v == "minProperties":
            message, hint = "must not be empty", "declare at least one entry"
        elif v == "minLength":
            message, hint = "must not be empty", "write a non-empty string"
        elif v == "pattern":
            message = f"{err.instance!r} is not a valid name"
            hint = "use letters, digits and underscores, starting with a letter or underscore"
        elif v == "uniqueItems":
            message, hint = "lists the same item twice", "remove the duplicate"
        elif v in ("exclusiveMinimum", "minimum", "exclusiveMaximum", "maximum"):
            op = {"exclusiveMinimum": ">", "minimum": ">=", "exclusiveMaximum": "<", "maximum": "<="}[v]
            message, hint = f"must be {op} {err.validator_value}", "change the value"
        else:  # pragma: no cover - every validator used by the schema is handled above
            message, hint = err.message, "see docs/policies.md"
        problems.append(PolicyProblem(_format_path(path, data), located.line(path), message, hint))
    return problems


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return over


def _build(name: str, spec: dict[str, Any], defaults: dict[str, Any], source: str,
           data: Any, located: _Located) -> tuple[Policy | None, list[PolicyProblem]]:
    """Merge defaults, run the semantic checks, and build a Policy (None if any problem)."""
    from sandbox.policy_schema import REQUIRED_SETTINGS

    problems: list[PolicyProblem] = []
    base = ("datasets", name)

    def problem(path: tuple[Any, ...], message: str, hint: str) -> None:
        problems.append(PolicyProblem(_format_path(base + path, data), located.line(base + path), message, hint))

    if not re.match(DATASET_NAME_PATTERN, name):
        problem((), f"{name!r} is not a valid dataset name",
                "use lower-case letters, digits, '_' and '-', starting with a letter (at most 64)")

    settings = {k: defaults[k] for k in defaults}
    for k in spec:
        if k not in ("title", "description", "columns"):
            settings[k] = _merge(defaults.get(k), spec[k]) if k == "prices" and k in defaults else spec[k]
    for k in REQUIRED_SETTINGS:
        if k not in settings:
            problem((), f"no {k} is set", f"set {k}: under defaults: or in this dataset")

    # columns
    columns: list[Column] = []
    seen: dict[str, int] = {}
    for i, c in enumerate(spec["columns"]):
        at = ("columns", i)
        cname, ctype, tag = c["name"], ColumnType(c["type"]), Tag(c["tag"])
        if cname in seen:
            problem(at + ("name",), f"column {cname!r} is declared twice (also columns[{seen[cname]}])",
                    "rename or remove one of them")
        seen.setdefault(cname, i)
        numeric = ctype in (ColumnType.INTEGER, ColumnType.FLOAT)
        bounds, categories, bins = c.get("bounds"), c.get("categories"), c.get("bins")
        if tag is Tag.IDENTIFIER:
            for key in ("bounds", "categories", "bins"):
                if c.get(key) is not None:
                    problem(at + (key,), f"identifier column {cname!r} cannot have {key}",
                            f"remove {key}: identifiers are never aggregated or grouped")
        else:
            if ctype is ColumnType.STRING:
                problem(at + ("type",), f"column {cname!r} has type string but tag {tag.value}",
                        "free text is only allowed for identifiers: use type category with a "
                        "categories: list, or tag identifier")
            if numeric and bounds is None:
                problem(at, f"numeric column {cname!r} has no bounds",
                        "add bounds: [low, high] (answers clamp values to them and mock data is drawn from them)")
            if ctype is ColumnType.CATEGORY and categories is None:
                problem(at, f"category column {cname!r} has no categories",
                        "add categories: [...] listing every value the column can take")
        if bounds is not None and tag is not Tag.IDENTIFIER:
            if not numeric:
                problem(at + ("bounds",), f"bounds are only allowed on integer or float columns, "
                        f"and {cname!r} is {ctype.value}", "remove bounds, or change the column's type")
            elif not bounds[0] < bounds[1]:
                problem(at + ("bounds",), f"bounds of {cname!r} must have low < high",
                        "write bounds as [low, high] with low strictly below high")
            elif ctype is ColumnType.INTEGER and not all(float(b).is_integer() for b in bounds):
                problem(at + ("bounds",), f"bounds of integer column {cname!r} must be whole numbers",
                        "round the bounds to whole numbers")
        if categories is not None and tag is not Tag.IDENTIFIER:
            if ctype is not ColumnType.CATEGORY:
                problem(at + ("categories",), f"categories are only allowed on category columns, "
                        f"and {cname!r} is {ctype.value}", "remove categories, or change the type to category")
            dupes = sorted({x for x in categories if categories.count(x) > 1})
            if dupes:
                problem(at + ("categories",), f"categories of {cname!r} list {', '.join(map(repr, dupes))} "
                        "more than once", "list every category once")
        if bins is not None and tag is not Tag.IDENTIFIER:
            if not numeric:
                problem(at + ("bins",), f"bins are only allowed on integer or float columns, "
                        f"and {cname!r} is {ctype.value}", "remove bins, or change the column's type")
            elif any(bins[j] >= bins[j + 1] for j in range(len(bins) - 1)):
                problem(at + ("bins",), f"bins of {cname!r} must be strictly increasing",
                        "sort the bin edges and remove repeated ones")
            elif bounds is not None and bounds[0] < bounds[1] and (bins[0] < bounds[0] or bins[-1] > bounds[1]):
                problem(at + ("bins",), f"bins of {cname!r} must lie inside its bounds "
                        f"[{bounds[0]}, {bounds[1]}]", "move the outer bin edges inside the bounds, or widen the bounds")
        columns.append(Column(
            name=cname, type=ctype, tag=tag, description=c.get("description", ""),
            bounds=(tuple(bounds) if bounds is not None else None),  # type: ignore[arg-type]
            categories=(tuple(categories) if categories is not None else None),
            bins=(tuple(bins) if bins is not None else None),
        ))

    # privacy unit (may come from defaults)
    pu = settings.get("privacy_unit")
    if pu is not None:
        pu_path = ("privacy_unit", "column") if "privacy_unit" in spec else None
        where = pu_path if pu_path else ()
        hint_where = "" if pu_path else " (privacy_unit comes from defaults:)"
        col = next((c for c in columns if c.name == pu["column"]), None)
        if col is None:
            problem(where, f"privacy unit column {pu['column']!r} is not a column of {name!r}{hint_where}",
                    "name one of the dataset's identifier columns, e.g. the person's id")
        elif col.tag is not Tag.IDENTIFIER:
            problem(where, f"privacy unit column {pu['column']!r} is tagged {col.tag.value}, not identifier"
                    f"{hint_where}", "tag the column identifier, or choose the column that identifies a person")

    eps_q, eps_b = settings.get("max_epsilon_per_query"), settings.get("default_epsilon_budget")
    if eps_q is not None and eps_b is not None and eps_q > eps_b:
        where = ("max_epsilon_per_query",) if "max_epsilon_per_query" in spec else ()
        problem(where, f"max_epsilon_per_query ({eps_q}) exceeds default_epsilon_budget ({eps_b})",
                "lower max_epsilon_per_query or raise default_epsilon_budget")

    if problems:
        return None, problems
    extra: dict[str, Any] = {}
    if "prices" in settings:
        extra["prices"] = settings["prices"]
    policy = Policy(
        dataset=name,
        title=spec["title"],
        description=spec.get("description", ""),
        provider=settings["provider"],
        topic=settings["topic"],
        openness=Openness(settings["openness"]),
        grade=Grade(settings["grade"]),
        columns=tuple(columns),
        privacy_unit=PrivacyUnit(pu["column"], int(pu["max_rows"])),
        allowed_operations=frozenset(settings["allowed_operations"]),
        max_epsilon_per_query=settings["max_epsilon_per_query"],
        default_epsilon_budget=settings["default_epsilon_budget"],
        delta=settings["delta"],
        min_release_count=settings["min_release_count"],
        source=source,
        extra=extra,
    )
    return policy, []


def _raise(file: str, problems: list[PolicyProblem]) -> None:
    problems = sorted(problems, key=lambda p: p.line)
    if len(problems) == 1:
        exc = PolicyInvalid(problems[0].render(file), problems[0].hint)
    else:
        lines = "\n".join(f"  {p.render(file)} ({p.hint})" for p in problems)
        exc = PolicyInvalid(f"policy file {file} has {len(problems)} problems:\n{lines}",
                            "fix each problem listed and load the file again")
    exc.problems = problems  # type: ignore[attr-defined]
    raise exc


def parse_policy_text(text: str, source: str = "<policy>") -> dict[str, Policy]:
    """Parse and validate a policy file's text; ``source`` names it in errors."""
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        what = exc.problem or "malformed YAML"
        _raise(source, [PolicyProblem("", line, f"not valid YAML: {what}",
                                      "fix the YAML syntax (indentation, colons, quotes) at that line")])
    except yaml.YAMLError as exc:
        _raise(source, [PolicyProblem("", 0, f"not valid YAML ({type(exc).__name__})", "fix the YAML syntax")])
    located = _Located(root)
    if data is None:
        _raise(source, [PolicyProblem("", 1, "the file is empty",
                                      "write a policy with defaults: and datasets: (see docs/policies.md)")])
    problems = [
        PolicyProblem(_format_path(path, data), line, f"key {key!r} is given twice in the same mapping",
                      "remove or rename one of them (YAML would silently keep only the last)")
        for path, line, key in located.duplicate_keys()
    ]
    problems += _schema_problems(data, located)
    if problems:
        _raise(source, problems)
    defaults = data.get("defaults") or {}
    policies: dict[str, Policy] = {}
    for name, spec in data["datasets"].items():
        policy, found = _build(str(name), spec, defaults, source, data, located)
        problems += found
        if policy is not None:
            policies[str(name)] = policy
    if problems:
        _raise(source, problems)
    return policies


def read_policy_file(path: str | Path) -> tuple[str, str]:
    """The text of a policy file and its SHA-256 (hex), with clear errors."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no policy file at {p}", "check the path; example policies are in policies/") from None
    except IsADirectoryError:
        raise PolicyInvalid(f"{p} is a directory, not a policy file", "give the path of a .yaml file") from None
    except OSError as exc:
        raise PolicyInvalid(f"cannot read policy file {p} ({exc.strerror})", "check the file's permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyInvalid(f"{p}: not UTF-8 text (byte {exc.start})", "save the policy file as UTF-8") from None
    return text, hashlib.sha256(raw).hexdigest()


def load_policy_file(path: str | Path) -> dict[str, Policy]:
    """Every dataset's policy in a policy file, by dataset name.

    Raises ``NotFound`` when the file does not exist and ``PolicyInvalid`` (naming the file,
    the field path, the line and what to do; all problems at once) when it is not valid.
    """
    text, _ = read_policy_file(path)
    return parse_policy_text(text, str(path))


def load_policy(path: str | Path, dataset: str) -> Policy:
    """The policy of one dataset in a policy file (``NotFound`` if the file does not declare it)."""
    policies = load_policy_file(path)
    if dataset not in policies:
        raise NotFound(
            f"policy file {path} declares no dataset {dataset!r}",
            "datasets declared there: " + ", ".join(sorted(policies)) + "; add it under datasets: or pick one of these",
        )
    return policies[dataset]
