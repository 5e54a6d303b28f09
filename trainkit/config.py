"""Safe, nanoGPT-compatible configuration: a dataclass of documented defaults, overridden
by config files and command-line flags.

A trainer declares its settings as a dataclass whose fields are made with :func:`opt`
(default plus one line of help) and whose ``__post_init__`` rejects impossible values. Then::

    cfg = load_config(TrainConfig, sys.argv[1:], prog="train.py")

reads, in order, each positional argument as a config file and each ``--key=value`` or
``--key value`` flag as an override; later sources win. A config file is either Python-like
``key = value`` lines (as nanoGPT's ``config/*.py``) or a JSON object (``*.json``). Config
files are parsed, never executed: values may be literals (numbers, strings, True/False/None,
tuples, lists, dicts), arithmetic on them, and names assigned earlier in the same file.

Every problem raises :class:`ConfigError` whose message names the problem and the fix.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import math
import operator
import os
import types
import typing
from typing import Any, Literal, Sequence, TypeVar, Union, get_args, get_origin

T = TypeVar("T")

__all__ = ["ConfigError", "opt", "require", "load_config", "parse_config_file", "parse_value", "format_help"]


class ConfigError(Exception):
    """A problem the user fixes by changing configuration, flags or files. The message says
    what is wrong and how to fix it; command-line tools print it and exit non-zero."""


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``condition``: for ``__post_init__`` checks, whose
    message should name the key, the bad value and the fix."""
    if not condition:
        raise ConfigError(message)


def opt(default: Any, help: str) -> Any:
    """A dataclass field with a default and one line of ``help`` shown by ``--help``.
    Mutable defaults (lists, dicts) are copied per instance."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


# ---------------------------------------------------------------------------------------
# Safe evaluation of config values
# ---------------------------------------------------------------------------------------

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARYOPS = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
# Bounds that keep arithmetic in a config file from taking unbounded time or memory
# (2**10**9 or "x" * 10**10 would hang the parser otherwise).
_MAX_EXPONENT = 4096
_MAX_SEQUENCE = 1_000_000


def _describe(node: ast.AST) -> str:
    """A short human name for a syntax node that is not allowed in a config value."""
    names = {
        ast.Call: "a function call",
        ast.Attribute: "an attribute access",
        ast.Subscript: "indexing",
        ast.Lambda: "a lambda",
        ast.Compare: "a comparison",
        ast.IfExp: "a conditional expression",
        ast.JoinedStr: "an f-string",
        ast.ListComp: "a comprehension",
        ast.GeneratorExp: "a generator",
    }
    return names.get(type(node), f"'{type(node).__name__}' syntax")


def _safe_eval(node: ast.AST, names: dict[str, Any]) -> Any:
    """Evaluate one expression node allowing only literals, arithmetic and known names."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise ValueError(f"name '{node.id}' is not defined (only names assigned earlier in the file can be used)")
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_safe_eval(e, names) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("'**' unpacking is not allowed")
        return {_safe_eval(k, names): _safe_eval(v, names) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARYOPS:
        return _UNARYOPS[type(node.op)](_safe_eval(node.operand, names))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _safe_eval(node.left, names), _safe_eval(node.right, names)
        if isinstance(node.op, ast.Pow) and isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
            raise ValueError(f"exponent {right} is too large")
        if isinstance(node.op, ast.Mult) and (isinstance(left, (str, list, tuple)) or isinstance(right, (str, list, tuple))):
            count = right if isinstance(left, (str, list, tuple)) else left
            if isinstance(count, int) and count > _MAX_SEQUENCE:
                raise ValueError(f"repetition count {count} is too large")
        try:
            return _BINOPS[type(node.op)](left, right)
        except (TypeError, ZeroDivisionError, OverflowError) as e:
            raise ValueError(str(e)) from None
    raise ValueError(f"{_describe(node)} is not allowed; use literals and arithmetic only")


def parse_value(text: str) -> Any:
    """Parse one command-line value: a literal or arithmetic (``3e-4``, ``2*8``, ``True``,
    ``'gpt'``) if it parses as one, else the text itself as a string (``--device=cpu``)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return _safe_eval(tree.body, {})
    except (SyntaxError, ValueError):
        return text


def _read_text(path: str) -> str:
    """The file's text; ConfigError when it is not UTF-8 text (a binary file, random bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not a text file (byte {e.start} is not UTF-8). "
                          f"Fix: pass a config file of `key = value` lines or a JSON object.") from None
    if "\0" in text:
        raise ConfigError(f"{path} is not a text file (it holds NUL bytes). "
                          f"Fix: pass a config file of `key = value` lines or a JSON object.")
    return text


def parse_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a config file into a dict without executing it.

    ``*.json``: a JSON object. Anything else: Python-syntax ``key = value`` assignments,
    comments and docstrings; each value is a literal, arithmetic, or a name assigned earlier
    in the file. Raises ConfigError naming the file and line of anything else.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        hint = ""
        folder = os.path.dirname(path) or "."
        if os.path.isdir(folder):
            shipped = sorted(f for f in os.listdir(folder) if f.endswith((".py", ".json")))
            close = difflib.get_close_matches(os.path.basename(path), shipped, n=1)
            if close:
                hint = f" Did you mean '{os.path.join(folder, close[0])}'?"
            elif shipped:
                hint = f" Files in '{folder}': {', '.join(shipped)}."
        raise ConfigError(f"config file '{path}' not found.{hint} Fix: pass the path of an existing config file.")
    text = _read_text(path)
    deep = (f"{path}: nested too deeply to read (more than a few hundred levels of brackets). "
            f"Fix: write a flat file of settings.")
    if path.endswith(".json"):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}: invalid JSON ({e.msg}). Fix: correct the JSON syntax.") from None
        except (RecursionError, MemoryError):
            raise ConfigError(deep) from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of settings, got {type(values).__name__}.")
        return values
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: syntax error ({e.msg}). Fix: write one `key = value` per line.") from None
    except (RecursionError, MemoryError):
        raise ConfigError(deep) from None
    values: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # a docstring or a bare string used as a comment
        if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
            targets, value_node = [t.id for t in stmt.targets], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            targets, value_node = [stmt.target.id], stmt.value
        else:
            raise ConfigError(
                f"{path}:{stmt.lineno}: only `key = value` assignments are allowed in a config file "
                f"(found {type(stmt).__name__}); config files are parsed, never executed."
            )
        try:
            value = _safe_eval(value_node, values)
        except ValueError as e:
            raise ConfigError(f"{path}:{stmt.lineno}: {e}.") from None
        except (RecursionError, MemoryError):
            raise ConfigError(deep) from None
        for name in targets:
            values[name] = value
    return values


# ---------------------------------------------------------------------------------------
# Type checking against the dataclass
# ---------------------------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise TypeError. Accepted conversions: an int for a
    float, an integral float for an int (``5e3``), and the words true/false for a bool."""
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise TypeError
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option)
            except TypeError:
                pass
        raise TypeError
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    if origin in (tuple, list) or tp in (tuple, list):
        if isinstance(value, (tuple, list)):
            return (origin or tp)(value)
        raise TypeError
    if origin is dict or tp is dict:
        if isinstance(value, dict):
            return value
        raise TypeError
    if isinstance(value, tp):
        return value
    raise TypeError


def _all_finite(value: Any) -> bool:
    """False when ``value`` is, or holds (in a tuple, list or dict), an infinite or NaN float."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (tuple, list)):
        return all(_all_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    return True


def _split_flags(argv: Sequence[str], prog: str) -> tuple[list[str], list[tuple[str, str | None]]]:
    """Split argv into config files and (key, raw value) overrides, in order. A flag with
    no value (``--eval_only`` followed by another flag or nothing) has raw value None."""
    files: list[str] = []
    flags: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            body = arg[2:]
            if "=" in body:
                key, raw = body.split("=", 1)
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                key, raw = body, argv[i + 1]
                i += 1
            else:
                key, raw = body, None
            flags.append((key.replace("-", "_"), raw))
        elif arg.startswith("-") and len(arg) > 1 and not _looks_numeric(arg):
            raise ConfigError(f"unknown option '{arg}'. Fix: settings are given as --key=value (see {prog} --help).")
        else:
            files.append(arg)
        i += 1
    return files, flags


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


_BARE_FLAG = object()  # marks "--key" given without a value; only a bool key accepts it (as True)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def load_config(cls: type[T], argv: Sequence[str], *, prog: str = "train.py") -> T:
    """Build ``cls`` (a dataclass made with :func:`opt` fields) from defaults, the config
    files named in ``argv`` and its ``--key=value`` / ``--key value`` flags, in that order.

    Raises ConfigError for a missing or unparsable file, an unknown key (with a did-you-mean),
    a value of the wrong type, an infinite or NaN number (``1e999``, ``1e999-1e999``), or a value that ``cls.__post_init__`` rejects (it may raise
    ConfigError or ValueError). ``--help``/``-h`` is not handled here: see format_help.
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    files, flags = _split_flags(argv, prog)

    # (origin for messages, key, parsed value, raw command-line text or None for file values)
    sources: list[tuple[str, str, Any, str | None]] = []
    for path in files:
        for key, value in parse_config_file(path).items():
            sources.append((f"{path}: {key} = {value!r}", key, value, None))
    for key, raw in flags:
        if raw is None:
            sources.append((f"--{key}", key, _BARE_FLAG, None))
        else:
            sources.append((f"--{key}={raw}", key, parse_value(raw), raw))

    chosen: dict[str, Any] = {}
    for origin, key, value, raw in sources:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{key}' (from {origin}).{hint} Fix: run {prog} --help to list the keys.")
        tp = hints[key]
        if value is _BARE_FLAG:
            if tp is not bool:
                raise ConfigError(f"flag '--{key}' has no value. Fix: write --{key}=VALUE.")
            value = True
        if tp is str and raw is not None and not isinstance(value, str):
            value = raw  # a string key keeps its text even when it looks like a number: --out_dir=2024
        try:
            chosen[key] = _coerce(value, tp)
        except TypeError:
            raise ConfigError(
                f"config key '{key}' expects {_type_name(tp)}, got {type(value).__name__} {value!r} (from {origin}). "
                f"Fix: give a value like {_default(fields[key])!r}."
            ) from None
        if not _all_finite(chosen[key]):
            raise ConfigError(
                f"config key '{key}' must be a finite number, got {value!r} (from {origin}); infinity and NaN "
                f"would train on NaN. Fix: give a finite value like {_default(fields[key])!r}."
            )
    try:
        return cls(**chosen)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None


def format_help(cls: type, prog: str, description: str = "") -> str:
    """A usage text listing every key of ``cls`` with its type, default and help (a key
    redeclared without help shows its base class's)."""
    hints = typing.get_type_hints(cls)
    lines = [f"usage: {prog} [CONFIG_FILE ...] [--key=value ...]", ""]
    if description:
        lines += [description, ""]
    lines.append("keys (defaults; a config file is `key = value` lines or a JSON object):")
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        lines.append(f"  --{f.name}={_default(f)!r}  ({_type_name(hints[f.name])})")
        text = _help(cls, f.name)
        if text:
            lines.append(f"      {text}")
    return "\n".join(lines)


def _help(cls: type, name: str) -> str:
    """The help of field ``name``: its own, else that of the nearest base class declaring it
    (a subclass that only changes a default writes ``key: type = value``)."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and f.metadata.get("help"):
            return f.metadata["help"]
    return ""
