"""Recovery codes: ten single-use codes per account, shown once, kept only as keyed digests.

Ten codes of 10 characters from a 31-letter alphabet without look-alikes (0/o, 1/l/i): 49 bits
each, typed as xxxxx-xxxxx; case, spaces and hyphens do not matter. Stored as HMAC-SHA256 under the
MFA key (sealing.digest), bound to the account, so the database alone cannot confirm a guess.
A code is spent by one conditional UPDATE (still unused), so two nodes given the same code at
once accept it once. A new set replaces the whole old one.
"""
from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone

from loginsvc.mfa import sealing
from loginsvc.mfa.models import RecoveryCode

COUNT, LENGTH = 10, 10
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0, 1, i, l, o


def _digest(user_id: int, code: str) -> str:
    return sealing.digest(code, f"recovery:{user_id}")


def new_code() -> str:
    """One code of this form (also an email change's undo code: selfservice/emails.py), unformatted."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def new_set(user: object) -> list[str]:
    """Ten new codes for `user`, formatted for display; every earlier code stops working."""
    codes = [new_code() for _ in range(COUNT)]
    user_id = user.pk  # type: ignore[attr-defined]
    with transaction.atomic():
        RecoveryCode.objects.filter(user_id=user_id).delete()
        RecoveryCode.objects.bulk_create(RecoveryCode(user_id=user_id, digest=_digest(user_id, code)) for code in codes)
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def normalise(text: object) -> str | None:
    """The code typed without case, spaces or hyphens, or None unless it can be a recovery code."""
    if not isinstance(text, str):
        return None
    code = text.lower().replace("-", "").replace(" ", "")
    return code if len(code) == LENGTH and all(c in ALPHABET for c in code) else None


def use(user: object, code: str) -> bool:
    """Spend one of `user`'s unused codes (normalised); whether it was one."""
    user_id = user.pk  # type: ignore[attr-defined]
    return bool(RecoveryCode.objects.filter(user_id=user_id, digest=_digest(user_id, code), used_at=None)
                .update(used_at=timezone.now()))


def remaining(user: object) -> int:
    return RecoveryCode.objects.filter(user_id=getattr(user, "pk", None), used_at=None).count()


def remove_all(user: object) -> None:
    RecoveryCode.objects.filter(user_id=getattr(user, "pk", None)).delete()
