"""The start-up warning of a server bound past loopback: it names what is left open."""

from __future__ import annotations

import logging

import pytest

from agent import AgentServer, EventTracker
from mesh_common.auth_settings import AuthSettings
from mesh_common.exposure import exposure_warning
from mesh_common.tls import TlsSettings
from metricsmesh_cli.certs import write_certificates
from tests.auth_fixtures import auth_settings


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsSettings:
    files = write_certificates(tmp_path_factory.mktemp("certs"), ["127.0.0.1"])
    return TlsSettings(
        ca_file=str(files.ca),
        cert_file=str(files.server),
        key_file=str(files.server_key),
        client_auth=True,
    )


def test_loopback_is_never_warned_about() -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        assert exposure_warning("the gateway", host, auth=AuthSettings(), tls=None) is None
        assert exposure_warning("the agent", host, auth=None, tls=None) is None


def test_past_loopback_the_warning_names_each_open_part(tls: TlsSettings) -> None:
    both = exposure_warning("the gateway", "0.0.0.0", auth=AuthSettings(), tls=None)
    assert both is not None
    assert "0.0.0.0 without [auth]" in both and "without [tls]: tokens" in both
    no_tls = exposure_warning("the gateway", "0.0.0.0", auth=auth_settings(), tls=None)
    assert no_tls is not None and "[auth]" not in no_tls and "without [tls]" in no_tls
    no_auth = exposure_warning("the aggregator", "10.0.0.5", auth=AuthSettings(), tls=tls)
    assert no_auth is not None and "without [tls]" not in no_auth and "[auth]" in no_auth
    assert exposure_warning("the gateway", "0.0.0.0", auth=auth_settings(), tls=tls) is None


def test_an_agent_past_loopback_wants_mutual_tls(tls: TlsSettings) -> None:
    server_only = TlsSettings(
        ca_file=tls.ca_file, cert_file=tls.cert_file, key_file=tls.key_file, client_auth=False
    )
    warning = exposure_warning("the agent", "0.0.0.0", auth=None, tls=server_only)
    assert warning is not None and "without [tls] client_auth" in warning
    assert exposure_warning("the agent", "0.0.0.0", auth=None, tls=tls) is None


async def test_a_started_agent_logs_the_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agent")
    async with AgentServer(EventTracker("exposed"), host="0.0.0.0", grace_seconds=0):
        pass
    lines = [record.getMessage() for record in caplog.records if record.name == "agent"]
    assert len(lines) == 1 and "the agent listens on 0.0.0.0" in lines[0], lines
