"""The `[auth]` table and the Verifier: tokens to identities, scopes, expiry, logins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mesh_common.auth import Identity, ScopeError, TokenError, Verifier, bearer_token
from mesh_common.auth_settings import SECTION, AuthSettings
from mesh_common.clocks import Clocks
from mesh_common.errors import ConfigError
from mesh_common.passwords import check_password
from tests.auth_fixtures import PASSWORD, READ_TOKEN, SECRET, WRITE_TOKEN, auth_settings, signed
from tests.clocks import FakeClock

NOW = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def verifier(clock: FakeClock) -> Verifier:
    return Verifier(auth_settings(), clocks=Clocks(monotonic=clock, wall=clock))


def test_no_auth_table_means_authentication_off() -> None:
    assert not SECTION.parse(None, {}).enabled
    assert not AuthSettings().enabled
    assert auth_settings().enabled


def test_static_tokens_carry_their_scopes_and_admin_implies_the_rest(verifier: Verifier) -> None:
    reader = verifier.identify(READ_TOKEN)
    assert reader == Identity("reader", frozenset({"read"}))
    with pytest.raises(ScopeError, match="'reader' lacks the 'write' scope"):
        reader.require("write")
    assert verifier.identify(WRITE_TOKEN).scopes == {"read", "write"}
    admin = signed({"sub": "root", "scope": "admin", "exp": NOW + 60})
    assert verifier.identify(admin).scopes == {"read", "write", "admin"}


def test_an_unknown_static_token_is_refused(verifier: Verifier) -> None:
    with pytest.raises(TokenError, match="not one of"):
        verifier.identify("guess")


def test_a_jwt_expires_by_the_injected_clock(verifier: Verifier, clock: FakeClock) -> None:
    token = signed({"sub": "ci", "scope": "read", "exp": NOW + 10})
    assert verifier.identify(token).name == "ci"
    clock.tick(10)
    with pytest.raises(TokenError, match="expired"):
        verifier.identify(token)


def test_a_jwt_with_a_wrong_signature_or_no_expiry_is_refused(verifier: Verifier) -> None:
    forged = signed({"sub": "x", "scope": "admin", "exp": NOW + 60}, secret="x" * 40)
    with pytest.raises(TokenError, match="signature"):
        verifier.identify(forged)
    with pytest.raises(TokenError, match="exp"):
        verifier.identify(signed({"sub": "x", "scope": "read"}))
    with pytest.raises(TokenError):
        verifier.identify("not.a.jwt")


def test_login_issues_a_token_the_verifier_accepts(verifier: Verifier) -> None:
    identity = verifier.login("user", PASSWORD)
    token, ttl = verifier.issue(identity)
    assert ttl == 3600.0
    assert verifier.identify(token) == Identity("user", frozenset({"read", "write"}))
    with pytest.raises(TokenError, match="wrong password"):
        verifier.login("user", "wrong")
    with pytest.raises(TokenError, match="wrong password"):
        verifier.login("nobody", PASSWORD)


def test_bearer_header_is_parsed_strictly() -> None:
    assert bearer_token("Bearer abc") == "abc"
    for bad in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(TokenError):
            bearer_token(bad)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"jwt_secret": "short"}, "jwt_secret: must be at least 32"),
        ({"api_tokens": [{"name": "a", "sha256": "abc"}]}, "sha256: must be 64"),
        ({"users": [{"username": "u", "password_hash": "md5$x"}]}, "password_hash: a pass"),
        ({"api_tokens": [{"name": "a", "sha256": "0" * 64, "scopes": ["root"]}]}, "scopes"),
        ({"token_ttl_seconds": 0.0}, "token_ttl_seconds"),
    ],
)
def test_a_bad_auth_table_names_the_key(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        auth_settings(**changes)


def test_hash_password_command_prints_a_hash_that_checks() -> None:
    cli = Path(sys.executable).with_name("metrics-mesh")
    result = subprocess.run(
        [str(cli), "auth", "hash-password"], input="s3cret\n", capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    digest = result.stdout.strip()
    assert digest.startswith("scrypt$16384$8$1$")
    assert "s3cret" not in digest
    assert check_password("s3cret", digest)
    assert not check_password("other", digest)


def test_secret_is_never_in_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        auth_settings(jwt_secret=SECRET[:20])
    assert SECRET[:20] not in str(caught.value)
