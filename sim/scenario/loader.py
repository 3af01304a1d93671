"""Load a scenario: read YAML safely, apply dotted-path overrides, validate once.

``load_scenario(path, overrides)`` is the one way in from a file; ``parse_scenario(data)`` and
``apply_overrides(data, overrides)`` serve programmatic callers (what-if variants). Whatever the
input, the only exception that leaves this module is :class:`ScenarioError`, which names the
source, the key path and the problem, one line per problem.
"""

from __future__ import annotations

import copy
import os
import stat
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from sim.scenario.distributions import Distribution
from sim.scenario.errors import Invalid, Problem, ScenarioError
from sim.scenario.schema import FAULT_KINDS, Scenario
from sim.scenario.units import format_number, show

MAX_FILE_BYTES = 1 << 20
"""The largest scenario file accepted: 1 MiB."""

MAX_DEPTH = 32
"""The deepest nesting of mappings and lists accepted."""

MAX_NODES = 500_000
"""The most values (after expanding YAML aliases) a scenario may hold."""

MAX_ITEMS = 10_000
"""The most items any one list or mapping may hold."""

Overrides = Union[Iterable[str], Mapping[str, Any]]  # noqa: UP007 - a runtime alias
"""Dotted-path overrides: ``["stations.app.servers=24"]`` or ``{"stations.app.servers": 24}``."""


# --- reading --------------------------------------------------------------------------------


def _fail(source: str, message: str, path: str = "") -> ScenarioError:
    return ScenarioError(source, [(path, message)])


def read_yaml_file(path: str | os.PathLike[str]) -> Any:
    """Read a YAML file (at most 1 MiB, UTF-8) with ``yaml.safe_load``; raise ScenarioError."""
    source = _source(path)
    if not isinstance(path, (str, os.PathLike)):
        raise _fail(source, f"expected a file path, got {type(path).__name__}")
    try:
        info = os.stat(source)
    except FileNotFoundError:
        raise _fail(source, "file not found") from None
    except (OSError, ValueError) as exc:
        raise _fail(source, f"cannot read the file: {_os_reason(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise _fail(source, "is a directory, not a scenario file")
    if not stat.S_ISREG(info.st_mode):
        raise _fail(source, "is not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise _fail(source, _too_big(info.st_size))
    try:
        with open(source, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _fail(source, f"cannot read the file: {_os_reason(exc)}") from None
    if len(raw) > MAX_FILE_BYTES:  # pragma: no cover - the file grew after stat()
        raise _fail(source, _too_big(len(raw)))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(source, f"not UTF-8 text: cannot decode byte {exc.start}") from None
    return parse_yaml(text, source)


def _source(path: Any) -> str:
    """Name a path for messages (a str whatever the path type)."""
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.fsdecode(path)
    return repr(path)


def _too_big(size: int) -> str:
    return f"file too large: {size} bytes (at most 1 MiB, {MAX_FILE_BYTES} bytes)"


def _os_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping.

    A key may override one brought in by a merge (``<<: *base``), as YAML intends; within
    one mapping, merged ones included, each key is given once.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping as SafeLoader does, after checking its own keys are distinct."""
        self._refuse_repeated_keys(node)
        return super().construct_mapping(node, deep=deep)

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Merge ``<<`` values as SafeLoader does, after checking the merged mappings too."""
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for sub in merged:
                    if isinstance(sub, yaml.MappingNode):
                        self._refuse_repeated_keys(sub)
        super().flatten_mapping(node)

    def _refuse_repeated_keys(self, node: Any) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {show(key)} given twice", key_node.start_mark
                )


def parse_yaml(text: str, source: str = "<memory>") -> Any:
    """Parse YAML text safely (no key twice); bad YAML raises ScenarioError with its line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        if exc.context and exc.problem:
            problem = f"{exc.problem} ({exc.context})"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise _fail(source, f"invalid YAML{where}: {problem}") from None
    except yaml.reader.ReaderError as exc:
        raise _fail(source, f"invalid YAML: {exc.reason} (character {exc.position + 1})") from None
    except yaml.YAMLError as exc:  # pragma: no cover - every YAMLError safe_load raises is above
        raise _fail(source, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise _fail(source, "invalid YAML: nested too deeply") from None
    except Exception as exc:  # e.g. ValueError for an integer too long to convert
        raise _fail(source, f"invalid YAML: {type(exc).__name__}: {exc}") from None


# --- limits on the raw data -----------------------------------------------------------------


def check_tree(data: Any, source: str = "<memory>") -> None:
    """Check the raw data's shape before validation: a mapping, bounded depth, size and lists.

    Counts every value as if YAML aliases were expanded (so an alias bomb is refused, not walked
    for ever), refuses self-references, non-string keys, and lists or mappings over 10,000 items.
    """
    if data is None:
        raise _fail(source, "the file is empty: expected a mapping with name, horizon, arrivals...")
    if not isinstance(data, dict):
        raise _fail(
            source,
            f"the top level must be a mapping (name: ..., horizon: ...), got {_describe(data)}",
        )
    problems: list[Problem] = []
    budget = MAX_NODES
    on_path: set[int] = set()
    # Iterative depth-first walk; ("exit", id) markers pop a container off the current path.
    stack: list[tuple[Any, tuple[str | int, ...]] | tuple[None, int]] = [(data, ())]
    while stack and len(problems) < 20:
        node, where = stack.pop()
        if node is None and isinstance(where, int):
            on_path.discard(where)
            continue
        budget -= 1
        if budget < 0:
            problems.append(("", f"too large: more than {MAX_NODES} values (aliases expanded)"))
            break
        if not isinstance(node, (dict, list)):
            continue
        assert isinstance(where, tuple)
        path = _join(where)
        if id(node) in on_path:
            problems.append((path, "refers to itself (a recursive YAML alias)"))
            continue
        if len(where) >= MAX_DEPTH:
            problems.append((path, f"nested too deeply (more than {MAX_DEPTH} levels)"))
            continue
        if len(node) > MAX_ITEMS:
            problems.append((path, f"too many items: {len(node)} (at most {MAX_ITEMS})"))
            continue
        on_path.add(id(node))
        stack.append((None, id(node)))
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    problems.append(
                        (path, f"keys must be strings, got {show(key)} ({type(key).__name__})")
                    )
                    continue
                stack.append((value, (*where, key)))
        else:
            stack.extend((value, (*where, i)) for i, value in enumerate(node))
    if problems:
        raise ScenarioError(source, problems)


def _describe(value: Any) -> str:
    kind = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return f"{kind.get(type(value), type(value).__name__)} ({show(value)})"


# --- the schema, walked by key path ---------------------------------------------------------


def _alternatives(annotation: Any) -> list[Any]:
    """Flatten Annotated / Optional / Union into the concrete types a value may have."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _alternatives(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [t for arg in get_args(annotation) for t in _alternatives(arg)]
    if annotation is type(None):
        return []
    return [annotation]


def _model_keys(model: type[BaseModel]) -> dict[str, Any]:
    """Return the YAML keys of a model (aliases where given) and their annotations."""
    return {(info.alias or name): info.annotation for name, info in model.model_fields.items()}


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _step(candidates: list[Any], key: str | int, *, tags: bool) -> list[Any]:
    """Follow one key from the given types; ``tags`` consumes union tags of pydantic locations."""
    at_union = len(candidates) > 1
    out: list[Any] = []
    for tp in candidates:
        if _is_model(tp):
            if at_union and issubclass(tp, Distribution) and key == tp.kind:
                return [tp]  # a distribution's kind is also its YAML key
            if at_union and tags and key in FAULT_KINDS and FAULT_KINDS[key] is tp:
                return [tp]  # pydantic's tag for a fault entry
            annotation = _model_keys(tp).get(str(key))
            if annotation is not None:
                out.extend(_alternatives(annotation))
            continue
        origin, args = get_origin(tp), get_args(tp)
        if origin in (tuple, list) and isinstance(key, int) and args:
            out.extend(_alternatives(args[0]))
        elif origin is dict and isinstance(key, str) and len(args) == 2:
            out.extend(_alternatives(args[1]))
    return out


def _walk(path: tuple[str | int, ...], *, tags: bool) -> list[Any]:
    candidates: list[Any] = [Scenario]
    for key in path:
        candidates = _step(candidates, key, tags=tags)
    return candidates


def _allowed_keys(candidates: list[Any]) -> list[str]:
    if len(candidates) > 1 and all(
        _is_model(tp) and issubclass(tp, Distribution) for tp in candidates
    ):
        return [tp.kind for tp in candidates]  # a distribution: its kinds are its keys
    keys: list[str] = []
    for tp in candidates:
        if _is_model(tp):
            keys.extend(k for k in _model_keys(tp) if k not in keys)
    return keys


def _accepts_any_key(candidates: list[Any]) -> bool:
    return any(get_origin(tp) is dict for tp in candidates)


# --- overrides ------------------------------------------------------------------------------


def apply_overrides(
    data: Mapping[str, Any], overrides: Overrides = (), source: str = "<overrides>"
) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted-path overrides applied (before validation).

    ``"stations.app.servers=24"`` sets a key (creating missing mappings the schema knows);
    ``"payments.gateways.card-a.servers=4"`` picks a list entry by ``name`` (or ``code``) and
    ``"payments.gateways.0.servers=4"`` by index. Values are parsed with ``yaml.safe_load``, so
    ``true``, ``12``, ``20ms`` and ``{exponential: {mean: 5ms}}`` work. A mapping
    ``{path: value}`` sets values as given. Unknown paths raise ScenarioError naming them.
    """
    check_tree(data, source)
    result: dict[str, Any] = copy.deepcopy(dict(data))
    items: list[tuple[str, Any, str]] = []
    if isinstance(overrides, Mapping):
        items = [(str(path), value, f"{path}={value!r}") for path, value in overrides.items()]
    else:
        if isinstance(overrides, str):
            overrides = [overrides]
        for text in overrides:
            if not isinstance(text, str) or "=" not in text:
                raise _fail(source, f"override {show(text)} is not of the form key.path=value")
            path, _, value_text = text.partition("=")
            try:
                value = parse_yaml(value_text, source)
            except ScenarioError as exc:
                message = exc.problems[0][1]
                raise _fail(source, f"override {text!r}: {message}", path.strip()) from None
            items.append((path.strip(), value, text))
    for path, value, text in items:
        _set_path(result, path, value, text, source)
    return result


def _set_path(data: dict[str, Any], path: str, value: Any, text: str, source: str) -> None:
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise _fail(source, f"override {text!r}: the key path {path!r} has an empty part")
    node: Any = data
    done: list[str | int] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        here = _join(tuple(done)) or "the top level"
        if isinstance(node, dict):
            candidates = _walk(tuple(done), tags=False)
            if not _accepts_any_key(candidates) and not _step(candidates, part, tags=False):
                allowed = _allowed_keys(candidates)
                message = (
                    f"unknown key (allowed: {', '.join(allowed)})"
                    if allowed
                    else f"{here} takes a value, not keys"
                )
                raise _fail(source, f"override {text!r}: {message}", _join((*done, part)))
            done.append(part)
            if last:
                node[part] = value
            else:
                if not isinstance(node.get(part), (dict, list)):
                    if any(get_origin(t) in (tuple, list) for t in _walk(tuple(done), tags=False)):
                        raise _fail(
                            source,
                            f"override {text!r}: {_join(tuple(done))} is not in the scenario, "
                            f"so it has no entry {parts[i + 1]!r}",
                            _join(tuple(done)),
                        )
                    node[part] = {}
                node = node[part]
        elif isinstance(node, list):
            index = _list_index(node, part)
            if index is None:
                raise _fail(
                    source,
                    f"override {text!r}: no entry {part!r} in {here} ({_entries(node)})",
                    _join((*done, part)),
                )
            done.append(index)
            if last:
                node[index] = value
            else:
                node = node[index]
        else:  # pragma: no cover - intermediate values are always made containers above
            raise _fail(source, f"override {text!r}: {here} is not a mapping or list")


def _list_index(node: list[Any], part: str) -> int | None:
    if part.isdigit():
        index = int(part)
        return index if index < len(node) else None
    for i, item in enumerate(node):
        if isinstance(item, dict) and part in (item.get("name"), item.get("code")):
            return i
    return None


def _entries(node: list[Any]) -> str:
    names = [
        str(item.get("name", item.get("code")))
        for item in node
        if isinstance(item, dict) and ("name" in item or "code" in item)
    ]
    text = f"{len(node)} entries"
    if names:
        text += f": {', '.join(names[:12])}" + (", ..." if len(names) > 12 else "")
    return text


# --- validation -----------------------------------------------------------------------------


def parse_scenario(data: Any, source: str = "<memory>") -> Scenario:
    """Validate raw scenario data (a mapping, as from ``yaml.safe_load``) into a Scenario."""
    check_tree(data, source)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, translate_errors(exc)) from None
    except RecursionError:  # pragma: no cover - check_tree bounds the depth first
        raise _fail(source, "nested too deeply") from None
    except Exception as exc:  # pragma: no cover - a bug; still report it as a scenario error
        raise _fail(
            source, f"internal error while validating: {type(exc).__name__}: {exc}"
        ) from None


def load_scenario(path: str | os.PathLike[str], overrides: Overrides = ()) -> Scenario:
    """Read, override and validate a scenario file; raise ScenarioError on any problem."""
    data = read_yaml_file(path)
    source = _source(path)
    if overrides:
        data = apply_overrides(data, overrides, source)
    return parse_scenario(data, source)


# --- pydantic errors, translated ------------------------------------------------------------

_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
}

_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


def _display(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the union tags pydantic inserts into fault locations (``faults.0.<tag>.at``)."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        is_tag = (
            i >= 2
            and i + 1 < len(loc)
            and loc[i - 2] == "faults"
            and isinstance(loc[i - 1], int)
            and part in FAULT_KINDS
            and len(out) == i
        )
        if not is_tag:
            out.append(part)
    return tuple(out)


def _join(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in loc)


def translate_errors(exc: ValidationError) -> list[Problem]:
    """Turn pydantic's errors into (key path, message) pairs in the project's words."""
    problems: list[Problem] = []
    errors = exc.errors(include_url=False)
    locs = [tuple(err["loc"]) for err in errors]
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in locs
        ):
            continue  # a list left short by its invalid items: those items are the problem
        ctx = err.get("ctx") or {}
        error = ctx.get("error")
        shown = _display(loc)
        prefix = ""
        if shown and shown[-1] == "[key]":
            shown, prefix = shown[:-1], "invalid key: "
        if err["type"] == "value_error" and isinstance(error, Invalid):
            for relative, message in error.problems:
                problems.append((_join(shown + relative), message))
            continue
        problems.append((_join(shown), prefix + _message(err, loc)))
    return problems


def _message(err: Any, loc: tuple[str | int, ...]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = show(err.get("input"))
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(_walk(loc[:-1], tags=True))
        return f"unknown key (allowed: {', '.join(allowed)})"
    if kind in _TYPE_WORDS:
        if isinstance(err.get("input"), float) and kind.startswith("int"):
            got = repr(err["input"])  # 4.0, not 4: the number is refused for being a float
        return f"expected {_TYPE_WORDS[kind]}, got {got}"
    if kind in _BOUNDS:
        symbol, key = _BOUNDS[kind]
        return f"must be {symbol} {format_number(ctx[key])}, got {got}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {got}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length')}"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items, got {ctx.get('actual_length')}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must have at most {ctx.get('max_length')} characters"
    if kind in ("value_error", "assertion_error") and ctx.get("error") is not None:
        return str(ctx["error"])
    return str(err.get("msg", kind))  # pragma: no cover - every type the schema raises is above
