"""The union of the registry's sources: the first source wins a service, conflicts are told."""

from __future__ import annotations

from aggregator._fleet.merge import changes, merge_sources
from aggregator._fleet.source import SourceKind, SourceStatus
from mesh_common.registry import Registry, ServiceEntry

FILE = SourceStatus(SourceKind.SERVICES, "mesh.toml")
FILE_SD = SourceStatus(SourceKind.FILE_SD, "sd/*.json")


def entry(name: str, agent_port: int, type_: str = "core") -> ServiceEntry:
    return ServiceEntry(name, "127.0.0.1", 8000, agent_port, type_)


def test_a_service_in_two_sources_is_the_first_sources_and_the_conflict_is_told() -> None:
    merged = merge_sources(
        [
            (FILE, [entry("api", 18001), entry("db", 18002)]),
            (FILE_SD, [entry("api", 19001, "data"), entry("cache", 19002)]),
        ]
    )
    assert merged.registry.names == ("api", "db", "cache")
    assert merged.registry.by_name("api").type == "core"
    assert merged.owners["cache"] is FILE_SD and merged.owners["api"] is FILE
    assert merged.conflicts == (
        "service 'api' of file_sd sd/*.json is also in services mesh.toml: the services "
        "entry is kept",
    )


def test_an_agent_address_already_called_for_another_service_leaves_the_later_out() -> None:
    merged = merge_sources([(FILE, [entry("api", 18001)]), (FILE_SD, [entry("web", 18001)])])
    assert merged.registry.names == ("api",)
    assert merged.conflicts == (
        "service 'web' of file_sd sd/*.json: agent address 127.0.0.1:18001 is already called "
        "for 'api' (of services mesh.toml); 'web' is left out",
    )


def test_changes_name_what_was_added_removed_and_changed() -> None:
    old = Registry([entry("a", 1), entry("b", 2), entry("c", 3)])
    new = Registry([entry("a", 1), entry("c", 30), entry("d", 4)])
    change = changes(old, new)
    assert (change.added, change.removed, change.changed) == (("d",), ("b",), ("c",))
    assert change.summary() == "1 added (d), 1 removed (b), 1 changed (c); 3 services"
    assert not changes(new, new)
