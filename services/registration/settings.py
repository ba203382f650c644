"""Settings of the registration API and its commands (environment variables or `.env`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from services.core.settings import CoreSettings
from services.core.tables import MAX_TABLE_ROWS

SignUpVerification = Literal["none", "sms", "email"]


class RegistrationSettings(CoreSettings):
    # Ed25519 private key the access tokens are signed with; its public half goes to
    # every service's JWT_PUBLIC_KEYS_DIR (`python -m services.core.auth keygen var/keys`).
    jwt_private_key_file: Path = Path("var/keys/signing.pem")
    # Short-lived: other services trust a token until it expires, without asking us, so
    # this bounds how long a revoked session lingers. An attempt takes 15 minutes; the
    # web refreshes with its refresh token.
    access_token_ttl_s: int = Field(default=900, ge=60)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=300)

    # Argon2id cost. The defaults are OWASP's recommendation (m=19 MiB, t=2, p=1); tests
    # lower them. Stored hashes carry their own parameters, and a login with older ones
    # rehashes, so the cost can be raised at any time. See docs/benchmarks.md.
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_cost_kib: int = Field(default=19456, ge=1024)
    argon2_parallelism: int = Field(default=1, ge=1)

    # Login throttling (Redis). Counted per account AND client address (every login of an
    # account shares one counter; a login naming nobody has its own, so the answers never
    # tell whether an account exists): after `login_delay_after` failures from one address
    # each further attempt from there waits, doubling from `login_delay_base_s` up to
    # `login_delay_max_s`; after `login_lock_after` that address is locked out of the
    # account for `login_lock_s`. The owner elsewhere is not: a lock costs the attacker.
    # A success resets its address. Failures are forgotten `login_failure_window_s` after
    # the last attempt.
    login_delay_after: int = Field(default=5, ge=1)
    login_lock_after: int = Field(default=10, ge=2)
    login_delay_base_s: float = Field(default=1.0, gt=0)
    login_delay_max_s: float = Field(default=60.0, gt=0)
    login_lock_s: int = Field(default=900, ge=1)
    login_failure_window_s: int = Field(default=3600, ge=1)
    # Guessing from many addresses: after this many failures on one account from all
    # addresses within `login_failure_window_s` (a fixed window from the first), the account
    # is protected: its password is tried only from addresses it signed in (or reset its
    # password) from within `login_known_address_s`; elsewhere the owner proves who they are
    # with a one-time code (password reset). Well above what a handful of addresses can
    # reach by locking themselves (about 13 an hour each), see docs/decisions.md.
    login_protect_after: int = Field(default=100, ge=1)
    login_known_address_s: int = Field(default=30 * 24 * 3600, ge=60)
    # Per client address, across accounts. Much higher: a whole agency often signs in from
    # behind one address, and a success there does not reset it (one valid account must
    # not buy an attacker fresh guesses at others).
    login_ip_delay_after: int = Field(default=30, ge=1)
    login_ip_lock_after: int = Field(default=100, ge=2)

    # One-time codes (password reset, sign-up verification), delivered by notify.
    code_ttl_s: int = Field(default=600, ge=60)
    code_max_tries: int = Field(default=5, ge=1)
    # At most one code per recipient in this interval (SMS cost a real amount of money).
    code_resend_interval_s: int = Field(default=60, ge=0)
    # And at most this many codes requested from one client address per hour: enough for an
    # agency behind one address signing up its people with SMS codes at the deadline; only
    # Vietnamese mobile numbers get codes, which leaves SMS-pumping fraud no premium
    # international numbers to bill.
    code_requests_per_ip_per_hour: int = Field(default=100, ge=1)

    # Per client address (an IPv6 client by its /64, which one subscriber usually holds):
    # how many of each per `source_window_s` (a fixed window from the first). Sized for a
    # school lab or an agency behind one NAT address at the deadline, see docs/decisions.md.
    source_window_s: int = Field(default=600, ge=1)
    # Sign-ups, and sign-up codes (POST /api/auth/register and /register/code), counted
    # whatever their outcome.
    signup_per_source: int = Field(default=100, ge=1)
    # Sign-ups with a wrong entry password (ENTRY_PASSWORD); right ones do not count.
    entry_password_tries_per_source: int = Field(default=50, ge=1)
    # Password-reset requests, whether the login names anyone or not.
    reset_requests_per_source: int = Field(default=30, ge=1)
    # Wrong password-reset codes (on any account, existing or not).
    reset_code_tries_per_source: int = Field(default=30, ge=1)
    # Searches by a whole phone or ID number per staff member per hour. The list shows them
    # masked ('091****678' hides 4 digits), so 10,000 whole-number searches would rebuild
    # a phone number; at this pace that is 100 hours, every search in the audit log.
    number_searches_per_hour: int = Field(default=100, ge=1)

    # What this contest asks at sign-up. Registration does not own contests, so these are
    # the deployment's settings.
    require_id_number: bool = False
    # A shared password some contests hand out to their entrants; empty = none.
    entry_password: SecretStr | None = None
    # A one-time code by SMS or email before the account is created.
    signup_verification: SignUpVerification = "none"

    # Organisers' flags: this many accounts from one address or device within the window.
    flag_burst_accounts: int = Field(default=5, ge=2)
    flag_burst_window_s: int = Field(default=600, ge=1)

    # The organiser `seed-demo` creates for development; the API refuses to start in
    # production while it still has this password.
    dev_admin_login: str = "admin"
    dev_admin_password: str = "admin"

    units_import_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    # Rows of a units file; reading stops just past it (a city has a few thousand units).
    units_import_max_rows: int = Field(default=MAX_TABLE_ROWS, ge=1, le=1_000_000)
