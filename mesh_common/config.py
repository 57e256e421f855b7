"""The mesh configuration file: one TOML file, one table per component, each declared by its owner.

The loader knows nothing of the tables' contents. A component declares its table next to its
own code, as a `Section` over a frozen dataclass whose fields are the keys (type, default and
help come from the field itself), and registers the table's name as an entry point of the
group `metrics_mesh.config` in `pyproject.toml`, so every program knows every table name
without importing other components:

    @dataclass(frozen=True, slots=True)
    class AlertSettings:
        state_dir: str = setting("", "where rules created at run time are kept")

    SECTION = Section("alerts", AlertSettings, "alert rules and their delivery")

    settings = load_mesh_file("mesh.toml").read(SECTION)   # strict; env overrides applied

Keys are strict: an unknown key, a wrong type or a value the dataclass refuses is a
`ConfigError` naming the file, the table and the key. `METRICS_MESH_<TABLE>_<KEY>` environment
variables override the file (a `tuple[str, ...]` key is comma-separated there), and so do
seed 003's own names for a few keys (`mesh_common.seed_environment`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from mesh_common.errors import ConfigError
from mesh_common.seed_environment import with_seed_names

ENTRY_POINT_GROUP = "metrics_mesh.config"
"""The entry-point group naming every table a mesh file may hold (value: its declaration)."""
ENV_ROOT = "METRICS_MESH_"
"""Every environment override starts with this, then the table name, then the key."""
BUILT_IN = "built-in defaults"
"""What a mesh file read from no path is called in messages."""

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def setting(default: Any, help: str) -> Any:
    """A dataclass field that is a configuration key: its default and its one-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a table, as `--help` and `metrics-mesh config check` describe it."""

    name: str
    type_name: str
    default: object
    env_var: str
    help: str


class SectionSpec(Protocol[T_co]):
    """What the loader needs of a table's declaration: its name and how to read it."""

    @property
    def table(self) -> str:
        """The table's name in the file (`aggregator` for `[aggregator]`)."""
        ...

    def parse(self, value: object, environ: Mapping[str, str], **derived: Any) -> T_co:
        """The settings from the table's parsed value (None when absent); ConfigError if bad.

        `derived` are values the caller computes (not keys of the file).
        """
        ...

    def keys(self) -> tuple[Key, ...]:
        """The table's keys, for help texts."""
        ...


class _Converter(Protocol):
    @property
    def name(self) -> str: ...

    def from_toml(self, label: str, value: object) -> Any: ...

    def from_env(self, label: str, text: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class _Scalar:
    name: str
    kind: type
    parse_text: Callable[[str], Any]

    def from_toml(self, label: str, value: object) -> Any:
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if type(value) is not self.kind:
            raise ConfigError(f"{label}: must be {self.name}, got {value!r}")
        return value

    def from_env(self, label: str, text: str) -> Any:
        try:
            return self.parse_text(text.strip())
        except ValueError:
            raise ConfigError(f"{label}: {text!r} is not {self.name}") from None


def _bool_text(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


@dataclass(frozen=True, slots=True)
class _Strings:
    name: str = "a list of strings"

    def from_toml(self, label: str, value: object) -> Any:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{label}: must be a list of strings, got {value!r}")
        return tuple(value)

    def from_env(self, label: str, text: str) -> Any:
        return tuple(part.strip() for part in text.split(",") if part.strip())


_CONVERTERS: dict[Any, _Converter] = {
    str: _Scalar("a string", str, str),
    int: _Scalar("an integer", int, int),
    float: _Scalar("a number", float, float),
    bool: _Scalar("true or false", bool, _bool_text),
    tuple[str, ...]: _Strings(),
}


class Section(Generic[T]):
    """A `[table]` of the mesh file, read into the frozen dataclass `settings_type`.

    Every init field of the dataclass is a key (a field made with `setting()` carries its
    help); `derived` names fields the caller sets itself, which the file may not hold.
    The dataclass's own `__post_init__` checks values and raises ConfigError naming the key.
    """

    def __init__(
        self,
        table: str,
        settings_type: type[T],
        summary: str,
        *,
        derived: tuple[str, ...] = (),
    ) -> None:
        self.table = table
        self.settings_type = settings_type
        self.summary = summary
        self.env_prefix = f"{ENV_ROOT}{table.upper()}_"
        hints = typing.get_type_hints(settings_type)
        self._converters: dict[str, _Converter] = {}
        self._keys: list[Key] = []
        for field in dataclasses.fields(settings_type):  # type: ignore[arg-type]
            if not field.init or field.name in derived:
                continue
            converter = _CONVERTERS.get(hints[field.name])
            if converter is None:
                raise TypeError(f"{settings_type.__name__}.{field.name}: unsupported key type")
            self._converters[field.name] = converter
            self._keys.append(
                Key(
                    name=field.name,
                    type_name=converter.name,
                    default=field.default,
                    env_var=f"{self.env_prefix}{field.name.upper()}",
                    help=str(field.metadata.get("help", "")),
                )
            )

    def keys(self) -> tuple[Key, ...]:
        """The table's keys in declaration order."""
        return tuple(self._keys)

    def values(self, value: object, environ: Mapping[str, str]) -> dict[str, Any]:
        """The keys set by the table and the environment, converted to their types."""
        where = f"[{self.table}]"
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        allowed = ", ".join(sorted(self._converters))
        values: dict[str, Any] = {}
        for key, item in value.items():
            converter = self._converters.get(key)
            if converter is None:
                raise ConfigError(
                    f"{where} unknown key {key!r}; allowed: {allowed}", location=(self.table, key)
                )
            try:
                values[key] = converter.from_toml(f"{where} {key}", item)
            except ConfigError as error:
                raise ConfigError(str(error), location=(self.table, key)) from error
        for variable, text in environ.items():
            if not variable.startswith(self.env_prefix):
                continue
            key = variable[len(self.env_prefix) :].lower()
            converter = self._converters.get(key)
            if converter is None:
                raise ConfigError(
                    f"environment {variable}: unknown {where} key {key!r}; allowed: {allowed}"
                )
            values[key] = converter.from_env(f"environment {variable}", text)
        return values

    def parse(self, value: object, environ: Mapping[str, str], **derived: Any) -> T:
        """The settings of the table's value (None: defaults) with environment overrides."""
        values = self.values(value, environ)
        try:
            return self.settings_type(**values, **derived)
        except ConfigError as error:
            raise ConfigError(f"[{self.table}] {error}") from error

    def help_text(self) -> str:
        """The keys and their environment variables, for a command's `--help`."""
        lines = [f"[{self.table}] keys ({self.env_prefix}<KEY> overrides):"]
        for key in self._keys:
            default = "" if key.default in ("", ()) else f" (default {key.default!s})"
            lines.append(f"  {key.name}: {key.help}{default}")
        return "\n".join(lines) + "\n"


def known_tables() -> tuple[str, ...]:
    """The names of every table a mesh file may hold, from the installed entry points."""
    names = sorted({entry.name for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)})
    if not names:
        raise ConfigError(
            f"no configuration tables are registered (entry-point group {ENTRY_POINT_GROUP}); "
            "is metrics-mesh installed? Run `pip install -e .` in the checkout"
        )
    return tuple(names)


@dataclass(frozen=True, slots=True)
class MeshFile:
    """A parsed mesh file: its tables, not yet interpreted; `read()` interprets one."""

    source: str
    """The file's path, or "built-in defaults" when none was given."""
    tables: Mapping[str, Any]
    environ: Mapping[str, str]
    """The environment whose METRICS_MESH_* variables override the file."""

    def read(self, section: SectionSpec[T], **derived: Any) -> T:
        """The settings of one table; ConfigError naming the file, table and key.

        `derived` are the values of the declaration's derived fields, which the caller computes.
        """
        try:
            return section.parse(self.tables.get(section.table), self.environ, **derived)
        except ConfigError as error:
            raise ConfigError(f"{self.source}: {error}", location=error.location) from error


def load_mesh_file(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> MeshFile:
    """Read and parse `path` (None: no file, every table at its defaults).

    Checks the TOML and the top-level table names (against `known_tables()`); each table's
    keys are checked when it is read. Raises ConfigError naming the file.
    """
    env = with_seed_names(os.environ if environ is None else environ)
    if path is None:
        return MeshFile(BUILT_IN, {}, env)
    source = str(path)
    try:
        tables = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{source}: cannot read the configuration file: {error}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from error
    known = known_tables()
    unknown = [name for name in tables if name not in known]
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level table {unknown[0]!r}; allowed: {', '.join(known)}"
        )
    return MeshFile(source, tables, env)
