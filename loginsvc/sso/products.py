"""Products (OAuth clients) registered from a TOML or JSON file, idempotently: `manage.py sync_products`.

Why a file and not the admin: both clusters and every environment get the same registrations from
a reviewed file, re-running it changes nothing, and the client secret never passes through a form
or the file itself (only the name of an environment variable or a secret file does).

Everything is validated (and every secret read) before anything is written, so a bad file leaves
the registrations as they were; the writes then happen in one transaction. Two registrations are refused
outright: a public product marked first-party (it would get codes without consent on any loopback redirect
URI an app on the machine opens, RFC 8252 §8.6), and the load suites' `loadtest` product in production.
"""
from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.db import transaction
from oauth2_provider.models import get_application_model
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.validators import AllowedURIValidator

from loginsvc.accounts import load_users
from loginsvc.sso.hashers import MIN_SECRET_LENGTH
from loginsvc.sso.models import Product

CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEYS = frozenset({"client_id", "name", "type", "first_party", "redirect_uris", "post_logout_redirect_uris",
                  "backchannel_logout_uri", "require_mfa", "secret_env", "secret_file"})
SECRET_KEYS = frozenset({"client_secret", "secret"})
TYPES = ("confidential", "public")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SECRETS_ELSEWHERE = ("secrets never go in the product file; name an environment variable (secret_env) "
                     "or a file (secret_file) that holds it")
MAX_FILE_BYTES = 1024 * 1024
MAX_SECRET_FILE_BYTES = 4096
MAX_URI_LENGTH = 2048
MAX_SECRET_LENGTH = 1024


class ProductFileError(ValueError):
    """One problem with the product file, as one line naming the entry and the key (never a secret)."""


@dataclass(frozen=True)
class ProductSpec:
    """One validated entry of the product file, its secret already read (and kept out of repr)."""

    client_id: str
    name: str
    confidential: bool
    first_party: bool
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    backchannel_logout_uri: str
    secret: str = field(default="", repr=False)
    require_mfa: bool = False


@dataclass
class SyncResult:
    """What a sync did, per client id: created, updated (with the fields), unchanged; and the others."""

    lines: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


# --- reading and validating -----------------------------------------------------------------------------
def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _value in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ProductFileError(f"key {repeated[0]!r} appears twice in one object")
    return dict(pairs)


def _read_bounded(path: Path, limit: int, prefix: str, shown: str) -> bytes:
    """At most `limit` bytes of `path`; unreadable or larger is one ProductFileError (never its content)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise ProductFileError(f"{prefix}cannot read {shown} ({exc.strerror})") from None
    if len(raw) > limit:
        raise ProductFileError(f"{prefix}{shown} is larger than {limit} bytes")
    return raw


def parse_text(text: str, suffix: str) -> dict[str, Any]:
    """The document of a .toml or .json product file (its syntax errors as one line)."""
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ProductFileError(f"not valid TOML ({exc})") from None
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise ProductFileError(f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ProductFileError('not a product file: the top level must be an object {"product": [...]}')
    return document


def load_file(path: Path, environ: dict[str, str] | None = None) -> list[ProductSpec]:
    """Every product of the file at `path`, validated, with its secret; else ProductFileError naming the file."""
    environ = dict(os.environ) if environ is None else environ
    suffix = path.suffix.lower()
    try:
        if suffix not in {".toml", ".json"}:
            raise ProductFileError("the file name must end in .toml or .json (that decides how it is read)")
        raw = _read_bounded(path, MAX_FILE_BYTES, "", "the file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProductFileError("not UTF-8 text") from None
        return specs_of(parse_text(text, suffix), path.parent, environ)
    except ProductFileError as exc:
        raise ProductFileError(f"{path}: {exc}") from None


def specs_of(document: dict[str, Any], base: Path, environ: dict[str, str]) -> list[ProductSpec]:
    """The validated products of a parsed document; secret_file paths are relative to `base`."""
    secret_keys = sorted(SECRET_KEYS & set(document))
    if secret_keys:
        raise ProductFileError(f"{secret_keys[0]}: {SECRETS_ELSEWHERE}")
    unknown = sorted(set(document) - {"product"})
    if unknown:
        raise ProductFileError(f"unknown top-level key {unknown[0]!r} (only 'product' is allowed)")
    if "product" not in document:
        raise ProductFileError("no 'product' list ([[product]] tables in TOML, {\"product\": [...]} in JSON)")
    entries = document["product"]
    if not isinstance(entries, list):
        raise ProductFileError("'product' must be a list of tables")
    specs: list[ProductSpec] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        label = _label(index, entry)
        try:
            spec = spec_of(entry, base, environ)
        except ProductFileError as exc:
            raise ProductFileError(f"{label}: {exc}") from None
        if spec.client_id in seen:
            raise ProductFileError(f"{label}: client_id: also used by product #{seen[spec.client_id]}")
        seen[spec.client_id] = index
        specs.append(spec)
    return specs


def _label(index: int, entry: object) -> str:
    """How an error names an entry: its position, and its client id when that is one."""
    client_id = entry.get("client_id") if isinstance(entry, dict) else None
    if isinstance(client_id, str) and CLIENT_ID.fullmatch(client_id):
        return f"product #{index} ({client_id})"
    return f"product #{index}"


def spec_of(entry: object, base: Path, environ: dict[str, str]) -> ProductSpec:
    """One entry checked key by key; the first problem raises ProductFileError("key: problem")."""
    if not isinstance(entry, dict):
        raise ProductFileError("must be a table of keys")
    secret_keys = sorted(SECRET_KEYS & set(entry))
    if secret_keys:
        raise ProductFileError(f"{secret_keys[0]}: {SECRETS_ELSEWHERE}")
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise ProductFileError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(KEYS))})")
    client_id = _required_text(entry, "client_id")
    if not CLIENT_ID.fullmatch(client_id):
        raise ProductFileError("client_id: must be 1 to 100 of A-Z a-z 0-9 . _ -")
    if client_id == load_users.CLIENT_ID and settings.PRODUCTION:
        raise ProductFileError(f"client_id: {load_users.refused_in_production('the load suites product')}")
    name = _required_text(entry, "name")
    if len(name) > 255:
        raise ProductFileError("name: longer than 255 characters")
    kind = _required_text(entry, "type")
    if kind not in TYPES:
        raise ProductFileError(f"type: must be 'confidential' or 'public' (got {kind!r})")
    first_party = entry.get("first_party", False)
    if not isinstance(first_party, bool):
        raise ProductFileError("first_party: must be true or false")
    if first_party and kind == "public":
        # Anyone can present a public client's id and a loopback redirect URI of their own; consent is what
        # stops a silent code from going to whatever app listens there (RFC 8252 §8.6).
        raise ProductFileError("first_party: a public product cannot be first-party (no consent page): any app "
                               "on the machine can use its client id (RFC 8252 §8.6); drop first_party or make "
                               "it confidential")
    redirect_uris = _uri_list(entry, "redirect_uris", required=True)
    post_logout = _uri_list(entry, "post_logout_redirect_uris", required=False)
    backchannel = ""
    if "backchannel_logout_uri" in entry:
        backchannel = check_uri(entry["backchannel_logout_uri"], "backchannel_logout_uri")
        if _origin(backchannel) not in {_origin(uri) for uri in redirect_uris}:
            raise ProductFileError("backchannel_logout_uri: must have the scheme, host and port of a redirect "
                                   "URI (OpenID Connect Back-Channel Logout 1.0 §2.2)")
    require_mfa = entry.get("require_mfa", False)
    if not isinstance(require_mfa, bool):
        raise ProductFileError("require_mfa: must be true or false")
    secret = _secret(entry, kind == "confidential", base, environ)
    return ProductSpec(client_id, name, kind == "confidential", first_party, redirect_uris, post_logout,
                       backchannel, secret, require_mfa)


def _required_text(entry: dict[str, Any], key: str) -> str:
    if key not in entry:
        raise ProductFileError(f"{key}: missing (required)")
    value = entry[key]
    if not isinstance(value, str) or not value.strip():
        raise ProductFileError(f"{key}: must be a non-empty string")
    return value


def _uri_list(entry: dict[str, Any], key: str, required: bool) -> tuple[str, ...]:
    if key not in entry:
        if required:
            raise ProductFileError(f"{key}: missing (required, a list of absolute URIs)")
        return ()
    values = entry[key]
    if not isinstance(values, list) or (required and not values):
        raise ProductFileError(f"{key}: must be a {'non-empty ' if required else ''}list of absolute URIs")
    uris = tuple(check_uri(value, f"{key}[{position}]") for position, value in enumerate(values))
    if len(set(uris)) != len(uris):
        raise ProductFileError(f"{key}: lists a URI twice")
    return uris


def _origin(uri: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(uri)
    return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def check_uri(value: object, key: str) -> str:
    """An absolute http(s) URI matched exactly: https, or http on a loopback host or where the toolkit allows it.

    The toolkit's ALLOWED_REDIRECT_URI_SCHEMES is ["https"] in production and also "http" locally;
    http to 127.0.0.1, localhost or [::1] is always allowed (RFC 8252 §7.3, a product on this machine)."""
    if not isinstance(value, str) or not value:
        raise ProductFileError(f"{key}: must be a non-empty string (an absolute URI)")
    if len(value) > MAX_URI_LENGTH:
        raise ProductFileError(f"{key}: longer than {MAX_URI_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ord(ch) > 0x7E for ch in value):
        raise ProductFileError(f"{key}: must be printable ASCII without spaces (percent-encode the rest)")
    if "#" in value:
        raise ProductFileError(f"{key}: must not have a fragment (RFC 6749 §3.1.2)")
    if "*" in value:
        raise ProductFileError(f"{key}: wildcards are not allowed, every URI is matched exactly")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ProductFileError(f"{key}: not a URI ({value!r})") from None
    if not value.startswith(f"{parts.scheme}://") or not parts.hostname:
        raise ProductFileError(f"{key}: must be an absolute URI like https://host/path (got {value!r})")
    if "@" in parts.netloc:
        raise ProductFileError(f"{key}: must not carry user information (user@host)")
    schemes = {s.lower() for s in oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES} & {"http", "https"}
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        schemes.add("http")
    if parts.scheme not in schemes:
        allowed = "https or http" if "http" in schemes else "https (http only for 127.0.0.1, localhost or [::1])"
        raise ProductFileError(f"{key}: must be {allowed} (got {value!r})")
    try:
        AllowedURIValidator(schemes, key, allow_path=True, allow_query=True)(value)
    except ValidationError:
        raise ProductFileError(f"{key}: not a valid URI ({value!r})") from None
    return value


def _secret(entry: dict[str, Any], confidential: bool, base: Path, environ: dict[str, str]) -> str:
    """The client secret of a confidential product, from its environment variable or file (never echoed)."""
    given = [key for key in ("secret_env", "secret_file") if key in entry]
    if not confidential:
        if given:
            raise ProductFileError(f"{given[0]}: a public product has no client secret (remove the key)")
        return ""
    if not given:
        raise ProductFileError("secret_env: missing: a confidential product needs secret_env or secret_file")
    if len(given) > 1:
        raise ProductFileError("secret_file: give secret_env or secret_file, not both")
    key = given[0]
    where = entry[key]
    if not isinstance(where, str) or not where:
        raise ProductFileError(f"{key}: must be a non-empty string")
    if key == "secret_env":
        if not ENV_NAME.fullmatch(where):
            raise ProductFileError(f"secret_env: {where!r} is not an environment variable name")
        secret = environ.get(where, "")
        if not secret:
            raise ProductFileError(f"secret_env: the environment variable {where} is not set")
        source = f"the environment variable {where}"
    else:
        path = base / where
        raw = _read_bounded(path, MAX_SECRET_FILE_BYTES, "secret_file: ", str(path))
        try:
            secret = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ProductFileError(f"secret_file: {path} is not UTF-8 text") from None
        source = f"the file {path}"
    if len(secret) < MIN_SECRET_LENGTH:
        raise ProductFileError(f"{key}: the secret in {source} is shorter than {MIN_SECRET_LENGTH} characters")
    if len(secret) > MAX_SECRET_LENGTH:
        raise ProductFileError(f"{key}: the secret in {source} is longer than {MAX_SECRET_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in secret):
        raise ProductFileError(f"{key}: the secret in {source} has spaces or control characters in it")
    return secret


# --- writing ------------------------------------------------------------------------------------------
def _wanted_fields(spec: ProductSpec) -> dict[str, Any]:
    """The Application columns a spec decides (the secret apart: it is compared by hash)."""
    Application = get_application_model()
    return {
        "name": spec.name,
        "client_type": Application.CLIENT_CONFIDENTIAL if spec.confidential else Application.CLIENT_PUBLIC,
        "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
        "redirect_uris": " ".join(spec.redirect_uris),
        "post_logout_redirect_uris": " ".join(spec.post_logout_redirect_uris),
        "skip_authorization": spec.first_party,
        "algorithm": Application.RS256_ALGORITHM,
        "hash_client_secret": True,
    }


def _apply(application: Any, spec: ProductSpec) -> list[str]:
    """Set what differs on `application` (unsaved); the names of the fields that changed."""
    changed = []
    was_confidential = application.pk is not None and application.client_type == application.CLIENT_CONFIDENTIAL
    for name, value in _wanted_fields(spec).items():
        if getattr(application, name) != value:
            setattr(application, name, value)
            changed.append(name)
    if spec.confidential:
        # check_password, not a new hash every run: an unchanged secret leaves the row unchanged.
        if application.pk is None or not check_password(spec.secret, application.client_secret):
            application.client_secret = make_password(spec.secret, hasher=oauth2_settings.CLIENT_SECRET_HASHER)
            changed.append("secret")
    elif application.pk is None or was_confidential:
        # A public client has no usable secret: the hash of "" never verifies (hashers.MIN_SECRET_LENGTH).
        application.client_secret = make_password("", hasher=oauth2_settings.CLIENT_SECRET_HASHER)
        if application.pk is not None:
            changed.append("secret")
    return changed


def _sync_product(application: Any, spec: ProductSpec) -> list[str]:
    """The product row's fields as `spec` wants them; the names of those that changed."""
    wanted = {"backchannel_logout_uri": spec.backchannel_logout_uri, "require_mfa": spec.require_mfa}
    product = Product.objects.filter(application=application).first()
    if product is None:
        Product.objects.create(application=application, **wanted)
        return ["backchannel_logout_uri"] + (["require_mfa"] if spec.require_mfa else [])
    changed = [name for name, value in wanted.items() if getattr(product, name) != value]
    if changed:
        for name in changed:
            setattr(product, name, wanted[name])
        product.save(update_fields=changed)
    return changed


def sync(specs: list[ProductSpec], prune: bool = False) -> SyncResult:
    """Create or update every product of `specs` (one transaction); delete the others only with `prune`."""
    Application = get_application_model()
    result = SyncResult()
    wanted = {spec.client_id for spec in specs}
    with transaction.atomic():
        existing = {app.client_id: app for app in Application.objects.select_for_update().order_by("client_id")}
        for spec in specs:
            application = existing.get(spec.client_id) or Application(client_id=spec.client_id)
            created = application.pk is None
            changed = _apply(application, spec)
            if changed:
                application.save()
            changed += _sync_product(application, spec)
            if created:
                result.lines.append(f"{spec.client_id}: created")
            elif changed:
                result.lines.append(f"{spec.client_id}: updated ({', '.join(sorted(set(changed)))})")
            else:
                result.lines.append(f"{spec.client_id}: unchanged")
        others = sorted(set(existing) - wanted)
        if prune and others:
            Application.objects.filter(client_id__in=others).delete()  # its tokens, sign-ins, outbox go too
            result.pruned = others
        elif others:
            result.kept = others
    return result
