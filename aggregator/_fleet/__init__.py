"""The live fleet: the union of the registry's sources, merged into the registry the rounds call.

source.py         `FleetSource`: what every source is (its last good entries, its status,
                  `refresh(force=)`, `on_change`), and `StaticSource` (a registry given in code)
registry_file.py  the mesh file's `[[services]]`, watched (edits, renames, ConfigMap swaps)
file_sd.py        Prometheus file_sd files (`[discovery] file_sd`), watched
http_sd.py        a Prometheus http_sd URL (`[discovery] http_sd`), polled
registrations.py  the agents that registered themselves (`[discovery] accept_registrations`):
                  leases on the aggregator's clock, lapse, removal, the cap
registration.py   one registration and the checks of its fields
registration_state.py  `registrations.json` in the state directory (across a restart)
registration_service.py  RegistrationService: Register, Renew, Deregister
target_groups.py  Prometheus target groups read as services (file_sd's and http_sd's)
watch.py          the stamps that tell a changed file (a stat per path each check)
settings.py       the `[discovery]` table
merge.py          the union (the first source wins a service name) and what changed
fleet.py          `Fleet`: every interval, refresh the sources, merge, hand a changed
                  registry to the round loop (`RoundLoop.replace_registry`); `reload()` for
                  SIGHUP and ReloadRegistry; `wake()` for a source that changed by itself
service.py        GetFleet and ReloadRegistry
sources.py        the sources of a configuration, in priority order

**Adding a source** (`registrations.py` is the latest): implement `FleetSource` in a module
of its own and append it in `sources.py`, after the existing ones (its place is its
priority: `merge.py`); give its kind a `SourceKind` member and a `FleetSourceKind` value
(proto, additive) mapped in `service.py`. A source keeps its last good contribution and
reports failures in its status, never by raising; one whose contribution changes by itself
(a registration arrives, a lease lapses) calls its `on_change()` (the fleet's `wake()`)
after the change, so the merge runs at once rather than at the next interval, and does its
time-based work (expiring leases) in `refresh()`, which the fleet calls every interval. No
other source, the merge or the round loop changes. Nothing is imported here, so a module
can import one part without the rest.
"""
