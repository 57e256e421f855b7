"""A service's status in a round, and its words: one enum for every package.

DESIGN.md, Semantics: `active` (answered, health SERVING), `inactive` (unreachable, deadline
exceeded or NOT_SERVING) and `error` (answered with an error or nonsense figures). The words
are the REST shape's, the alert rules' (`status == "inactive"`) and the tables'; the wire
carries `metricsmesh.v1.ServiceStatus`, mapped here and nowhere else.
"""

from __future__ import annotations

import enum

from metricsmesh.v1 import snapshot_pb2


class ServiceStatus(enum.StrEnum):
    """The verdict on one service in one round; its value is the word JSON and rules use."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    ERROR = "error"


STATUS_WORDS: tuple[str, ...] = tuple(status.value for status in ServiceStatus)
"""Every status word, in the enum's order."""

_TO_WIRE = {
    ServiceStatus.ACTIVE: snapshot_pb2.SERVICE_STATUS_ACTIVE,
    ServiceStatus.INACTIVE: snapshot_pb2.SERVICE_STATUS_INACTIVE,
    ServiceStatus.ERROR: snapshot_pb2.SERVICE_STATUS_ERROR,
}
_FROM_WIRE: dict[int, ServiceStatus] = {wire: status for status, wire in _TO_WIRE.items()}


def to_wire(status: ServiceStatus) -> snapshot_pb2.ServiceStatus.ValueType:
    """The wire enum value of `status`."""
    return _TO_WIRE[status]


def from_wire(value: int) -> ServiceStatus:
    """The status of a wire value; anything but active or inactive (unset, unknown) is error."""
    return _FROM_WIRE.get(value, ServiceStatus.ERROR)
