import time
import uuid
from pathlib import Path

import jwt
import pytest

from services.core.auth import InvalidToken, Principal, TokenSigner, TokenVerifier, generate_keypair


def _pair(folder: Path, ttl_s: int = 60) -> tuple[TokenSigner, TokenVerifier]:
    generate_keypair(folder)
    signer = TokenSigner.from_file(folder / "signing.pem", issuer="hoithi", audience="hoithi", ttl_s=ttl_s)
    return signer, TokenVerifier.from_dir(folder / "public", issuer="hoithi", audience="hoithi")


def test_token_carries_the_principal(tmp_path: Path) -> None:
    signer, verifier = _pair(tmp_path)
    who = Principal(uuid.uuid4(), "participant", "Trần Thị Hà", uuid.uuid4(), "cong_dan")
    assert verifier.verify(signer.issue(who)) == who
    assert jwt.get_unverified_header(signer.issue(who))["kid"] == signer.kid


def test_expired_token_is_refused(tmp_path: Path) -> None:
    signer, verifier = _pair(tmp_path, ttl_s=10)
    token = signer.issue(Principal(uuid.uuid4(), "organiser"), now=time.time() - 60)
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_token_from_another_key_is_refused(tmp_path: Path) -> None:
    signer, _ = _pair(tmp_path / "a")
    _, other_verifier = _pair(tmp_path / "b")
    with pytest.raises(InvalidToken):
        other_verifier.verify(signer.issue(Principal(uuid.uuid4(), "organiser")))


def test_tampered_token_is_refused(tmp_path: Path) -> None:
    signer, verifier = _pair(tmp_path)
    header, _payload, signature = signer.issue(Principal(uuid.uuid4(), "participant")).split(".")
    forged = jwt.utils.base64url_encode(b'{"sub":"x","role":"organiser"}').decode()
    with pytest.raises(InvalidToken):
        verifier.verify(f"{header}.{forged}.{signature}")
    with pytest.raises(InvalidToken):
        verifier.verify("not-a-token")


def test_rotation_keeps_old_tokens_valid_while_their_key_is_published(tmp_path: Path) -> None:
    old_signer, _ = _pair(tmp_path)
    old_token = old_signer.issue(Principal(uuid.uuid4(), "participant"))
    generate_keypair(tmp_path, rotate=True)
    new_signer = TokenSigner.from_file(tmp_path / "signing.pem", issuer="hoithi", audience="hoithi", ttl_s=60)
    verifier = TokenVerifier.from_dir(tmp_path / "public", issuer="hoithi", audience="hoithi")
    assert new_signer.kid != old_signer.kid
    assert verifier.verify(old_token).role == "participant"
    assert verifier.verify(new_signer.issue(Principal(uuid.uuid4(), "organiser"))).role == "organiser"


def test_keygen_keeps_an_existing_key(tmp_path: Path) -> None:
    first = generate_keypair(tmp_path).read_bytes()
    assert generate_keypair(tmp_path).read_bytes() == first
    assert (tmp_path / "signing.pem").stat().st_mode & 0o077 == 0


def test_a_cached_token_still_expires(tmp_path: Path) -> None:
    signer, verifier = _pair(tmp_path, ttl_s=60)
    issued = time.time()
    token = signer.issue(Principal(uuid.uuid4(), "participant"), now=issued)
    assert verifier.verify(token, now=issued + 1).role == "participant"
    assert verifier.verify(token, now=issued + 2).role == "participant"  # from the cache
    with pytest.raises(InvalidToken):
        verifier.verify(token, now=issued + 61)


def test_the_cache_stays_bounded(tmp_path: Path) -> None:
    signer, verifier = _pair(tmp_path)
    verifier.CACHE_SIZE = 3
    tokens = [signer.issue(Principal(uuid.uuid4(), "participant")) for _ in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._verified) == 3
    assert verifier.verify(tokens[0]).role == "participant"  # evicted, verified again
