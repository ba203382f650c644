"""Access tokens: registration signs them with an Ed25519 private key; every other
service verifies them locally with the public keys in `JWT_PUBLIC_KEYS_DIR`
(`<kid>.pem` each), so no request calls back to registration.

Rotation: generate a new key (`python -m services.core.auth keygen DIR --rotate`), ship
its public half to every service, then point registration at the new private key.
Tokens signed with the old key stay valid until they expire, as long as its public
key stays in the folder.
"""

from __future__ import annotations

import argparse
import hashlib
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.core.gateway import generate_gateway_key

ALGORITHM = "EdDSA"
Role = Literal["participant", "organiser", "coordinator"]
ROLES: tuple[Role, ...] = ("participant", "organiser", "coordinator")


class InvalidToken(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the token says."""

    id: uuid.UUID
    role: Role
    name: str = ""
    unit_id: uuid.UUID | None = None
    group: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in ("organiser", "coordinator")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class TokenSigner:
    def __init__(self, private_key_pem: bytes, *, issuer: str, audience: str, ttl_s: int) -> None:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the signing key must be an Ed25519 private key")
        self._key = key
        self.kid = key_id(key.public_key())
        self.issuer, self.audience, self.ttl_s = issuer, audience, ttl_s

    @classmethod
    def from_file(cls, path: Path, *, issuer: str, audience: str, ttl_s: int) -> TokenSigner:
        return cls(path.read_bytes(), issuer=issuer, audience=audience, ttl_s=ttl_s)

    def issue(self, principal: Principal, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims: dict[str, object] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(principal.id),
            "iat": issued,
            "exp": issued + self.ttl_s,
            "role": principal.role,
            "name": principal.name,
        }
        if principal.unit_id is not None:
            claims["unit"] = str(principal.unit_id)
        if principal.group is not None:
            claims["group"] = principal.group
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})


class TokenVerifier:
    # A participant sends the same token with every autosave, poll and submit; an Ed25519
    # check costs ~150 µs, a dictionary hit well under 1 µs. Entries keep their expiry.
    CACHE_SIZE = 8192

    def __init__(self, public_keys: dict[str, Ed25519PublicKey], *, issuer: str, audience: str) -> None:
        if not public_keys:
            raise ValueError("no public keys to verify tokens with")
        self._keys = public_keys
        self.issuer, self.audience = issuer, audience
        self._verified: OrderedDict[str, tuple[Principal, int]] = OrderedDict()

    @classmethod
    def from_dir(cls, folder: Path, *, issuer: str, audience: str) -> TokenVerifier:
        keys: dict[str, Ed25519PublicKey] = {}
        for path in sorted(folder.glob("*.pem")):
            key = serialization.load_pem_public_key(path.read_bytes())
            if isinstance(key, Ed25519PublicKey):
                keys[key_id(key)] = key
        if not keys:
            raise ValueError(f"no Ed25519 public keys in {folder} (run: python -m services.core.auth keygen var/keys)")
        return cls(keys, issuer=issuer, audience=audience)

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        current = now if now is not None else time.time()
        if (hit := self._verified.get(token)) is not None:
            principal, expires = hit
            if current < expires:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal, expires = self._verify_signature(token, current)
        self._verified[token] = (principal, expires)
        if len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify_signature(self, token: str, now: float) -> tuple[Principal, int]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise InvalidToken("unknown signing key")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "iat", "sub", "role"], "verify_exp": False},
            )
            expires = int(claims["exp"])
            if now >= expires:
                raise InvalidToken("token expired")
            role = claims["role"]
            if role not in ROLES:
                raise InvalidToken("unknown role")
            principal = Principal(
                id=uuid.UUID(claims["sub"]),
                role=role,
                name=str(claims.get("name", "")),
                unit_id=uuid.UUID(claims["unit"]) if claims.get("unit") else None,
                group=claims.get("group"),
            )
            return principal, expires
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
            raise InvalidToken(str(exc)) from exc


def generate_keypair(folder: Path, *, rotate: bool = False) -> Path:
    """Write `signing.pem` (private, 0600) and `public/<kid>.pem` unless a key exists."""
    private_path = folder / "signing.pem"
    if private_path.exists() and not rotate:
        return private_path
    (folder / "public").mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    (folder / "public" / f"{key_id(key.public_key())}.pem").write_bytes(public_pem(key.public_key()))
    if private_path.exists():
        private_path.rename(folder / f"signing.{int(time.time())}.pem.old")
    private_path.touch(mode=0o600)
    private_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return private_path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.core.auth")
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser(
        "keygen", help="create the token signing key pair and the gateway key (each kept if present)"
    )
    keygen.add_argument("folder", type=Path)
    keygen.add_argument("--rotate", action="store_true", help="make a new key even if one exists")
    args = parser.parse_args()
    print(generate_keypair(args.folder, rotate=args.rotate))
    print(generate_gateway_key(args.folder))


if __name__ == "__main__":
    main()
