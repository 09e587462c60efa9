"""The script guard: RestrictedPython plus an import and attribute policy.

Used twice. On the host, before a job is queued, ``check_script(source)`` lists every
violation with its line and rule (nothing is run). In the container, the harness calls
``run_script(path)``: the same check, then the script runs under RestrictedPython with guarded
attribute access, writes, imports and builtins, where each allowed module is a *proxy* exposing
only the vetted names listed below (real ``json``, ``statistics``, ``numpy``... reach ``os`` and
file I/O through their attributes; the proxies do not).

The container is the first layer (no network, no data, read-only root, only /job/out and /tmp
writable); this guard is the second.

Rules a Violation can name:

``syntax``                the script does not parse
``import-not-allowed``    a module (or a name from it) outside the allow-list, or a relative import
``attribute-not-allowed`` a module attribute not on its list (``np.load``, ``pd.read_csv``,
                          ``json.decoder``), or a denied method on any object (``to_pickle``,
                          ``tofile``, ``ctypes``, ``query``, ``eval``, ``read_*``...)
``private-attribute``     ``x._name`` / ``x.__dunder__``, inspection attributes (``gi_frame``...),
                          also through ``getattr``, ``attrgetter`` and ``str.format`` fields
``private-name``          a variable whose name starts with ``_``
``forbidden-builtin``     exec, eval, compile, open, __import__, globals, locals, vars, input...
``dynamic-attribute``     getattr/hasattr/setattr/delattr/attrgetter/methodcaller with a name
                          that is not a string constant
``restricted``            anything else RestrictedPython refuses (async, ``print >>``...)
"""
from __future__ import annotations

import ast
import re
import string
from pathlib import Path
from typing import Iterable, NamedTuple

DEFAULT_ALLOWED: tuple[str, ...] = (
    "sandbox.sdk", "math", "statistics", "json", "datetime", "collections", "itertools",
    "functools", "operator", "re", "numpy", "pandas", "polars", "matplotlib.pyplot",
)


class Violation(NamedTuple):
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line} [{self.rule}]: {self.message}"

    def to_dict(self) -> dict:
        return {"line": self.line, "rule": self.rule, "message": self.message}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# -- what each allowed module exposes ----------------------------------------------------------
# Explicit lists: anything not named here is not reachable through the module, at check time
# (static) and at run time (proxies). A name listed in SUBMODULES is itself a proxy.

MODULE_NAMES: dict[str, frozenset[str]] = {
    "math": _words("""
        acos acosh asin asinh atan atan2 atanh cbrt ceil comb copysign cos cosh degrees dist e erf
        erfc exp exp2 expm1 fabs factorial floor fmod frexp fsum gamma gcd hypot inf isclose isfinite
        isinf isnan isqrt lcm ldexp lgamma log log10 log1p log2 modf nan nextafter perm pi pow prod
        radians remainder sin sinh sqrt sumprod tan tanh tau trunc ulp fma"""),
    "statistics": _words("""
        mean fmean geometric_mean harmonic_mean median median_low median_high median_grouped mode
        multimode quantiles pstdev pvariance stdev variance covariance correlation linear_regression
        NormalDist StatisticsError"""),
    "json": _words("dumps loads JSONDecodeError"),
    "datetime": _words("date datetime time timedelta timezone tzinfo MINYEAR MAXYEAR UTC"),
    "collections": _words("Counter defaultdict OrderedDict namedtuple deque ChainMap"),
    "itertools": _words("""
        accumulate batched chain combinations combinations_with_replacement compress count cycle
        dropwhile filterfalse groupby islice pairwise permutations product repeat starmap takewhile
        tee zip_longest"""),
    "functools": _words("reduce partial lru_cache cache cmp_to_key total_ordering"),
    "operator": _words("""
        abs add and_ attrgetter call concat contains countOf eq floordiv ge getitem gt index indexOf
        inv invert is_ is_not itemgetter le length_hint lshift lt matmul methodcaller mod mul ne neg
        not_ or_ pos pow rshift sub truediv truth xor"""),
    "re": _words("""
        compile search match fullmatch split findall finditer sub subn escape error Pattern Match
        A ASCII I IGNORECASE M MULTILINE S DOTALL X VERBOSE U UNICODE NOFLAG"""),
    "numpy": _words("""
        array asarray arange linspace logspace geomspace zeros ones full empty zeros_like ones_like
        full_like empty_like eye identity diag diagonal tri tril triu concatenate stack vstack hstack
        column_stack dstack split array_split reshape ravel transpose swapaxes moveaxis expand_dims
        squeeze flip fliplr flipud roll rot90 tile repeat append insert delete where select choose
        clip sort argsort lexsort partition argpartition unique searchsorted argmax argmin nanargmax
        nanargmin nonzero flatnonzero argwhere count_nonzero isin intersect1d union1d setdiff1d
        setxor1d sum prod cumsum cumprod mean median average std var min max amin amax ptp
        percentile quantile nanmean nanmedian nansum nanprod nanstd nanvar nanmin nanmax
        nanpercentile nanquantile nancumsum histogram histogram2d histogram_bin_edges bincount
        digitize corrcoef cov correlate convolve diff ediff1d gradient interp polyfit polyval
        round around floor ceil trunc rint fix abs absolute fabs sign sqrt cbrt square exp exp2
        expm1 log log10 log2 log1p power float_power sin cos tan arcsin arccos arctan arctan2 sinh
        cosh tanh arcsinh arccosh arctanh hypot deg2rad rad2deg degrees radians add subtract
        multiply divide true_divide floor_divide mod fmod remainder divmod reciprocal negative
        positive maximum minimum fmax fmin isnan isinf isfinite isnat nan_to_num isclose allclose
        array_equal array_equiv all any logical_and logical_or logical_not logical_xor
        greater greater_equal less less_equal equal not_equal dot vdot matmul outer inner cross
        kron einsum trace meshgrid vectorize apply_along_axis piecewise cumulative_sum
        cumulative_prod nan inf pi e euler_gamma newaxis dtype ndarray generic number integer
        signedinteger unsignedinteger floating complexfloating float16 float32 float64 int8 int16
        int32 int64 uint8 uint16 uint32 uint64 intp bool bool_ str_ bytes_ object_ datetime64
        timedelta64 complex64 complex128 iinfo finfo errstate seterr geterr set_printoptions
        get_printoptions printoptions array2string array_repr array_str format_float_positional
        format_float_scientific savetxt random linalg"""),
    "numpy.random": _words("""
        default_rng seed random rand randn randint choice normal uniform binomial poisson
        exponential shuffle permutation standard_normal beta gamma lognormal multinomial
        multivariate_normal laplace geometric"""),
    "numpy.linalg": _words("""
        norm inv pinv det slogdet solve lstsq eig eigh eigvals eigvalsh svd qr cholesky
        matrix_rank matrix_power cond LinAlgError"""),
    "pandas": _words("""
        DataFrame Series Index RangeIndex MultiIndex CategoricalIndex DatetimeIndex TimedeltaIndex
        PeriodIndex IntervalIndex Categorical CategoricalDtype Interval Period Timestamp Timedelta
        DateOffset NaT NA NamedAgg IndexSlice Grouper Int8Dtype Int16Dtype Int32Dtype Int64Dtype
        UInt8Dtype UInt16Dtype UInt32Dtype UInt64Dtype Float32Dtype Float64Dtype StringDtype
        BooleanDtype concat merge merge_asof merge_ordered crosstab pivot pivot_table melt
        wide_to_long get_dummies from_dummies cut qcut factorize unique isna isnull notna notnull
        to_numeric to_datetime to_timedelta date_range bdate_range period_range timedelta_range
        interval_range infer_freq json_normalize array set_option get_option reset_option
        option_context"""),
    "polars": _words("""
        DataFrame Series LazyFrame Expr col lit when concat struct exclude len count sum mean median
        min max first last all any n_unique concat_str concat_list coalesce format int_range
        date_range from_pandas from_numpy from_dicts from_records from_dict Int8 Int16 Int32 Int64
        UInt8 UInt16 UInt32 UInt64 Float32 Float64 Utf8 String Boolean Date Datetime Duration Time
        Categorical List Struct Null"""),
    "matplotlib.pyplot": _words("""
        figure subplots subplot plot bar barh hist hist2d scatter pie boxplot violinplot errorbar
        fill_between fill_betweenx step stackplot stem axhline axvline axhspan axvspan hlines
        vlines text annotate title suptitle xlabel ylabel xlim ylim xscale yscale xticks yticks
        legend grid tight_layout subplots_adjust colorbar imshow pcolormesh contour contourf
        savefig close gca gcf clf cla twinx twiny margins table figtext show"""),
}
SUBMODULES: dict[str, frozenset[str]] = {"numpy": frozenset({"random", "linalg"})}

# Attribute names refused on every object (methods that read or write files, leave the process,
# evaluate strings as code, or reach raw memory).
DENIED_ATTRIBUTES = _words("""
    to_pickle read_pickle to_hdf to_sql to_parquet to_feather to_stata to_excel to_orc to_clipboard
    to_gbq to_xml tofile dump dumps load save savez savez_compressed fromfile memmap loadtxt
    genfromtxt fromregex ctypes ctypeslib cffi lib io core api testing f2py distutils internals
    compat eval query sql style deserialize serialize imread imsave register_plugin
    register_plugin_function plugins system popen spawn environ modules canvas
""")
DENIED_PREFIXES = ("read_", "scan_", "print_", "sink_", "write_")
# ...except these writers, which may write only to paths from sdk.output(...):
PATH_WRITERS = _words("""
    to_csv to_json to_html to_string to_latex to_markdown savefig savetxt write_csv write_json
    write_ndjson
""")
FORBIDDEN_BUILTINS = _words("""
    exec eval compile open __import__ globals locals vars input breakpoint help exit quit
    memoryview copyright credits license dir __builtins__ __loader__ __spec__ __build_class__
""")
DYNAMIC_NAME_CALLS = {"getattr": 1, "hasattr": 1, "setattr": 1, "delattr": 1}
INSPECT_ATTRIBUTES = _words("""
    tb_frame tb_next f_back f_builtins f_code f_generator f_globals f_locals f_trace co_code
    gi_frame gi_code gi_yieldfrom cr_await cr_frame cr_code cr_origin ag_await ag_frame ag_code
""")


def attribute_denied(name: str) -> bool:
    """True if ``name`` may not be read on any object."""
    if name in PATH_WRITERS:
        return False
    return name in DENIED_ATTRIBUTES or name.startswith(DENIED_PREFIXES)


def private(name: str) -> bool:
    return name.startswith("_") or name in INSPECT_ATTRIBUTES


def _sdk_names() -> frozenset[str]:
    from sandbox import sdk

    return frozenset(sdk.__all__)


def exposed(module: str) -> frozenset[str] | None:
    """Names a module proxy exposes (children of a bare parent package included), or None."""
    if module == "sandbox.sdk":
        return _sdk_names()
    names = MODULE_NAMES.get(module)
    if names is not None:
        return names
    return None


def resolve_import(name: str, fromlist: Iterable[str], allowed: Iterable[str]) -> tuple[str, str] | None:
    """How an import statement binds, or None if refused (with the reason in the second slot).

    Returns ("module", path) for an allowed module, ("parent", path) for a bare parent package
    of an allowed module (``import matplotlib.pyplot`` binds ``matplotlib``).
    """
    allowed = set(allowed)
    fromlist = list(fromlist or ())
    if fromlist:
        if name in allowed:
            return ("module", name)
        if all(f"{name}.{f}" in allowed for f in fromlist):
            return ("parent", name)
        return None
    if name in allowed:
        top = name.split(".")[0]
        return ("module", name) if top == name else ("parent", top)
    return None


def parent_children(package: str, allowed: Iterable[str]) -> frozenset[str]:
    """The child names a bare parent proxy exposes: the next path step of each allowed module."""
    prefix = package + "."
    return frozenset(m[len(prefix):].split(".")[0] for m in allowed if m.startswith(prefix))


# -- the static check --------------------------------------------------------------------------

_FIELD = re.compile(r"[.\[]")


def _format_fields(template: str) -> list[str]:
    try:
        return [f for _, f, spec, _ in string.Formatter().parse(template) if f] + [
            f for _, _, spec, _ in string.Formatter().parse(template) if spec
            for f in _format_fields(spec)]
    except ValueError:
        return []


class _Checker(ast.NodeVisitor):
    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.allowed = allowed
        self.violations: list[Violation] = []
        self.aliases: dict[str, str] = {}  # local name -> module path or "parent:pkg"

    def add(self, node: ast.AST, rule: str, message: str) -> None:
        self.violations.append(Violation(getattr(node, "lineno", 0) or 0, rule, message))

    # imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            how = resolve_import(alias.name, (), self.allowed)
            if how is None:
                self.add(node, "import-not-allowed", f"import of `{alias.name}` is not allowed in the sandbox "
                                                     f"(allowed: {', '.join(self.allowed)})")
                continue
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                kind, path = how
                self.aliases[alias.name.split(".")[0]] = path if kind == "module" else "parent:" + path

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        names = [a.name for a in node.names]
        if node.level:
            self.add(node, "import-not-allowed", "relative imports are not allowed in the sandbox")
            return
        how = resolve_import(module, names, self.allowed)
        if how is None:
            self.add(node, "import-not-allowed", f"import from `{module}` is not allowed in the sandbox "
                                                 f"(allowed: {', '.join(self.allowed)})")
            return
        kind, path = how
        for alias in node.names:
            if alias.name == "*":
                self.add(node, "import-not-allowed", "`from ... import *` is not allowed")
                continue
            if kind == "parent":
                self.aliases[alias.asname or alias.name] = f"{path}.{alias.name}"
                continue
            names_ok = exposed(path) or frozenset()
            if alias.name not in names_ok:
                self.add(node, "import-not-allowed", f"`{alias.name}` from `{path}` is not available in the sandbox")
            elif alias.name in SUBMODULES.get(path, ()):
                self.aliases[alias.asname or alias.name] = f"{path}.{alias.name}"

    # names
    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_BUILTINS:
            self.add(node, "forbidden-builtin", f"`{node.id}` is not available in the sandbox")
        elif node.id.startswith("_") and node.id != "_":
            self.add(node, "private-name", f"names starting with `_` are not allowed (`{node.id}`)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        path = self._module_path(node.value)
        if private(name):
            self.add(node, "private-attribute", f"attribute `{name}` is private and not accessible")
        elif path is not None:
            if path.startswith("parent:"):
                names, shown = parent_children(path[7:], self.allowed), path[7:]
            else:
                names, shown = exposed(path) or frozenset(), path
            if name not in names:
                self.add(node, "attribute-not-allowed", f"`{shown}.{name}` is not available in the sandbox")
        elif attribute_denied(name):
            self.add(node, "attribute-not-allowed", f"`.{name}` is not available in the sandbox "
                                                    "(files are written only via sdk.output paths)")
        self.generic_visit(node)

    def _module_path(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._module_path(node.value)
            if base is None:
                return None
            if base.startswith("parent:"):
                pkg = base[7:]
                full = f"{pkg}.{node.attr}"
                if full in self.allowed:
                    return full
                return "parent:" + full if any(m.startswith(full + ".") for m in self.allowed) else None
            if node.attr in SUBMODULES.get(base, ()):
                return f"{base}.{node.attr}"
        return None

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        fname = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if fname in DYNAMIC_NAME_CALLS and isinstance(func, ast.Name):
            pos = DYNAMIC_NAME_CALLS[fname]
            if len(node.args) <= pos or not (isinstance(node.args[pos], ast.Constant)
                                              and isinstance(node.args[pos].value, str)):
                self.add(node, "dynamic-attribute", f"`{fname}` needs the attribute name as a string constant")
            elif fname == "hasattr":
                if private(node.args[pos].value):
                    self._check_name_constant(node, node.args[pos].value)
            else:
                self._check_name_constant(node, node.args[pos].value)
        if fname in ("attrgetter", "methodcaller"):
            args = node.args if fname == "attrgetter" else node.args[:1]
            for a in args:
                if not (isinstance(a, ast.Constant) and isinstance(a.value, str)):
                    self.add(node, "dynamic-attribute", f"`{fname}` needs attribute names as string constants")
                else:
                    for part in a.value.split("."):
                        self._check_name_constant(node, part)
        if isinstance(func, ast.Attribute) and func.attr in ("format", "format_map") \
                and isinstance(func.value, ast.Constant) and isinstance(func.value.value, str):
            for field in _format_fields(func.value.value):
                parts = _FIELD.split(field)[1:]
                if any(p.startswith("_") or p.rstrip("]") in INSPECT_ATTRIBUTES for p in parts):
                    self.add(node, "private-attribute", "a format field reaches a private attribute")
                    break
        self.generic_visit(node)

    def _check_name_constant(self, node: ast.AST, name: str) -> None:
        if private(name):
            self.add(node, "private-attribute", f"attribute `{name}` is private and not accessible")
        elif attribute_denied(name):
            self.add(node, "attribute-not-allowed", f"`.{name}` is not available in the sandbox")


def _rp_rule(message: str) -> str:
    if "SyntaxError" in message or "IndentationError" in message:
        return "syntax"
    if "invalid attribute name" in message or "restricted name" in message:
        return "private-attribute"
    if "invalid variable name" in message:
        return "private-name"
    if "Exec calls" in message or "Eval calls" in message:
        return "forbidden-builtin"
    return "restricted"


_RP_LINE = re.compile(r"^Line (\d+|None): ?(.*)$", re.S)


def _restricted_errors(source: str, filename: str) -> list[Violation]:
    from RestrictedPython import compile_restricted_exec

    result = compile_restricted_exec(source, filename=filename)
    out = []
    for err in result.errors:
        m = _RP_LINE.match(err)
        line = int(m.group(1)) if m and m.group(1) != "None" else 0
        text = m.group(2) if m else err
        out.append(Violation(line, _rp_rule(text), text.strip()))
    return out


def check_script(source: str, allowed_imports: Iterable[str] = DEFAULT_ALLOWED,
                 filename: str = "<script>") -> list[Violation]:
    """Every violation of the script policy in ``source``, sorted by line; [] if it may run."""
    allowed = tuple(allowed_imports)
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        return [Violation(exc.lineno or 0, "syntax", f"the script does not parse: {exc.msg}")]
    except ValueError as exc:  # e.g. null bytes
        return [Violation(0, "syntax", f"the script does not parse: {exc}")]
    checker = _Checker(allowed)
    checker.visit(tree)
    found = list(checker.violations)
    seen = {(v.line, v.rule) for v in found}
    lines_with = {v.line for v in found}
    for v in _restricted_errors(source, filename):
        if (v.line, v.rule) in seen:
            continue
        if v.rule in ("private-name", "private-attribute", "forbidden-builtin") and v.line in lines_with:
            continue
        seen.add((v.line, v.rule))
        found.append(v)
    return sorted(set(found), key=lambda v: (v.line, v.rule, v.message))


def format_violations(violations: Iterable[Violation]) -> str:
    return "\n".join(str(v) for v in violations)


def run_script(path: str | Path, allowed_imports: Iterable[str] | None = None) -> None:
    """Check, then run the script at ``path`` under the runtime guards (in this process).

    Raises ``ScriptRefused`` (with ``.violations``) if the check fails; whatever the script
    raises otherwise propagates (the harness turns it into a one-line message).
    """
    from sandbox.sdk import _runtime

    path = Path(path)
    source = path.read_text(encoding="utf-8")
    _runtime.run_source(source, str(path), tuple(allowed_imports or DEFAULT_ALLOWED), check=True)
