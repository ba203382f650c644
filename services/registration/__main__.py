"""Registration's commands:

    python -m services.registration migrate
    python -m services.registration seed-demo          (never in production)
    python -m services.registration create-staff --login L --full-name N --role organiser|coordinator
                                                 [--unit-code C] [--email E] [--phone P]
    python -m services.registration set-password --login L
    python -m services.registration prune            (expired refresh tokens and one-time codes; run daily)

Passwords come from the STAFF_PASSWORD environment variable, else a prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from services.core.db import create_database_if_missing, create_pool, migrate_service
from services.core.logs import configure_logging
from services.core.tables import read_table
from services.registration import domain, store
from services.registration.passwords import Passwords
from services.registration.settings import RegistrationSettings

SEED_UNITS = Path(__file__).resolve().parent / "seed" / "units.csv"
DEV_ADMIN_FULL_NAME = "Ban Tổ chức"
EXIT_REFUSED = 2


class CommandError(Exception):
    """A message for the operator; the command exits with status 1."""


async def migrate(settings: RegistrationSettings) -> list[str]:
    await create_database_if_missing(settings.database_url)
    return await migrate_service(settings.database_url, "registration")


async def seed_demo(settings: RegistrationSettings, units_file: Path = SEED_UNITS) -> store.UnitsImport:
    """The demo unit tree and the development organiser; running it again changes nothing."""
    if settings.is_production:
        raise CommandError("seed-demo is for development only")  # main() refuses earlier; this guards callers
    pool = await create_pool(settings.database_url, "registration", min_size=1, max_size=2)
    try:
        # The same path as POST /api/admin/units/import, so the tree reaches the other services.
        content = await asyncio.to_thread(units_file.read_bytes)
        table = read_table(content)
        outcome = await store.import_units_with_outbox(pool, table)
        if await store.staff_password_hash(pool, settings.dev_admin_login) is None:
            passwords = Passwords.from_settings(settings)
            try:
                await store.create_staff_with_outbox(pool, store.NewStaff(
                    login=settings.dev_admin_login,
                    full_name=DEV_ADMIN_FULL_NAME,
                    role="organiser",
                    unit_id=None,
                    email=None,
                    phone=None,
                    password_hash=await passwords.hash(settings.dev_admin_password),
                ))
            except store.StaffLoginTaken:
                pass  # another seed-demo running at the same moment made it
        return outcome
    finally:
        await pool.close()


async def create_staff(
    settings: RegistrationSettings,
    *,
    login: str,
    full_name: str,
    role: str,
    password: str,
    unit_code: str | None = None,
    email: str | None = None,
    phone: str | None = None,
) -> store.NewStaff:
    try:
        new_login = domain.normalise_staff_login(login)
        name = domain.normalise_full_name(full_name)
        domain.validate_password(password)
        new_email = domain.normalise_email(email) if email else None
        new_phone = domain.normalise_phone(phone) if phone else None
    except ValueError as invalid:
        raise CommandError(str(invalid)) from None
    if role not in ("organiser", "coordinator"):
        raise CommandError("role must be organiser or coordinator")
    if role == "coordinator" and not unit_code:
        raise CommandError("a coordinator belongs to a unit: give --unit-code")
    pool = await create_pool(settings.database_url, "registration", min_size=1, max_size=2)
    try:
        unit_id = None
        if unit_code:
            unit = await store.unit_by_code(pool, unit_code)
            if unit is None:
                raise CommandError(f"no unit with code {unit_code!r}")
            unit_id = unit.id
        new = store.NewStaff(
            login=new_login,
            full_name=name,
            role="organiser" if role == "organiser" else "coordinator",
            unit_id=unit_id,
            email=new_email,
            phone=new_phone,
            password_hash=await Passwords.from_settings(settings).hash(password),
        )
        try:
            await store.create_staff_with_outbox(pool, new)
        except store.StaffLoginTaken:
            raise CommandError(f"a staff account with login {new_login!r} already exists") from None
        return new
    finally:
        await pool.close()


async def set_password(settings: RegistrationSettings, *, login: str, password: str) -> None:
    try:
        domain.validate_password(password)
    except ValueError as invalid:
        raise CommandError(str(invalid)) from None
    pool = await create_pool(settings.database_url, "registration", min_size=1, max_size=2)
    try:
        password_hash = await Passwords.from_settings(settings).hash(password)
        if not await store.set_staff_password_hash(pool, login.strip().lower(), password_hash):
            raise CommandError(f"no staff account with login {login!r}")
    finally:
        await pool.close()


async def prune(settings: RegistrationSettings) -> tuple[int, int]:
    pool = await create_pool(settings.database_url, "registration", min_size=1, max_size=2)
    try:
        return await store.prune_expired(pool)
    finally:
        await pool.close()


def _password_from_env_or_prompt() -> str:
    if password := os.environ.get("STAFF_PASSWORD"):
        return password
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat: ") != first:
        raise CommandError("the passwords differ")
    return first


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.registration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create or update the registration schema")
    commands.add_parser("seed-demo", help="demo units and the organiser admin/admin (development only)")
    staff = commands.add_parser("create-staff", help="add an organiser or coordinator account")
    staff.add_argument("--login", required=True)
    staff.add_argument("--full-name", required=True)
    staff.add_argument("--role", required=True, choices=("organiser", "coordinator"))
    staff.add_argument("--unit-code")
    staff.add_argument("--email")
    staff.add_argument("--phone")
    password = commands.add_parser("set-password", help="change a staff account's password")
    password.add_argument("--login", required=True)
    commands.add_parser("prune", help="delete refresh tokens and one-time codes expired over a week ago")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = RegistrationSettings()
    configure_logging("registration", settings.log_level)
    try:
        if args.command == "migrate":
            applied = asyncio.run(migrate(settings))
            print(f"registration: {len(applied)} migration(s) applied", file=sys.stderr)
        elif args.command == "seed-demo":
            if settings.is_production:
                print("seed-demo refused: APP_ENV is production (it creates the organiser admin/admin)",
                      file=sys.stderr)
                return EXIT_REFUSED
            outcome = asyncio.run(seed_demo(settings))
            print(
                f"demo units: {outcome.created} created, {outcome.updated} updated, {outcome.unchanged} unchanged;"
                f" organiser {settings.dev_admin_login!r} ready",
                file=sys.stderr,
            )
        elif args.command == "create-staff":
            new = asyncio.run(create_staff(
                settings,
                login=args.login,
                full_name=args.full_name,
                role=args.role,
                password=_password_from_env_or_prompt(),
                unit_code=args.unit_code,
                email=args.email,
                phone=args.phone,
            ))
            print(f"staff {new.login!r} ({new.role}) created", file=sys.stderr)
        elif args.command == "set-password":
            asyncio.run(set_password(settings, login=args.login, password=_password_from_env_or_prompt()))
            print(f"password of {args.login!r} changed", file=sys.stderr)
        elif args.command == "prune":
            tokens, codes = asyncio.run(prune(settings))
            print(f"pruned {tokens} refresh token(s) and {codes} one-time code(s)", file=sys.stderr)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
