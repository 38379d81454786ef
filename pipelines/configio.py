"""Reading experiment configs: YAML file + `extends:` presets + dotted overrides, validated by pydantic.

Errors name where the bad value came from (the file, or the command-line override that set it), the dotted
key and what was expected, e.g.
`configs/demo.yaml: ppo.kl_coef: Input should be a valid number (got 'abc')`,
`command line 'scrape.dumps.start_date=2024-13-01': scrape.dumps.start_date: Input should be a valid date ...` or
`configs/demo.yaml: unknown key 'ppo.kl_cof' (expected one of: ...)`.

Dates are read as text and parsed by pydantic: PyYAML's own timestamp parser raises a bare ValueError for
`2024-13-01`, which would surface as a traceback instead of a message naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message says which and what was expected."""


class _TextDatesLoader(yaml.SafeLoader):
    """SafeLoader without the implicit timestamp type: `2024-01-31` stays a string for pydantic to parse."""


_TextDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_yaml(text: str) -> Any:
    """YAML with dates left as text (see the module docstring)."""
    return yaml.load(text, Loader=_TextDatesLoader)  # noqa: S506 (a SafeLoader subclass)


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping, following `extends: other.yaml` (relative to the file) so presets set only what differs."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent:
        data = _deep_merge(read_yaml(path.parent / parent), data)
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` overrides; values are parsed as YAML (`0.1`, `true`, `[a, b]`, `null`)."""
    data = _deep_merge({}, data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected dotted.key=value")
        key, raw = item.split("=", 1)
        try:
            value = parse_yaml(raw)
        except yaml.YAMLError:
            value = raw  # not YAML: pydantic judges the text and names the key
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """Allowed keys at `loc` (for the 'unknown key' message)."""
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return []
    return sorted(model.model_fields)


def _override_keys(overrides: list[str]) -> dict[str, str]:
    """dotted key -> the override text that set it."""
    return {item.split("=", 1)[0].strip(): item for item in overrides if "=" in item}


def _origin(key: str, source: str, overrides: dict[str, str]) -> str:
    """Where the value at dotted `key` came from: the command-line override that set it (or a section above
    or below it), else the file."""
    for set_key, item in overrides.items():
        if key == set_key or key.startswith(set_key + ".") or set_key.startswith(key + "."):
            return f"command line '{item}'"
    return source


def validate(model: type[T], data: dict, source: str, overrides: list[str] = ()) -> T:
    """Validate `data` as `model`, turning pydantic's errors into one line per bad key, each naming where the
    value came from (`source`, or the override in `overrides` that set it)."""
    set_by = _override_keys(list(overrides))
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = [str(p) for p in e["loc"]]
            key = ".".join(loc)
            if key:
                origin = _origin(key, source, set_by)
            else:  # a check across sections: blame the overrides its message names, if any
                named = [item for set_key, item in set_by.items() if set_key in e["msg"]]
                origin = f"command line {' '.join(repr(i) for i in named)}" if named else source
            if e["type"] == "extra_forbidden":
                allowed = _field_names(model, e["loc"][:-1])
                lines.append(f"{origin}: unknown key '{key}' (expected one of: {', '.join(allowed)})")
            else:
                got = e.get("input")
                got_text = "" if isinstance(got, dict) else f" (got {got!r})"
                message = e["msg"].removeprefix("Value error, ")
                lines.append(f"{origin}: {key}: {message}{got_text}" if key else f"{origin}: {message}")
        raise ConfigError("\n".join(lines)) from None


def load(model: type[T], path: str | Path, overrides: list[str] = ()) -> T:
    """Read, merge overrides, validate."""
    data = apply_overrides(read_yaml(path), list(overrides))
    return validate(model, data, str(path), list(overrides))


def dump(config: BaseModel) -> str:
    """YAML of a resolved config (secrets are never config fields: credentials come from the environment)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
