"""Reading experiment configs: YAML file + `extends:` presets + dotted overrides, validated by pydantic.

Errors name the file, the dotted key and what was expected, e.g.
`configs/demo.yaml: ppo.kl_coef: Input should be a valid number (got 'abc')` or
`configs/demo.yaml: unknown key 'ppo.kl_cof' (expected one of: ...)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message says which and what was expected."""


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
        data = yaml.safe_load(path.read_text()) or {}
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
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
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


def validate(model: type[T], data: dict, source: str) -> T:
    """Validate `data` as `model`, turning pydantic's errors into one message naming each bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                allowed = _field_names(model, e["loc"][:-1])
                lines.append(f"{source}: unknown key '{key}' (expected one of: {', '.join(allowed)})")
            else:
                got = e.get("input")
                got_text = "" if isinstance(got, dict) else f" (got {got!r})"
                lines.append(f"{source}: {key}: {e['msg']}{got_text}")
        raise ConfigError("\n".join(lines)) from None


def load(model: type[T], path: str | Path, overrides: list[str] = ()) -> T:
    """Read, merge overrides, validate."""
    data = apply_overrides(read_yaml(path), list(overrides))
    return validate(model, data, str(path))


def dump(config: BaseModel) -> str:
    """YAML of a resolved config (secrets are never config fields: credentials come from the environment)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
