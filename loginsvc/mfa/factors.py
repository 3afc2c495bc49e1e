"""Which second factors an account has, named as POST /api/login reports them, and how their codes look."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction

from loginsvc.accounts.models import User
from loginsvc.mfa import audit, mailed_code, recovery, totp
from loginsvc.mfa.models import Passkey, RecoveryCode, TOTPDevice

TOTP, RECOVERY, WEBAUTHN = "totp", "recovery", "webauthn"
# How each code method's code must look: its parser (None: it cannot be one), and the API's error then
# (a page says it as a sentence). A passkey answers with a credential instead (passkeys.py).
CODE_FORMS: dict[str, tuple[Callable[[object], str | None], str]] = {
    TOTP: (totp.parse_code, "code must be the six digits the authenticator app shows"),
    RECOVERY: (recovery.normalise, "code must be a recovery code: ten letters and digits"),
    mailed_code.EMAIL: (mailed_code.parse, "code must be the 8 digits we mailed"),
}


def user_with_factors(email: str | None = None, active_id: int | None = None) -> User | None:
    """The account with this (normalised) `email`, or the active one with id `active_id`, read
    together with its second factors, or None.

    One statement where a sign-in's step would otherwise make four through the ORM (the account, its
    app, whether a passkey exists, the recovery codes left). It is written out because composing it
    cost more than running it: 2.6 ms of Python against 0.25 ms, per step of every sign-in (docs/
    benchmarks.md). What it reads stays as it was: later changes in the same request are not seen
    by methods_of, has_factor and totp.confirmed_device, which use it."""
    quote = connection.ops.quote_name
    tables = {name: quote(model._meta.db_table) for name, model in
              (("user", User), ("app", TOTPDevice), ("passkey", Passkey), ("code", RecoveryCode))}
    where, value = ("u.email = %s", email) if active_id is None else ("u.id = %s AND u.is_active", active_id)
    sql = (f"SELECT u.*, d.id AS factor_app_id, d.sealed_secret AS factor_app_secret, "
           f"d.last_step AS factor_app_last_step, "
           f"EXISTS (SELECT 1 FROM {tables['passkey']} p WHERE p.user_id = u.id) AS factor_passkey, "
           f"(SELECT COUNT(*) FROM {tables['code']} r WHERE r.user_id = u.id AND r.used_at IS NULL) "
           f"AS factor_recovery_left "
           f"FROM {tables['user']} u LEFT JOIN {tables['app']} d ON d.user_id = u.id AND d.confirmed "
           f"WHERE {where}")
    user = next(iter(User.objects.raw(sql, [value])), None)
    if user is not None:
        user.factor_passkey = bool(user.factor_passkey)  # SQLite answers 0 or 1
        app = None if user.factor_app_id is None else TOTPDevice(
            id=user.factor_app_id, user_id=user.pk, sealed_secret=bytes(user.factor_app_secret),
            last_step=user.factor_app_last_step, confirmed=True)
        totp.remember_device(user, app)
    return user


def has_passkey(user: object) -> bool:
    loaded = getattr(user, "factor_passkey", None)  # read with the user (user_with_factors)
    return loaded if loaded is not None else Passkey.objects.filter(user_id=getattr(user, "pk", None)).exists()


def has_factor(user: object) -> bool:
    """Whether the account has a second factor of its own (an app or a passkey)."""
    return totp.confirmed_device(user) is not None or has_passkey(user)


def _recovery_left(user: object) -> int:
    loaded = getattr(user, "factor_recovery_left", None)  # read with the user (user_with_factors)
    return loaded if loaded is not None else recovery.remaining(user)


def methods_of(user: object) -> list[str]:
    """The account's ways to finish a sign-in, in the order POST /api/login lists them; empty: no
    second factor. Recovery codes stand in for a factor the user has lost, so alone they are not one."""
    app, keys = totp.confirmed_device(user) is not None, has_passkey(user)
    if not (app or keys):
        return []
    methods = [TOTP] if app else []
    if _recovery_left(user):
        methods.append(RECOVERY)
    return methods + [WEBAUTHN] if keys else methods


def forget_codes_if_alone(user: object) -> int:
    """After a factor was removed: recovery codes stood in for the account's factors, so when none is
    left they go too; how many unused ones went."""
    if has_factor(user):
        return 0
    unused = recovery.remaining(user)
    recovery.remove_all(user)
    return unused


def codes_for_new_factor(user: object, first: bool, ip: str) -> list[str] | None:
    """The recovery codes to show once, now that a factor was added: a new set when it is the
    account's first factor (`first`, known before it was added) or no code is left; else None, and
    the set the user already keeps stands."""
    if not first and recovery.remaining(user):
        return None
    codes = recovery.new_set(user)
    audit.changed(getattr(user, "pk", 0), ip, "recovery codes made")
    return codes


@dataclass(frozen=True)
class Removed:
    app: bool
    passkeys: int
    recovery_codes: int  # unused ones


def remove_all(user: object) -> Removed:
    """Take every second factor of the account: its app, its passkeys and its recovery codes."""
    with transaction.atomic():
        had_app = totp.remove(user)
        passkeys = Passkey.objects.filter(user_id=getattr(user, "pk", None)).delete()[0]
        unused = recovery.remaining(user)
        recovery.remove_all(user)
    return Removed(had_app, passkeys, unused)
