"""`[auth] jwks_file`: JWTs verified by the key their `kid` names, and the set's rotation."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from mesh_common.auth import Identity, Verifier
from mesh_common.auth_settings import SECTION
from mesh_common.clocks import Clocks
from mesh_common.errors import ConfigError, TokenError
from tests.auth_fixtures import signed
from tests.clocks import FakeClock

NOW = 1_800_000_000.0
CLAIMS = {"sub": "ops", "scope": "write", "exp": NOW + 600}


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    """The public half of `key` as a JWK named `kid`."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        jwk["alg"] = "RS256"
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig"}


def write_set(path: Path, *jwks: dict[str, Any]) -> None:
    """Write the set atomically, as a provider's sidecar would."""
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps({"keys": list(jwks)}))
    staged.replace(path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def verifier_of(path: Path, clock: FakeClock) -> Verifier:
    settings = SECTION.parse({"jwks_file": str(path)}, {})
    return Verifier(settings, clocks=Clocks(monotonic=clock, wall=clock))


def test_each_token_is_verified_by_the_key_its_kid_names(
    tmp_path: Path, clock: FakeClock, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = tmp_path / "jwks.json"
    write_set(path, public_jwk(rsa_key, "r1"), public_jwk(ec_key, "e1"))
    verifier = verifier_of(path, clock)
    expected = Identity("ops", frozenset({"read", "write"}))
    rsa_token = jwt.encode(CLAIMS, rsa_key, algorithm="RS256", headers={"kid": "r1"})
    ec_token = jwt.encode(CLAIMS, ec_key, algorithm="ES256", headers={"kid": "e1"})
    assert verifier.identify(rsa_token) == expected
    assert verifier.identify(ec_token) == expected
    with pytest.raises(TokenError, match="kid is not a key"):
        verifier.identify(jwt.encode(CLAIMS, rsa_key, algorithm="RS256", headers={"kid": "r9"}))
    with pytest.raises(TokenError, match="kid is not a key"):  # two keys: a kid is needed
        verifier.identify(jwt.encode(CLAIMS, rsa_key, algorithm="RS256"))
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenError, match="signature"):  # another key under e1's kid
        verifier.identify(jwt.encode(CLAIMS, stranger, algorithm="ES256", headers={"kid": "e1"}))
    with pytest.raises(TokenError, match="alg value is not allowed"):  # RS256 under an EC kid
        verifier.identify(jwt.encode(CLAIMS, rsa_key, algorithm="RS256", headers={"kid": "e1"}))
    with pytest.raises(TokenError):  # a set is public: never an HMAC secret
        verifier.identify(signed(CLAIMS))


def test_a_set_of_one_key_verifies_tokens_without_a_kid(
    tmp_path: Path, clock: FakeClock, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = tmp_path / "jwks.json"
    write_set(path, public_jwk(ec_key, "only"))
    token = jwt.encode(CLAIMS, ec_key, algorithm="ES256")
    assert verifier_of(path, clock).identify(token).name == "ops"


def test_a_rotated_set_is_used_within_a_second_and_a_broken_one_keeps_the_last(
    tmp_path: Path,
    clock: FakeClock,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "jwks.json"
    write_set(path, public_jwk(rsa_key, "old"))
    verifier = verifier_of(path, clock)
    new_token = jwt.encode(CLAIMS, ec_key, algorithm="ES256", headers={"kid": "new"})
    write_set(path, public_jwk(rsa_key, "old"), public_jwk(ec_key, "new"))
    clock.tick(1.0)
    assert verifier.identify(new_token).name == "ops"

    path.write_text("{not json")
    clock.tick(1.0)
    old_token = jwt.encode(CLAIMS, rsa_key, algorithm="RS256", headers={"kid": "old"})
    with caplog.at_level(logging.WARNING, logger="mesh_common.auth"):
        assert verifier.identify(old_token).name == "ops"
        clock.tick(1.0)
        path.write_text("{still not json")
        other = jwt.encode({**CLAIMS, "sub": "b"}, rsa_key, "RS256", headers={"kid": "old"})
        assert verifier.identify(other).name == "b"
    warnings = [r.getMessage() for r in caplog.records if "keeping the last good" in r.getMessage()]
    assert len(warnings) == 1, warnings  # said once, not per token
    assert str(path) in warnings[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("[]", "is not a JWK set"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}', "no RS256 or ES256 key"),
    ],
)
def test_a_bad_set_at_start_is_a_config_error_naming_the_key(
    tmp_path: Path, clock: FakeClock, content: str | None, message: str
) -> None:
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=f"jwks_file: .*{message}"):
        verifier_of(path, clock)
