"""Which services a client wants: the one filter model of every surface (gRPC, REST, SSE, WS).

A `ServiceFilter` keeps the services whose name is among `names` and whose type is among
`types`; an empty set keeps everything on its side. Names are checked against the registry
(an unknown name is an error naming it, a typo must not look like an empty fleet), and
`unknown_message` words that error the same way on every surface.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mesh_common.bounded import quote, quote_list


@dataclass(frozen=True, slots=True)
class ServiceFilter:
    """Service names and/or types to keep; the default keeps every service."""

    names: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    @classmethod
    def of(cls, names: Iterable[str] = (), types: Iterable[str] = ()) -> ServiceFilter:
        """A filter from any iterables of names and types."""
        return cls(frozenset(names), frozenset(types))

    @property
    def keeps_everything(self) -> bool:
        """True when the filter keeps every service."""
        return not self.names and not self.types

    def keeps(self, name: str, service_type: str) -> bool:
        """Whether a service with this name and type passes the filter."""
        return (not self.names or name in self.names) and (
            not self.types or service_type in self.types
        )

    def unknown_names(self, known: Iterable[str]) -> list[str]:
        """The filter's names that are not in `known`, sorted."""
        return sorted(self.names - set(known))

    def key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """A sorted, hashable form (for caches keyed on what a view shows)."""
        return tuple(sorted(self.names)), tuple(sorted(self.types))


def unknown_message(
    noun: str, unknown: Sequence[str], known: Iterable[str], where: str = ""
) -> str:
    """The one wording of names the registry lacks, on every surface (bounded echoes).

    E.g. `unknown service name 'weathr-api' in filter.service_names; known: admin-api, ...`;
    plural for several. `noun` is `service name` or `service type`; `where` names the field,
    when there is one.
    """
    plural = "s" if len(unknown) > 1 else ""
    place = f" in {where}" if where else ""
    names = quote_list(quote(name) for name in unknown)
    return f"unknown {noun}{plural} {names}{place}; known: {quote_list(sorted(set(known)), 600)}"
