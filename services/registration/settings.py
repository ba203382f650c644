"""Settings of the registration API and its commands (environment variables or `.env`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.core.settings import CoreSettings


class RegistrationSettings(CoreSettings):
    # Ed25519 private key the access tokens are signed with; its public half goes to
    # every service's JWT_PUBLIC_KEYS_DIR (`python -m services.core.auth keygen var/keys`).
    jwt_private_key_file: Path = Path("var/keys/signing.pem")
    access_token_ttl_s: int = Field(default=3600, ge=60)

    # Argon2id cost. The defaults are OWASP's recommendation (m=19 MiB, t=2, p=1); tests
    # lower them. Stored hashes carry their own parameters, and a login with older ones
    # rehashes, so the cost can be raised at any time.
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_cost_kib: int = Field(default=19456, ge=1024)
    argon2_parallelism: int = Field(default=1, ge=1)

    # The organiser `seed-demo` creates for development; the API refuses to start in
    # production while it still has this password.
    dev_admin_login: str = "admin"
    dev_admin_password: str = "admin"

    units_import_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
