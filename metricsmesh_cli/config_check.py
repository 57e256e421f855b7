"""`metrics-mesh config check [FILE]`: validate every table of a mesh file, show what is used.

Every table the loader knows (the `metrics_mesh.config` entry points: `[aggregator]`,
`[alerts]` and its rules, `[demo]`, `[gateway]`, `[[services]]`, and whatever is declared
later) is read exactly as the programs read it. With no error, the effective settings are
listed per component, each key marked with where its value comes from (the built-in default,
the file, or a `METRICS_MESH_*` environment variable), then the registry's services and the
alert rules, and where the gateway and the CLI will dial the aggregator (with a note when
that is not where `[aggregator]` listens). Errors go to stderr, each naming the file, the
table, the key and the problem, and the command exits with status 2. Errors of a plain table
are collected key by key (every unknown key and wrong type at once); `[[services]]` and
`[alerts]` stop at their first. A table whose declaration `reads_registry` (`[alerts]`: its
rules' `services` and `types`) is read with the file's registry, as the aggregator reads it,
so a rule selecting a service name or type the registry does not have is an error too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TextIO

from mesh_common.addresses import HostPort
from mesh_common.config import (
    BUILT_IN,
    ENTRY_POINT_GROUP,
    ENV_ROOT,
    Key,
    MeshFile,
    Section,
    SectionSpec,
    load_mesh_file,
)
from mesh_common.errors import EXIT_OK, EXIT_USAGE, ConfigError
from mesh_common.options import CONFIG_ENV
from mesh_common.redact import redact
from mesh_common.registry import Registry

COMPONENTS: dict[str, str] = {
    "aggregator": "aggregator (metrics-mesh aggregator, python -m aggregator)",
    "gateway": "gateway (metrics-mesh gateway, python -m gateway)",
    "demo_fleet": "demo (metrics-mesh demo)",
    "mesh_common": "every component",
}
"""How each package that declares tables is named in the listing (others: the package name)."""
LEGEND = (
    "each key: its value, then where it comes from: default (built in), file, or "
    f"env {ENV_ROOT}<TABLE>_<KEY>"
)
"""The line under the source line that explains the marks."""
SECRET_SUFFIXES = ("token", "password", "secret")
"""Keys whose value is never printed, only whether it is set."""


@dataclass(frozen=True, slots=True)
class DeclaredTable:
    """A table a mesh file may hold: its name, the package that declares it, its declaration."""

    name: str
    owner: str
    spec: SectionSpec[Any]


@dataclass(frozen=True, slots=True)
class CheckedTable:
    """One table read from the file: the settings the programs will use, or what is wrong."""

    table: DeclaredTable
    settings: Any
    """The parsed settings (None when there are errors)."""
    errors: tuple[str, ...]


def declared_tables() -> tuple[DeclaredTable, ...]:
    """Every table of the `metrics_mesh.config` entry points, in name order."""
    entries = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    return tuple(
        DeclaredTable(entry.name, entry.module.split(".")[0], entry.load()) for entry in entries
    )


def _key_errors(mesh: MeshFile, section: Section[Any]) -> list[str]:
    """Each key of the file's table and each environment override checked on its own."""
    errors: list[str] = []
    raw = mesh.tables.get(section.table)
    items = list(raw.items()) if isinstance(raw, Mapping) else []
    probes: list[tuple[Mapping[str, Any], Mapping[str, str]]] = [({k: v}, {}) for k, v in items]
    probes += [
        ({}, {variable: text})
        for variable, text in mesh.environ.items()
        if variable.startswith(section.env_prefix)
    ]
    for table, environ in probes:
        try:
            section.values(table, environ)
        except ConfigError as error:
            errors.append(f"{mesh.source}: {error}")
    return errors


def reads_registry(table: DeclaredTable) -> bool:
    """Whether the table's declaration checks its values against the registry (`registry=`)."""
    return bool(getattr(table.spec, "reads_registry", False))


def check_table(
    mesh: MeshFile, table: DeclaredTable, registry: Registry | None = None
) -> CheckedTable:
    """Read one table as the programs do; every key error of a plain table, else the first.

    `registry` (the file's `[[services]]`) is given to a table that `reads_registry`; None
    when the registry itself has an error (the table is then read without it).
    """
    if isinstance(table.spec, Section):
        errors = _key_errors(mesh, table.spec)
        if errors:
            return CheckedTable(table, None, tuple(errors))
    derived = {"registry": registry} if registry is not None and reads_registry(table) else {}
    try:
        return CheckedTable(table, mesh.read(table.spec, **derived), ())
    except ConfigError as error:
        return CheckedTable(table, None, (str(error),))


def check_tables(mesh: MeshFile, tables: Iterable[DeclaredTable]) -> list[CheckedTable]:
    """Every table read as the programs read it, in the order given.

    The tables that do not read the registry come first; the registry they yield (the
    `[[services]]` table's settings) is then given to those that do.
    """
    ordered = list(tables)
    checked = {t.name: check_table(mesh, t) for t in ordered if not reads_registry(t)}
    registry = next(
        (c.settings for c in checked.values() if isinstance(c.settings, Registry)), None
    )
    for table in ordered:
        if reads_registry(table):
            checked[table.name] = check_table(mesh, table, registry)
    return [checked[table.name] for table in ordered]


def stray_variables(environ: Mapping[str, str], tables: Iterable[str]) -> list[str]:
    """`METRICS_MESH_*` variables that name no table (a typo the programs silently ignore)."""
    prefixes = tuple(f"{ENV_ROOT}{name.upper()}_" for name in tables)
    return sorted(
        variable
        for variable in environ
        if variable.startswith(ENV_ROOT)
        and variable != CONFIG_ENV
        and not variable.startswith(prefixes)
    )


# --- the listing ----------------------------------------------------------------------------


def format_value(key: str, value: object) -> str:
    """A value as TOML writes it; a secret only says whether it is set, a URL hides its password."""
    if key.endswith(SECRET_SUFFIXES) and isinstance(value, str):
        return f"(set, {len(value)} characters)" if value else '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(redact(value))  # a URL's password, e.g. [history] url
    if isinstance(value, tuple | list):
        return "[" + ", ".join(format_value("", item) for item in value) + "]"
    return repr(value)


def origin(key: Key, table: object, environ: Mapping[str, str]) -> str:
    """Where a key's value comes from: `env VARIABLE`, `file` or `default`."""
    in_file = isinstance(table, Mapping) and key.name in table
    if key.env_var and key.env_var in environ:
        return f"env {key.env_var}" + (" (over the file's value)" if in_file else "")
    return "file" if in_file else "default"


def settings_lines(checked: CheckedTable, mesh: MeshFile) -> list[str]:
    """`key  value  origin` for every key of the table, then its services or rules."""
    settings = checked.settings
    if isinstance(settings, Registry):
        return services_lines(settings, checked.table.name in mesh.tables)
    raw = mesh.tables.get(checked.table.name)
    keys = checked.table.spec.keys()
    width = max((len(key.name) for key in keys), default=0)
    values = [format_value(key.name, getattr(settings, key.name)) for key in keys]
    value_width = min(max((len(value) for value in values), default=0), 24)
    lines = [
        f"    {key.name:<{width}}  {value:<{value_width}}  {origin(key, raw, mesh.environ)}"
        for key, value in zip(keys, values, strict=True)
    ]
    rules = getattr(settings, "rules", None)
    if isinstance(rules, tuple):
        lines += rules_lines(rules, checked.table.name)
    return lines


def services_lines(registry: Registry, from_file: bool) -> list[str]:
    """The registry's services, one line each, and where the registry comes from."""
    where = "from the file" if from_file else "the built-in registry (no [[services]] in the file)"
    lines = [f"    {len(registry)} services, {where}:"]
    width = max((len(entry.name) for entry in registry), default=0)
    for entry in registry:
        source = f" ({entry.data_source})" if entry.data_source else ""
        lines.append(
            f"    {entry.name:<{width}}  {entry.type + source:<22}  port {entry.port:<5}  "
            f"agent {entry.target}"
        )
    return lines


def rules_lines(rules: tuple[Any, ...], table: str) -> list[str]:
    """The configured alert rules, one line each: condition, timing, severity, selection."""
    if not rules:
        return [f"    no [[{table}.rules]]: no configured rule"]
    lines = [f"    {len(rules)} rule(s) from [[{table}.rules]]:"]
    for rule in rules:
        selection = [
            f"{label} {', '.join(sorted(values))}"
            for label, values in (
                ("services", rule.service_names),
                ("types", rule.service_types),
                ("kinds", rule.kinds),
            )
            if values
        ]
        clear = f" (clears at {rule.clear_threshold:g})" if rule.clear_threshold is not None else ""
        threshold = rule.threshold if isinstance(rule.threshold, str) else f"{rule.threshold:g}"
        lines.append(
            f"    {rule.name}: {rule.figure} {rule.comparator} {threshold}{clear} "
            f"for {rule.for_seconds:g}s, {rule.severity}"
            + (f"; {'; '.join(selection)}" if selection else "; every service")
        )
    return lines


def listing(checked: list[CheckedTable], mesh: MeshFile) -> list[str]:
    """The effective settings grouped by the component that declares each table."""
    owners = sorted({c.table.owner for c in checked}, key=lambda o: (o == "mesh_common", o))
    lines: list[str] = []
    for owner in owners:
        lines.append(f"{COMPONENTS.get(owner, owner)}:")
        for table in (c for c in checked if c.table.owner == owner):
            brackets = "[[{}]]" if isinstance(table.settings, Registry) else "[{}]"
            summary = getattr(table.table.spec, "summary", "")
            lines.append(f"  {brackets.format(table.table.name)}  {summary}")
            lines.extend(settings_lines(table, mesh))
        lines.append("")
    return lines


def connection_lines(checked: list[CheckedTable]) -> list[str]:
    """Where the aggregator listens, where the gateway and the CLI dial it, and any mismatch."""
    by_name = {table.table.name: table.settings for table in checked}
    aggregator, gateway = by_name.get("aggregator"), by_name.get("gateway")
    if aggregator is None or gateway is None:
        return []
    listens = HostPort(aggregator.host, aggregator.port)
    lines = ["connections:", f"  the aggregator listens on {listens}"]
    try:
        subscribes: HostPort | None = HostPort.parse(gateway.aggregator).dialable()
    except ConfigError:
        subscribes = None
    lines.append(f"  the gateway subscribes to {gateway.aggregator}")
    if listens.port == 0:
        lines += [
            "  note: [aggregator] port 0 picks a free port: give the gateway and",
            "        metrics-mesh snapshot / top / alerts its address (--aggregator)",
        ]
        return lines
    dialled = listens.dialable()
    lines.append(f"  metrics-mesh snapshot, top and alerts dial {dialled}")
    if subscribes is not None and subscribes != dialled:
        lines += [
            f"  note: the gateway's aggregator ({gateway.aggregator}) is not where",
            f"        [aggregator] listens ({dialled}); right only if it is another aggregator",
        ]
    return lines


# --- the command ----------------------------------------------------------------------------


def source_line(path: str | None, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The file to check (FILE, else $METRICS_MESH_CONFIG, else none) and how it was found."""
    if path:
        return path, f"checking {path}"
    named = environ.get(CONFIG_ENV)
    if named:
        return named, f"checking {named} (from ${CONFIG_ENV}, as every program would)"
    return None, (
        f"no FILE and ${CONFIG_ENV} is not set: every program runs on the {BUILT_IN} "
        f"(and {ENV_ROOT}* overrides), shown here"
    )


def run_config_check(
    path: str | None, out: TextIO, err: TextIO, environ: Mapping[str, str] | None = None
) -> int:
    """Check `path` (see `source_line`), print the listing or the errors; the exit status."""
    env = os.environ if environ is None else environ
    chosen, said = source_line(path, env)
    print(said, file=out)
    try:
        mesh = load_mesh_file(chosen, environ=env)
    except ConfigError as error:
        print(f"error: {error}", file=err)
        return EXIT_USAGE
    tables = declared_tables()
    checked = check_tables(mesh, tables)
    for variable in stray_variables(env, (table.name for table in tables)):
        print(f"warning: environment {variable} names no table; it is ignored", file=err)
    problems = [problem for table in checked for problem in table.errors]
    if problems:
        for problem in problems:
            print(f"error: {redact(problem)}", file=err)
        print(f"{len(problems)} error(s) in {mesh.source}", file=err)
        return EXIT_USAGE
    print(LEGEND + "\n", file=out)
    for line in [*listing(checked, mesh), *connection_lines(checked)]:
        print(line, file=out)
    print(f"{mesh.source}: OK ({len(checked)} tables)", file=out)
    return EXIT_OK
