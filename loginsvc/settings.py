"""Django settings: everything from the environment, safe in production, embedded defaults locally.

LOGINSVC_MODE=production turns on the strict checks: a strong DJANGO_SECRET_KEY (or
DJANGO_SECRET_KEY_FILE) and DJANGO_ALLOWED_HOSTS are required, cookies are Secure, HSTS is on.
Without it (`local`, the default) the service runs from a checkout with no set-up at all:
SQLite and a generated secret key under var/, Redis on var/redis.sock.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from loginsvc import conf, middleware_chain
from loginsvc.mail import smtp
from sharedlib.files import create_once

BASE_DIR = conf.ROOT
VAR_DIR = conf.var_dir()
MODE = os.environ.get("LOGINSVC_MODE", "local")
if MODE not in {"local", "production"}:
    raise ImproperlyConfigured(f"LOGINSVC_MODE: must be 'local' or 'production' (got {MODE!r})")
PRODUCTION = MODE == "production"

LOGINSVC = conf.load()
if PRODUCTION and LOGINSVC["TEST_DELAY"]:
    # It slows answers on purpose (loginsvc/delay.py): load and canary tests only.
    raise ImproperlyConfigured("LOGINSVC_TEST_DELAY: a test-only setting, refused in production")


def _read_secret_file(variable: str) -> str | None:
    path = os.environ.get(variable)
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"{variable}: cannot read {path} ({exc.strerror})") from None


def _local_secret_key() -> str:
    """A key generated once into var/, shared by every local node so sessions work across them."""
    return create_once(VAR_DIR / "secret_key", lambda: secrets.token_urlsafe(50)).strip()


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY") or _read_secret_file("DJANGO_SECRET_KEY_FILE")
    if not PRODUCTION:
        return key or _local_secret_key()
    if not key:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY: required in production (or DJANGO_SECRET_KEY_FILE)")
    if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure"):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY: too weak (need at least 50 characters, 5 distinct)")
    return key


SECRET_KEY = _secret_key()
DEBUG = not PRODUCTION and os.environ.get("DJANGO_DEBUG") == "1"

_hosts = os.environ.get("DJANGO_ALLOWED_HOSTS", "")
if PRODUCTION and not _hosts.strip():
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS: required in production (comma-separated host names)")
ALLOWED_HOSTS = [h.strip() for h in _hosts.split(",") if h.strip()] or ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    # The account administration (loginsvc/staff): our own AdminSite, so no autodiscovery and no default site.
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.messages",
    "oauth2_provider",
    "loginsvc.accounts",
    "loginsvc.sso",
    "loginsvc.mfa",
    "loginsvc.mail",
    "loginsvc.selfservice",
    "loginsvc.staff",
    "loginsvc.mailclients",
    "loginsvc.health",
    "loginsvc.observability",
]

# Declared once, with each entry's role for the node's fast paths (loginsvc/middleware_chain.py).
MIDDLEWARE = list(middleware_chain.MIDDLEWARE)

# The admin's messages are set up for its views alone (staff/site.py), not by MessageMiddleware: the
# chain above is the one the node's fast paths mirror (loginsvc/fast_path.py).
SILENCED_SYSTEM_CHECKS = ["admin.E409"]
STATIC_URL = "/static/"  # the admin's own style sheets and scripts (loginsvc/urls.py)

ROOT_URLCONF = "loginsvc.urls"
WSGI_APPLICATION = "loginsvc.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "loginsvc" / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "loaders": [
                ("django.template.loaders.cached.Loader", ["django.template.loaders.filesystem.Loader",
                                                           "django.template.loaders.app_directories.Loader"]),
            ],
        },
    }
]

# --- Database: DATABASE_URL (PostgreSQL) or SQLite under var/ -----------------------------------
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60, conn_health_checks=True)}
    if "postgresql" in DATABASES["default"]["ENGINE"]:
        options = DATABASES["default"].setdefault("OPTIONS", {})
        options.setdefault("connect_timeout", 3)
        # Only server-binding cursors are ever prepared, and Django's are client-binding: this
        # concerns the SSO reads alone (sso/reads.py, sso/prepared.py), which skip planning that way.
        options.setdefault("prepare_threshold", LOGINSVC["DB_PREPARE_THRESHOLD"] or None)
else:
    VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)  # the database: password hashes, sessions
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            # Keep each thread's connection: opening one (and its PRAGMAs) costs more than a query.
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
            # WAL lets many node processes read while one writes; IMMEDIATE avoids upgrade deadlocks.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Mail: EMAIL_URL (SMTP); unset, messages wait in the outbox (loginsvc/mail) ------------------
EMAIL_SERVER = smtp.configured()
DEFAULT_FROM_EMAIL = LOGINSVC["MAIL_FROM"] or f"Sign-in <no-reply@{conf.public_host(LOGINSVC)}>"

# --- Redis: sessions' cache and brute-force counters --------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL") or f"unix://{VAR_DIR / 'redis.sock'}?db=0"
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "loginsvc",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 0.25,
            "SOCKET_TIMEOUT": 0.25,
            # Redis down must cost speed, not availability: cache misses fall through to the DB.
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = False

# --- Sessions: Redis in front, the database behind (cached_db), so a Redis loss logs nobody out --
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# Production cookies carry the __Host- prefix: browsers accept such a cookie only with Secure,
# Path=/ and no Domain, so a sibling product subdomain can neither plant nor overwrite it (a
# planted CSRF cookie would defeat the double-submit check). Locally there is no TLS, so no prefix.
_COOKIE_PREFIX = "__Host-" if PRODUCTION else ""
SESSION_COOKIE_NAME = _COOKIE_PREFIX + "loginsvc_sid"
CSRF_COOKIE_NAME = _COOKIE_PREFIX + "csrftoken"
LOGINSVC_DEVICE_COOKIE_NAME = _COOKIE_PREFIX + "loginsvc_device"  # known_sources.py: same rules
SESSION_COOKIE_PATH = CSRF_COOKIE_PATH = "/"
SESSION_COOKIE_DOMAIN = CSRF_COOKIE_DOMAIN = None
SESSION_COOKIE_AGE = LOGINSVC["SESSION_IDLE_SECONDS"]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_HTTPONLY = False  # API clients read it to send X-CSRFToken
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "loginsvc.accounts.views.csrf_failure"
try:
    CSRF_TRUSTED_ORIGINS = list(conf.parse_origins(os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "")))
except ValueError as exc:
    raise ImproperlyConfigured(f"DJANGO_CSRF_TRUSTED_ORIGINS: {exc}") from None

# --- Accounts and passwords ------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["loginsvc.accounts.backends.CachedModelBackend"]
LOGIN_URL = "login"
PASSWORD_HASHERS = [
    "loginsvc.accounts.hashers.ConfiguredArgon2PasswordHasher",
    # Older hashes still verify and are re-hashed with Argon2id at the next successful login.
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    # Client secrets of products only (sso/hashers.py: refuses anything shorter than 32 characters).
    "loginsvc.sso.hashers.ClientSecretHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    # ASVS 2.1.1: at least 12 characters.
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
     "OPTIONS": {"user_attributes": ("email", "display_name")}},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

if PRODUCTION:
    # Every token's `iss` and every URL in discovery: the router's public origin, never a node's.
    if not os.environ.get("LOGINSVC_OIDC_ISSUER"):
        raise ImproperlyConfigured("LOGINSVC_OIDC_ISSUER: required in production (the public https origin of the router)")
    if not LOGINSVC["OIDC_ISSUER"].startswith("https://"):
        raise ImproperlyConfigured("LOGINSVC_OIDC_ISSUER: must be an https origin in production")
    if not (os.environ.get("LOGINSVC_OIDC_PRIVATE_KEY") or LOGINSVC["OIDC_KEY_FILE"]):
        raise ImproperlyConfigured("LOGINSVC_OIDC_KEY_FILE: required in production (or LOGINSVC_OIDC_PRIVATE_KEY)")
    # The key of second factors' secrets (mfa/sealing.py): one per deployment, never one per node.
    if not (os.environ.get("LOGINSVC_MFA_KEY") or LOGINSVC["MFA_KEY_FILE"]):
        raise ImproperlyConfigured("LOGINSVC_MFA_KEY_FILE: required in production (or LOGINSVC_MFA_KEY)")

# --- Single sign-on: django-oauth-toolkit's OpenID Connect provider (loginsvc/sso, docs/sso.md) ----
# Every value that is not django-oauth-toolkit's default is chosen here on purpose; the signing keys
# are not in this dict (sso/keys.py: one parsed ring per process, reloaded on rotation).
# The toolkit's own models, named explicitly so that migrations can depend on them as swappable.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": LOGINSVC["OIDC_ISSUER"],
    "OAUTH2_VALIDATOR_CLASS": "loginsvc.sso.validators.Validator",
    "SCOPES": {"openid": "Sign you in", "email": "Your email address", "profile": "Your name",
               # Mail clients (docs/mail-clients.md): IMAP and SMTP submission with the token, and staying signed in.
               "mail": "Read and send your mail (IMAP and SMTP)", "offline_access": "Stay signed in"},
    "DEFAULT_SCOPES": ["openid"],
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    # "none": public products (sync_products `type = "public"`) send only client_id, bound by PKCE.
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_basic", "client_secret_post", "none"],
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"] if PRODUCTION else ["http", "https"],
    "REQUEST_APPROVAL_PROMPT": "auto",
    # Codes: short-lived, single use (django-oauth-toolkit deletes the grant when it is redeemed).
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": LOGINSVC["AUTH_CODE_SECONDS"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": LOGINSVC["ACCESS_TOKEN_SECONDS"],
    "ID_TOKEN_EXPIRE_SECONDS": LOGINSVC["ACCESS_TOKEN_SECONDS"],
    # A refresh token cannot outlive its sign-in's absolute lifetime: the central session's, or for one
    # granted offline_access the offline one (sso/token_rules.lifetimes decides per sign-in).
    "REFRESH_TOKEN_EXPIRE_SECONDS": max(LOGINSVC["SESSION_MAX_SECONDS"], LOGINSVC["OFFLINE_MAX_SECONDS"]),
    "ROTATE_REFRESH_TOKEN": True,
    # 0: the toolkit's grace period would have to return tokens it stores hashed (its check E001);
    # sso/refresh_retry.py keeps a retry window of its own (LOGINSVC_REFRESH_RETRY_SECONDS).
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,       # a replayed old refresh token revokes its family
    "CLIENT_SECRET_HASHER": "sso_sha256",
    # PKCE for every client, S256 only; no implicit or password grants; RFC 9207 `iss` in responses.
    "PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,  # tokens are stored as SHA-256 checksums only
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": PRODUCTION,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": False,   # a valid id_token_hint of this session: no prompt
    "OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS": True,
    "OIDC_RP_INITIATED_LOGOUT_ACCEPT_EXPIRED_TOKENS": False,  # unused: sso/rp_logout.py reads hints itself and accepts expired ones
    # The toolkit would delete every token of the user, in every browser; sso/logout.py revokes exactly
    # the ending session's tokens (and notifies its products).
    "OIDC_RP_INITIATED_LOGOUT_DELETE_TOKENS": False,
    # RFC 8628, for mail clients without a browser (sso/device.py): the person answers at /device (the
    # answer's verification_uri_complete is added by device_views.py); the device polls every 5 s. Our validator finds the grant's user (the toolkit's pre-token hook would
    # raise DoesNotExist, a 500, for an unknown device code).
    "OAUTH_DEVICE_VERIFICATION_URI": LOGINSVC["OIDC_ISSUER"] + "/device",
    "OAUTH_DEVICE_USER_CODE_GENERATOR": lambda: import_string("loginsvc.sso.device.user_code")(),
    "OAUTH_PRE_TOKEN_VALIDATION": [],
    "DEVICE_FLOW_INTERVAL": 5,
}

# --- Request limits: bad input is a 400, never a 500 --------------------------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 50
FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# --- Security headers ---------------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if PRODUCTION:
    # TLS ends at the edge in front of the router; it tells us the original scheme.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # /healthz, /readyz and /metrics need no exemption: HealthMiddleware answers them first.
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
USE_I18N = False

# --- Logs and Sentry ----------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "loginsvc.observability.logs.JsonFormatter",
            "cluster": LOGINSVC["CLUSTER"],
            "node": LOGINSVC["NODE"],
        },
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOGINSVC["JSON_LOGS"] else "plain",
        },
        "trail": {"class": "loginsvc.staff.trail.AuditTrailHandler"},  # accounts' audit lines, also in the database
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOGINSVC_LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "propagate": False},
        "loginsvc.audit": {"handlers": ["trail"], "propagate": True},
    },
}

if os.environ.get("SENTRY_DSN"):
    from loginsvc.observability import sentry

    sentry.init(
        os.environ["SENTRY_DSN"], LOGINSVC["CLUSTER"], LOGINSVC["NODE"], LOGINSVC["RELEASE"], MODE
    )
