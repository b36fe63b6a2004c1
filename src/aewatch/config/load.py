"""Read the YAML configuration file into one ``Config`` and resolve its secrets (shell).

Every problem becomes one ``ConfigError`` listing all of them, each as::

    /etc/aewatch/config.yaml:14  broker.keepalive_s = 0
      Input should be greater than or equal to 1; MQTT keepalive interval. Unit: seconds.

The YAML node tree is walked to know the line of every key, so pydantic's error locations map
back to lines. Secrets are read here and only here, and never appear in a message: a password
key shows as ``<hidden>`` and any other value passes through ``redact`` (a URL's password).
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from aewatch.config.schema import Config, RuleError, SecretRef
from aewatch.errors import ConfigError
from aewatch.redaction import redact

__all__ = ["config_json_schema", "load_config", "render_reference"]

Loc = tuple[str | int, ...]

SECRET_KEYS = frozenset({"password", "state_key"})
HIDDEN = "<hidden>"
EXAMPLE = "config/aewatch.example.yaml"


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and resolve the configuration file ``path``.

    ``environ`` (default ``os.environ``) supplies ``{env: NAME}`` secrets and
    ``$CREDENTIALS_DIRECTORY``. Relative paths in the file are taken relative to its directory.

    Raises:
        ConfigError: the file cannot be read, is not valid YAML or breaks the schema, or a
            secret cannot be read; the message lists every problem found, with its line.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"cannot read config {file}: {err}; check the path and permissions"
        ) from err
    data, lines = _parse_yaml(text, file)
    try:
        config = Config.model_validate(data, context={"base_dir": file.parent})
    except ValidationError as err:
        errors = _without_knock_on(err.errors())
        problems = sorted((_describe(e, data, lines) for e in errors), key=lambda p: p[0])
        raise ConfigError("\n".join(_format(file, *p) for p in problems)) from None
    return _resolve_secrets(config, file, lines, os.environ if environ is None else environ)


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the configuration file (keys as written in YAML)."""
    return Config.model_json_schema(by_alias=True)


def render_reference() -> str:
    """The Markdown reference of every configuration key, generated from the schema."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from src/aewatch/config/schema.py; do not edit. Regenerate with:",
        "     python -c \"from aewatch.config import render_reference as r; print(r(), end='')\""
        " > docs/configuration.md -->",
        "",
        f"A commented example is in `{EXAMPLE}`. Check a file with `aewatch check-config FILE`",
        "(exit 0 valid, 2 invalid); every error names the file, line, key, value and the fix.",
        "Unknown keys are errors. Relative paths are relative to the config file.",
        "",
    ]
    _render_section(out, "", Config)
    return "\n".join(out).rstrip("\n") + "\n"


def _parse_yaml(text: str, file: Path) -> tuple[Any, dict[Loc, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{file}: the file is empty; start from {EXAMPLE}")
        lines: dict[Loc, int] = {(): node.start_mark.line + 1}
        duplicates: list[tuple[int, Loc]] = []
        _walk(node, (), lines, duplicates)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{file}:{mark.line + 1}" if mark else str(file)
        raise ConfigError(f"{where}  not valid YAML\n  {err.problem}; fix the syntax") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{file}: not valid YAML ({err}); fix the syntax") from None
    finally:
        loader.dispose()
    if duplicates:
        raise ConfigError(
            "\n".join(
                _format(
                    file, line, loc, None, "key given twice; the later one would win, so remove one"
                )
                for line, loc in duplicates
            )
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1  the top level must be a mapping of sections; see {EXAMPLE}")
    return data, lines


def _walk(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], duplicates: list[tuple[int, Loc]]
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if not isinstance(key, str) or key == "<<":
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                duplicates.append((line, (*loc, key)))
            seen.add(key)
            lines[(*loc, key)] = line
            _walk(value_node, (*loc, key), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _walk(item, (*loc, i), lines, duplicates)


def _without_knock_on(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop "too short" errors of lists whose own items failed (they are only a consequence)."""
    failed = {e["loc"][:n] for e in errors for n in range(len(e["loc"]))}
    return [e for e in errors if not (e["type"] == "too_short" and e["loc"] in failed)]


def _describe(err: ErrorDetails, data: Any, lines: dict[Loc, int]) -> tuple[int, Loc, Any, str]:
    """``(line, key path, value or None, what is wrong and the fix)`` for one pydantic error."""
    loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, RuleError):
        loc = (*loc, *cause.key)
    line = next(lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines)
    if err["type"] == "extra_forbidden":
        return line, loc, None, _unknown_key(loc)
    field = _field_at(loc)
    hint = f"; {field.description}" if field is not None and field.description else ""
    if err["type"] == "missing":
        return line, loc, None, f"missing; add it{hint}"
    if err["type"] == "too_short":
        need = err.get("ctx", {}).get("min_length", 1)
        return line, loc, _value_at(data, loc), f"needs at least {need} entry{hint}"
    if isinstance(cause, ValueError):
        return line, loc, _value_at(data, loc), str(cause)
    return line, loc, _value_at(data, loc), f"{err['msg']}{hint}"


def _format(file: Path, line: int, loc: Loc, value: Any, message: str) -> str:
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    shown = f" = {_show(loc, value)}" if value is not None else ""
    return f"{file}:{line}  {key or '(top level)'}{shown}\n  {message}"


def _show(loc: Loc, value: Any) -> str:
    if SECRET_KEYS & {p for p in loc if isinstance(p, str)} and not isinstance(value, dict):
        return HIDDEN
    # Redact before cutting: a cut inside a URL's user-info would hide it from redact().
    text = redact(json.dumps(value, default=str, ensure_ascii=False))
    return text if len(text) <= 80 else text[:77] + "..."


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _unknown_key(loc: Loc) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return "unknown key; remove it"
    allowed = sorted(_fields_by_key(model))
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; the keys here are: {', '.join(allowed)}"


def _fields_by_key(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _field_at(loc: Loc) -> FieldInfo | None:
    keys = [p for p in loc if isinstance(p, str)]
    model = _model_at(tuple(keys[:-1])) if keys else None
    return _fields_by_key(model).get(keys[-1]) if model is not None else None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = _fields_by_key(model).get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _resolve_secrets(
    config: Config, file: Path, lines: dict[Loc, int], environ: Mapping[str, str]
) -> Config:
    password = _resolved(
        config.broker.password, ("broker", "password"), file=file, lines=lines, environ=environ
    )
    state_key = _resolved(
        config.outputs.state_key, ("outputs", "state_key"), file=file, lines=lines, environ=environ
    )
    return config.model_copy(
        update={
            "broker": config.broker.model_copy(update={"password": password}),
            "outputs": config.outputs.model_copy(update={"state_key": state_key}),
        }
    )


def _resolved(
    ref: SecretRef | None,
    loc: Loc,
    *,
    file: Path,
    lines: dict[Loc, int],
    environ: Mapping[str, str],
) -> SecretRef | None:
    """``ref`` holding its secret, read now (None stays None)."""
    if ref is None:
        return None
    try:
        secret = _read_secret(ref, environ)
    except ConfigError as err:
        shown = ref.model_dump(exclude_none=True, mode="json")
        raise ConfigError(_format(file, lines.get(loc, 1), loc, shown, str(err))) from None
    return ref.with_value(secret)


def _read_secret(ref: SecretRef, environ: Mapping[str, str]) -> SecretStr:
    if ref.env is not None:
        value = environ.get(ref.env)
        if value is None:
            raise ConfigError(
                f"environment variable {ref.env} is not set; export it (Environment= or "
                "EnvironmentFile= in a systemd unit), or use {file: PATH}"
            )
    elif ref.file is not None:
        value = _read_secret_file(ref.file, "secret file", "create it (mode 0600) or fix the path")
    else:
        directory = environ.get("CREDENTIALS_DIRECTORY")
        if directory is None:
            raise ConfigError(
                f"systemd credential {ref.credential} needs $CREDENTIALS_DIRECTORY, which "
                f"is not set; add LoadCredential={ref.credential}:PATH to the unit, or use "
                "{file: PATH} outside systemd"
            )
        value = _read_secret_file(
            Path(directory) / str(ref.credential),
            f"systemd credential {ref.credential}:",
            f"add LoadCredential={ref.credential}:PATH to the unit",
        )
    if not value:
        raise ConfigError(f"{ref.source} is empty; put the secret in it")
    return SecretStr(value)


def _read_secret_file(path: Path, what: str, fix: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what} cannot read {path} ({type(err).__name__}); {fix}") from None
    return text.removesuffix("\n").removesuffix("\r")


def _render_section(out: list[str], prefix: str, model: type[BaseModel]) -> None:
    if prefix:
        out += [f"## `{prefix}`", ""]
    doc = (inspect.getdoc(model) or "").replace("``", "`")
    out += [doc, "", "| key | type | default | description |", "|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for key, field in _fields_by_key(model).items():
        out.append(
            f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | "
            f"{_cell(field.description or '')} |"
        )
        sub = _model_in(field.annotation)
        if sub is not None:
            many = "tuple" in str(field.annotation) or "list" in str(field.annotation)
            nested.append((f"{prefix}.{key}".lstrip(".") + ("[]" if many else ""), sub))
    out.append("")
    for sub_prefix, sub in nested:
        _render_section(out, sub_prefix, sub)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        names = {str: "text", int: "integer", float: "number", bool: "boolean", Path: "path"}
        return names.get(annotation, "section" if issubclass(annotation, BaseModel) else "?")
    args = [a for a in get_args(annotation) if a is not type(None) and a is not Ellipsis]
    if "Literal" in str(annotation):
        return " \\| ".join(f"`{a}`" for a in args)
    if "tuple" in str(annotation) or "list" in str(annotation):
        return f"list of {_type_name(args[0])}"
    if str(annotation).startswith("dict"):
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    shown = " or ".join(_type_name(a) for a in args if isinstance(a, type) or get_args(a))
    return f"{shown} or null" if type(None) in get_args(annotation) else shown


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return "(section defaults)"
    return f"`{json.dumps(field.default)}`"
