"""Run-time half of the guard: module proxies and the RestrictedPython guard functions."""
from __future__ import annotations

import builtins
import importlib
import operator
import os
import string
import sys
import types
from typing import Any, Callable, Iterable

from RestrictedPython import compile_restricted_exec
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence, safe_builtins

from sandbox.sdk import guard
from sandbox.sdk.errors import OutputRefused, ScriptRefused
from sandbox.sdk.outputs import is_output_path


class NotAvailable(ScriptRefused, AttributeError):
    """An attribute the sandbox does not expose (also an AttributeError, so hasattr() is False)."""


class ImportRefused(ScriptRefused, ImportError):
    """A module outside the allow-list."""


def _refuse(rule: str, message: str) -> NotAvailable:
    err = NotAvailable(message, rule)
    err.rule = rule  # type: ignore[attr-defined]
    return err


# -- vetting values ---------------------------------------------------------------------------

_DANGEROUS_MODULES = frozenset("""
    os posix nt sys subprocess ctypes _ctypes importlib pickle _pickle marshal shutil socket _socket
    pathlib io _io tempfile shelve code codeop runpy inspect gc multiprocessing signal pty fcntl mmap
    resource _thread threading urllib http ftplib smtplib webbrowser cloudpickle joblib dill zipimport
    sysconfig site platform _posixsubprocess asyncio select selectors
""".split())
_FORBIDDEN_OBJECTS: set[int] = {id(getattr(builtins, n)) for n in (
    "open", "eval", "exec", "compile", "__import__", "globals", "locals", "vars", "input",
    "breakpoint", "getattr", "setattr", "delattr", "__build_class__")}


def _module_of(value: Any) -> str:
    if isinstance(value, types.MethodType):
        value = value.__func__
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        mod = getattr(value, "__module__", None)
        return mod if isinstance(mod, str) else ""
    return ""


def vet(value: Any, what: str) -> Any:
    """``value`` unless it is a module or a function/class of a module that reaches the system."""
    if isinstance(value, types.ModuleType):
        raise _refuse("attribute-not-allowed", f"{what} is a module, not reachable in the sandbox")
    if id(value) in _FORBIDDEN_OBJECTS and value in [getattr(builtins, n, None) for n in dir(builtins)]:
        raise _refuse("forbidden-builtin", f"{what} is not available in the sandbox")
    mod = _module_of(value)
    if mod and mod.split(".")[0] in _DANGEROUS_MODULES:
        raise _refuse("attribute-not-allowed", f"{what} is not available in the sandbox")
    return value


# -- module proxies ---------------------------------------------------------------------------

class ModuleProxy:
    """Only the vetted names of a module; anything else is NotAvailable."""

    def __init__(self, name: str, names: dict[str, Any]) -> None:
        object.__setattr__(self, "_sandbox_name", name)
        for key, value in names.items():
            object.__setattr__(self, key, value)

    def __getattr__(self, name: str) -> Any:
        shown = object.__getattribute__(self, "_sandbox_name")
        raise _refuse("attribute-not-allowed", f"`{shown}.{name}` is not available in the sandbox")

    def __setattr__(self, name: str, value: Any) -> None:
        raise _refuse("attribute-not-allowed", "sandbox modules cannot be changed")

    __delattr__ = __setattr__  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<sandbox module {object.__getattribute__(self, '_sandbox_name')}>"


def _path_guarded(method: Callable, name: str) -> Callable:
    keys = ("path_or_buf", "buf", "path", "file", "fname", "filename")

    def write(*args: Any, **kwargs: Any) -> Any:
        target = args[0] if args else next((kwargs[k] for k in keys if k in kwargs), None)
        if target is not None and not is_output_path(target):
            raise OutputRefused(f"`{name}` may write only to a path from sdk.output(...)",
                                "e.g. df.to_csv(sdk.output('result.csv'))")
        return method(*args, **kwargs)

    write.__name__ = name
    return write


def _display_option(fn: Callable) -> Callable:
    def option(*args: Any, **kwargs: Any) -> Any:
        for key in args[::2]:
            if not (isinstance(key, str) and key.startswith("display.")):
                raise _refuse("attribute-not-allowed", "only pandas `display.*` options can be set")
        return fn(*args, **kwargs)

    return option


def _check_names(names: Iterable[str]) -> None:
    for n in names:
        if not isinstance(n, str) or guard.private(n) or guard.attribute_denied(n):
            raise _refuse("private-attribute", "attribute names must be public and allowed")


def _attrgetter(*attrs: str) -> Callable:
    _check_names(part for a in attrs for part in str(a).split("."))
    getter = operator.attrgetter(*attrs)

    def get(obj: Any) -> Any:
        return vet(getter(obj), "attrgetter result")

    return get


def _methodcaller(name: str, *args: Any, **kwargs: Any) -> Callable:
    _check_names([name])

    def call(obj: Any) -> Any:
        return guarded_getattr(obj, name)(*args, **kwargs)

    return call


_WRAPPERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "operator": {"attrgetter": lambda f: _attrgetter, "methodcaller": lambda f: _methodcaller},
    "numpy": {"savetxt": lambda f: _path_guarded(f, "savetxt")},
    "pandas": {"set_option": _display_option, "option_context": _display_option,
               "reset_option": _display_option},
    "matplotlib.pyplot": {"savefig": lambda f: _path_guarded(f, "savefig")},
}


class _Imports:
    """Builds proxies for one run (cached)."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.allowed = allowed
        self.cache: dict[str, ModuleProxy] = {}

    def module(self, path: str) -> ModuleProxy:
        if path in self.cache:
            return self.cache[path]
        if path == "sandbox.sdk":
            import sandbox.sdk as real
            names = {n: getattr(real, n) for n in real.__all__}
        else:
            if path == "matplotlib.pyplot":
                os.environ.setdefault("MPLBACKEND", "Agg")
            real = importlib.import_module(path)
            wrappers = _WRAPPERS.get(path, {})
            names = {}
            for n in guard.MODULE_NAMES[path]:
                if n in guard.SUBMODULES.get(path, ()):
                    names[n] = self.module(f"{path}.{n}")
                elif hasattr(real, n):
                    value = getattr(real, n)
                    names[n] = wrappers[n](value) if n in wrappers else value
        proxy = ModuleProxy(path, names)
        self.cache[path] = proxy
        return proxy

    def parent(self, package: str) -> ModuleProxy:
        key = "parent:" + package
        if key not in self.cache:
            names: dict[str, Any] = {}
            for child in guard.parent_children(package, self.allowed):
                full = f"{package}.{child}"
                names[child] = self.module(full) if full in self.allowed else self.parent(full)
            self.cache[key] = ModuleProxy(package, names)
        return self.cache[key]

    def __call__(self, name: str, globals: Any = None, locals: Any = None,
                 fromlist: Iterable[str] | None = (), level: int = 0) -> ModuleProxy:
        if level:
            raise ImportRefused("relative imports are not allowed in the sandbox", "import-not-allowed")
        how = guard.resolve_import(name, fromlist or (), self.allowed)
        if how is None:
            raise ImportRefused(f"import of `{name}` is not allowed in the sandbox", "import-not-allowed")
        kind, path = how
        return self.module(path) if kind == "module" else self.parent(path)


# -- guard functions --------------------------------------------------------------------------

class _SafeFormatter(string.Formatter):
    """str.format whose fields go through the guarded getattr/getitem."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        import _string  # the parser str.format itself uses

        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, key in rest:
            obj = guarded_getattr(obj, key) if is_attr else guarded_getitem(obj, key)
        return obj, first


def _safe_format(template: str, *args: Any, **kwargs: Any) -> str:
    return _SafeFormatter().vformat(template, args, kwargs)


def _safe_format_map(template: str, mapping: Any) -> str:
    return _SafeFormatter().vformat(template, (), mapping)


_DISPATCH = frozenset({"agg", "aggregate", "apply", "transform", "pipe", "map", "applymap"})


def _func_names_checked(method: Callable) -> Callable:
    def check(x: Any) -> None:
        if isinstance(x, str):
            _check_names([x])
        elif isinstance(x, (list, tuple)):
            for i in x:
                check(i)
        elif isinstance(x, dict):
            for i in x.values():
                check(i)

    def call(*args: Any, **kwargs: Any) -> Any:
        if args:
            check(args[0])
        for k in ("func", "arg"):
            if k in kwargs:
                check(kwargs[k])
        return method(*args, **kwargs)

    return call


_MISSING = object()


def guarded_getattr(obj: Any, name: Any, default: Any = _MISSING) -> Any:
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if guard.private(name):
        raise _refuse("private-attribute", f"attribute `{name}` is private and not accessible")
    if isinstance(obj, ModuleProxy):
        try:
            return getattr(obj, name)
        except NotAvailable:
            if default is _MISSING:
                raise
            return default
    if guard.attribute_denied(name):
        if default is not _MISSING:
            return default
        raise _refuse("attribute-not-allowed", f"`.{name}` is not available in the sandbox")
    if name in ("format", "format_map") and (isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))):
        if isinstance(obj, str):
            return (lambda *a, **k: _safe_format(obj, *a, **k)) if name == "format" else \
                (lambda m: _safe_format_map(obj, m))
        return _safe_format if name == "format" else _safe_format_map
    try:
        value = getattr(obj, name)
    except AttributeError:
        if default is _MISSING:
            raise
        return default
    if name in guard.PATH_WRITERS and callable(value):
        return _path_guarded(value, name)
    if name in _DISPATCH and callable(value) and _module_of(type(obj)).startswith(("pandas", "polars")):
        return _func_names_checked(value)
    return vet(value, f"`.{name}`")


def guarded_hasattr(obj: Any, name: str) -> bool:
    try:
        guarded_getattr(obj, name)
        return True
    except (AttributeError, ScriptRefused):
        return False


def guarded_getitem(obj: Any, key: Any) -> Any:
    return vet(obj[key], "an item")


class _ScriptMeta(type):
    """Metaclass of classes a script defines (their instances accept attribute writes)."""


def _writable_types() -> tuple[type, ...]:
    types_: list[type] = [dict, list, set]
    pd = sys.modules.get("pandas")
    if pd is not None:
        types_ += [pd.DataFrame, pd.Series, pd.Index]
        try:
            from pandas.core import indexing
            types_ += [indexing._LocIndexer, indexing._iLocIndexer, indexing._AtIndexer, indexing._iAtIndexer]
        except (ImportError, AttributeError):
            pass
    np = sys.modules.get("numpy")
    if np is not None:
        types_.append(np.ndarray)
    return tuple(types_)


_PANDAS_ATTRS = frozenset({"columns", "index", "name", "names", "attrs"})


class _Writer:
    __slots__ = ("_ob",)

    def __init__(self, ob: Any) -> None:
        object.__setattr__(self, "_ob", ob)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._ob[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._ob[key]

    def __setattr__(self, name: str, value: Any) -> None:
        ob = self._ob
        if guard.private(name):
            raise _refuse("private-attribute", f"attribute `{name}` is private and not accessible")
        if isinstance(type(ob), _ScriptMeta) or name in _PANDAS_ATTRS and _module_of(type(ob)).startswith("pandas"):
            setattr(ob, name, value)
            return
        raise _refuse("attribute-not-allowed", f"attribute `{name}` of a {type(ob).__name__} cannot be set")

    def __delattr__(self, name: str) -> None:
        if guard.private(name) or not isinstance(type(self._ob), _ScriptMeta):
            raise _refuse("attribute-not-allowed", f"attribute `{name}` cannot be deleted")
        delattr(self._ob, name)


def guarded_write(ob: Any) -> Any:
    if type(ob) in (dict, list):
        return ob
    if isinstance(type(ob), _ScriptMeta) or isinstance(ob, _writable_types()):
        return _Writer(ob)
    raise _refuse("attribute-not-allowed", f"a {type(ob).__name__} cannot be changed in the sandbox")


def guarded_setattr(ob: Any, name: str, value: Any) -> None:
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    setattr(guarded_write(ob), name, value)


def guarded_delattr(ob: Any, name: str) -> None:
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    delattr(guarded_write(ob), name)


_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
    "@=": operator.imatmul,
}


def inplacevar(op: str, x: Any, y: Any) -> Any:
    return _INPLACE[op](x, y)


def apply(f: Callable, *args: Any, **kwargs: Any) -> Any:
    return f(*args, **kwargs)


class _Printer:
    """RestrictedPython's print collector, writing straight to stdout."""

    def __init__(self, _getattr_: Any = None) -> None:
        pass

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        if kwargs.get("file") is not None:
            raise _refuse("forbidden-builtin", "print(file=...) is not allowed; write files via sdk.output")
        kwargs["file"] = sys.stdout
        print(*objects, **kwargs)

    def __call__(self) -> str:
        return ""


def _type(obj: Any) -> type:
    return type(obj)


def restricted_builtins() -> dict[str, Any]:
    b = dict(safe_builtins)
    for name in ("list", "dict", "tuple", "set", "frozenset", "sorted", "reversed", "zip", "enumerate",
                 "map", "filter", "min", "max", "sum", "any", "all", "iter", "next", "bytes",
                 "format", "ascii", "bin", "property", "staticmethod", "classmethod", "NotImplemented",
                 "StopAsyncIteration", "RecursionError", "ExceptionGroup"):
        if hasattr(builtins, name):
            b[name] = getattr(builtins, name)
    b.update({
        "getattr": guarded_getattr, "hasattr": guarded_hasattr, "setattr": guarded_setattr,
        "delattr": guarded_delattr, "type": _type,
    })
    b.pop("_getattr_", None)
    return b


def restricted_globals(allowed: tuple[str, ...], filename: str) -> dict[str, Any]:
    b = restricted_builtins()
    b["__import__"] = _Imports(allowed)
    return {
        "__builtins__": b,
        "__name__": "__script__",
        "__file__": filename,
        "__metaclass__": _ScriptMeta,
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guarded_write,
        "_inplacevar_": inplacevar,
        "_apply_": apply,
        "_print_": _Printer,
    }


def run_source(source: str, filename: str, allowed: tuple[str, ...], check: bool = True) -> None:
    """Run ``source`` under the guard. With ``check=False`` only RestrictedPython's own compile
    rules apply before running (used by tests to prove the run-time layer holds by itself)."""
    if check:
        violations = guard.check_script(source, allowed, filename=filename)
        if violations:
            err = ScriptRefused(
                f"the script breaks the sandbox policy ({len(violations)} problem(s)); first: {violations[0]}",
                "see docs/sdk.md#script-rules")
            err.violations = violations  # type: ignore[attr-defined]
            raise err
    result = compile_restricted_exec(source, filename=filename)
    if result.errors:
        err = ScriptRefused(f"the script breaks the sandbox policy: {result.errors[0]}",
                            "see docs/sdk.md#script-rules")
        err.violations = []  # type: ignore[attr-defined]
        raise err
    exec(result.code, restricted_globals(allowed, filename))
