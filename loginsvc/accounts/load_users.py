"""The load suites' footprint in the service: their accounts' reserved names, their product's client id, and why
none of it may exist in production.

The load suites (loadtests/) create many active accounts sharing one password and a first-party confidential
client. That is fine on a `make up` stack and never acceptable in production, so the commands that create them
refuse there (settings.PRODUCTION, LOGINSVC_MODE=production), and `manage.py remove_load_users` takes them away
wherever they are. Everything here is plain Python (no models) so that the Locust processes, which never set up
Django, name the accounts exactly as the commands do.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re

DOMAIN = "loadtest.example.test"       # under .test (RFC 6761 §6.2): never anyone's mail
CLIENT_ID = "loadtest"                 # the load suites' product (loadtests/prepare.py)
DEFAULT_PREFIX = "loadtest"
MAX_PREFIX_LENGTH = 40
# Exactly what email_of() makes, and nothing else: removal must never catch a person's account.
_ACCOUNT = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,39})-[0-9]{4}@" + re.escape(DOMAIN))


def email_of(index: int, prefix: str = DEFAULT_PREFIX) -> str:
    """The address of load-test account `index` (0 to 9999): PREFIX-0042@loadtest.example.test."""
    return f"{prefix}-{index:04d}@{DOMAIN}"


def totp_secret(password: str, email: str) -> str:
    """The authenticator-app secret of load-test account `email` (base32, 160 bits, RFC 4226 §4): the first
    20 bytes of HMAC-SHA256(key=LOADTEST_PASSWORD, msg=email).

    Derived rather than random so that every Locust process, on any machine, computes the codes from what it
    already has (the password, the address) and no file of secrets has to travel with the workers. A derived
    secret adds no factor, and that is acceptable only here: these are load-test accounts, refused in
    production, and whoever knows the password can sign in to them anyway; the point is to measure the
    second step, not to protect the accounts. A person's app always gets a random secret (mfa/totp.py)."""
    digest = hmac.new(password.encode("utf-8"), email.encode("utf-8"), hashlib.sha256).digest()
    return base64.b32encode(digest[:20]).decode("ascii")


def prefix_problem(prefix: str) -> str | None:
    """Why `prefix` cannot name load-test accounts (None: it can); stored addresses are lower-case."""
    if (not prefix.isascii() or not prefix.replace("-", "").isalnum() or len(prefix) > MAX_PREFIX_LENGTH
            or prefix != prefix.lower() or prefix.startswith("-")):
        return f"lower-case letters, digits and '-' only, at most {MAX_PREFIX_LENGTH} (got {prefix!r})"
    return None


def is_load_account(email: str) -> bool:
    """Whether `email` is one that ensure_load_users makes (any prefix): what remove_load_users may delete."""
    return _ACCOUNT.fullmatch(email) is not None


def refused_in_production(what: str) -> str:
    """The one line every load-test command prints when it refuses in production mode."""
    return (f"{what}: refused in production (LOGINSVC_MODE=production): load-test accounts and clients share "
            "one password or secret and must never exist there; run it against a `make up` stack")
