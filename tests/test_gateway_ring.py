"""The gateway ring's entries: what a snapshot keeps once a newer one arrived."""

from __future__ import annotations

from metricsmesh.v1 import snapshot_pb2

from gateway._sse import frame
from gateway._views import SnapshotEntry
from mesh_common.views import WHOLE


def entry() -> SnapshotEntry:
    snapshot = snapshot_pb2.Snapshot(epoch=7, sequence=3, services_total=1)
    snapshot.services.add(service_name="weather-api", status=snapshot_pb2.SERVICE_STATUS_ACTIVE)
    return SnapshotEntry(snapshot, received_at=0.0)


def test_the_latest_entry_shares_one_frame_per_view_between_clients() -> None:
    latest, builds = entry(), []

    def build() -> bytes:
        builds.append(1)
        return frame(latest, WHOLE, 0.0)

    first, second = latest.cached(WHOLE, build), latest.cached(WHOLE, build)
    assert first is second and len(builds) == 1


def test_a_compacted_entry_holds_no_frames_yet_serves_the_same_ones() -> None:
    older, builds = entry(), []

    def build() -> bytes:
        builds.append(1)
        return frame(older, WHOLE, 0.0)

    live = older.cached(WHOLE, build)
    older.compact()  # a newer snapshot arrived: only the serialized message stays
    assert older.compacted
    again, once_more = older.cached(WHOLE, build), older.cached(WHOLE, build)
    assert again == live == once_more and b"weather-api" in again
    assert len(builds) == 3  # built for each use, none kept by the ring
