"""One registration: `Registration`, and `registration()`, the check of its fields.

Names follow the registry's rules (`mesh_common.registry`: a service name not only spaces, a
type of one word) within fixed bounds, printable; the address is HOST:PORT as everywhere
(`mesh_common.addresses`). A refusal is RegistrationInvalid naming the RegisterRequest field.
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregator._errors import RegistrationInvalid
from mesh_common.addresses import HostPort, is_port
from mesh_common.bounded import quote
from mesh_common.errors import AddressError
from mesh_common.registry import is_service_name, is_type_word

MAX_NAME_LENGTH = 128
"""The longest service name or data source a registration may carry, in characters."""
MAX_TYPE_LENGTH = 64
"""The longest service type, in characters."""
MAX_ADDRESS_LENGTH = 300
"""The longest advertised address, in characters."""
DEFAULT_TYPE = "registered"
"""The type of a service registered without one."""


@dataclass(frozen=True, slots=True)
class Registration:
    """One instance of a service, as its agent registered it (checked: `registration()`)."""

    service_name: str
    agent: HostPort
    """Where the aggregator calls the agent."""
    address: str
    """`agent` as text (`format_host_port`): the instance's address everywhere."""
    service_type: str
    data_source: str
    port: int
    """The service's own (HTTP) port, shown to users; 0 when the agent did not say (its
    entry then shows its first instance's agent port, as a file_sd target group does)."""


def registration(
    service_name: str, agent: str, *, service_type: str = "", data_source: str = "", port: int = 0
) -> Registration:
    """A checked Registration; RegistrationInvalid naming the field that is wrong.

    `agent` is the HOST:PORT the aggregator calls (checked as `advertised_address`). Names
    follow the registry's rules (a name not only spaces, a type of one word) within the
    bounds above; an empty type is DEFAULT_TYPE.
    """
    _check_text("service_name", service_name, MAX_NAME_LENGTH)
    if not is_service_name(service_name):
        raise RegistrationInvalid("service_name", "must not be empty or only spaces")
    service_type = service_type or DEFAULT_TYPE
    _check_text("service_type", service_type, MAX_TYPE_LENGTH)
    if not is_type_word(service_type):
        raise RegistrationInvalid("service_type", f"{quote(service_type)} is not one word")
    _check_text("data_source", data_source, MAX_NAME_LENGTH)
    if len(agent) > MAX_ADDRESS_LENGTH:
        raise RegistrationInvalid(
            "advertised_address", f"{len(agent)} characters, more than {MAX_ADDRESS_LENGTH}"
        )
    try:
        parsed = HostPort.parse(agent, what="advertised_address")
    except AddressError as error:
        raise RegistrationInvalid("advertised_address", str(error)) from None
    if not parsed.host.isprintable() or any(char.isspace() for char in parsed.host):
        raise RegistrationInvalid("advertised_address", f"{quote(agent)} is not a host name")
    if port and not is_port(port):
        raise RegistrationInvalid("port", f"{port} is not in 0..65535")
    return Registration(service_name, parsed, str(parsed), service_type, data_source, port)


def _check_text(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise RegistrationInvalid(field, f"{len(value)} characters, more than {limit}")
    if not value.isprintable():
        raise RegistrationInvalid(field, f"{quote(value)} holds characters that do not print")
