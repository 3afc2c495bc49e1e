"""Users addressed by email (case-insensitive, unique) and the database side of brute-force state."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.hashers import is_password_usable
from django.contrib.auth.models import PermissionsMixin
from django.db import models, transaction
from django.db.models import F
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import salted_hmac

from loginsvc.accounts import auth_epoch, sign_ins


def normalise_email(raw: str) -> str:
    """The canonical form we store and look up: trimmed and lower-cased as a whole.

    RFC 5321 allows a case-sensitive local part, but no mail product of ours treats
    `Ann@x` and `ann@x` as two people, and case-insensitive login is what users expect.
    """
    return (raw or "").strip().lower()


def _ends_rights(changes: dict[str, object]) -> str | None:
    """Why a bulk change ends the users' sign-ins (sign_ins.py), or None: they are disabled (anything
    but is_active=True) or get another password."""
    if "password" in changes:
        return sign_ins.PASSWORD
    if "is_active" in changes and changes["is_active"] is not True:
        return sign_ins.DEACTIVATED
    return None


class UserQuerySet(models.QuerySet["User"]):
    def update(self, **kwargs: object) -> int:
        """Any bulk change may matter to authentication (is_active, password): after the commit,
        every process drops its cached users (auth_epoch.py). One that disables the users or
        changes their passwords also ends all of their sign-ins, in the same transaction.
        save() does not come here."""
        reason = _ends_rights(kwargs)
        if reason == sign_ins.DEACTIVATED:  # sessions end for good, not only while inactive (User.save)
            kwargs = {**kwargs, "auth_epoch": F("auth_epoch") + 1}
        with transaction.atomic(using=self.db):
            affected = list(self.select_for_update().values_list("pk", flat=True)) if reason else []
            rows = super().update(**kwargs)
            for user_id in affected:
                sign_ins.end_all(self.model, user_id, by=reason or "")
        auth_epoch.on_commit_publish(None)
        return rows


class UserManager(BaseUserManager.from_queryset(UserQuerySet)):  # type: ignore[misc]
    use_in_migrations = True

    def get_by_natural_key(self, username: str | None) -> "User":
        return self.get(email=normalise_email(username or ""))

    def _create(self, email: str, password: str | None, **extra: object) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=normalise_email(email), **extra)
        user.set_password(password)  # None gives an unusable password: no default passwords.
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> "User":
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> "User":
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """An end user or operator; the email address is the login name."""

    # Stored lower-cased (save()), so the plain unique index is case-insensitive in effect; the
    # functional constraint below also guards rows written around save().
    email = models.EmailField("email address", max_length=254, unique=True)
    display_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    # Bumped by "sign out everywhere" (auth_epoch.py); part of the session-auth hash.
    auth_epoch = models.PositiveIntegerField(default=0, editable=False)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique")]

    def clean(self) -> None:
        super().clean()
        self.email = normalise_email(self.email)

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> "User":
        """Remembers is_active and the password hash as loaded, so save() can tell what changed."""
        user = super().from_db(db, field_names, values)
        user._loaded = (user.__dict__.get("is_active"), user.__dict__.get("password"))
        return user

    def _rights_ended(self, update_fields: Any) -> str | None:
        """Why saving this user ends all of its sign-ins (sign_ins.py), or None.

        A password change is set_password() (Django's admin, changepassword and every form use it)
        or a usable hash replaced by an unusable one; not the re-hash at login that upgrades an old
        hash of the same password (Django's setter saves it with _password cleared)."""
        loaded = getattr(self, "_loaded", None)
        if self._state.adding or loaded is None:
            return None  # a new account has no sign-ins yet
        saved = set(update_fields) if update_fields is not None else None
        was_active, old_hash = loaded
        if was_active and not self.is_active and (saved is None or "is_active" in saved):
            return sign_ins.DEACTIVATED
        if saved is not None and "password" not in saved:
            return None
        if self._password is not None and old_hash is not None:
            return sign_ins.PASSWORD
        if old_hash is not None and is_password_usable(old_hash) and not is_password_usable(self.password):
            return sign_ins.PASSWORD
        return None

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Saves; a change that ends the user's right to be signed in also ends all of the user's
        sign-ins, in the same transaction (sign_ins.py)."""
        self.email = normalise_email(self.email)
        reason = self._rights_ended(kwargs.get("update_fields"))
        if reason == sign_ins.DEACTIVATED:
            # Django refuses an inactive user's session but keeps it: enabled again, the account would
            # have it back. A new auth epoch (auth_epoch.py) ends every session of it for good.
            self.auth_epoch = F("auth_epoch") + 1
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = [*kwargs["update_fields"], "auth_epoch"]
        with transaction.atomic(using=kwargs.get("using")):
            super().save(*args, **kwargs)
            if reason is not None:
                sign_ins.end_all(type(self), self.pk, by=reason)
        if reason == sign_ins.DEACTIVATED:
            self.refresh_from_db(fields=["auth_epoch"])
        self._remember(kwargs.get("update_fields"))

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        fields = kwargs.get("fields", args[1] if len(args) > 1 else None)
        self._remember(fields)

    def _remember(self, fields: Any) -> None:
        """What the database holds now of is_active and the password (`fields`: only these were
        written or read; None: every field)."""
        was_active, old_hash = getattr(self, "_loaded", (None, None))
        self._loaded = (self.is_active if fields is None or "is_active" in fields else was_active,
                        self.password if fields is None or "password" in fields else old_hash)

    def __str__(self) -> str:
        return self.email

    def _get_session_auth_hash(self, secret: str | None = None) -> str:
        """Django's HMAC of the password hash, with the auth epoch mixed in once it is non-zero, so
        that a new epoch ends every session while epoch 0 keeps the hashes of existing sessions.
        (Django's get_session_auth_hash and its SECRET_KEY_FALLBACKS variant both come here.)"""
        if not self.auth_epoch:
            return super()._get_session_auth_hash(secret)
        key_salt = "loginsvc.accounts.models.User.get_session_auth_hash"
        return salted_hmac(key_salt, f"{self.password}\x00{self.auth_epoch}", secret=secret,
                           algorithm="sha256").hexdigest()


@receiver(pre_delete, sender=User)
def _deleted(sender: type[User], instance: User, **kwargs: Any) -> None:
    """Inside the delete's transaction, before the rows that cascade go: the products are told."""
    sign_ins.end_all(sender, instance.pk, by=sign_ins.DELETED)


class ThrottleState(models.Model):
    """Brute-force counters and locks, used when Redis cannot be reached (see throttle.py)."""

    key = models.CharField(max_length=96, primary_key=True)
    failures = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField()
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="accounts_throttle_exp_idx")]


class KnownNetwork(models.Model):
    """A network a user has signed in from successfully (known_sources.py): the account-wide
    brute-force lock does not apply to attempts from it. IPv4 per address, IPv6 per /64."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="known_networks")
    network = models.CharField(max_length=64)
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "network"], name="accounts_known_network_unique")]


class SessionRecord(models.Model):
    """One signed-in browser session of a user, as the sessions page lists it (session_registry.py).

    `public_id` names it to the user and the API; `session_key` is the key of the session store,
    which only the server sees (the same secret django_session already holds)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="session_records")
    public_id = models.CharField(max_length=24, unique=True)
    session_key = models.CharField(max_length=64, unique=True)
    user_agent = models.CharField(max_length=300, blank=True)
    address = models.CharField(max_length=64, blank=True)
    cluster = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField()


class KnownDevice(models.Model):
    """A browser that holds the user's device cookie (known_sources.py): listed, and removable, which
    takes the account-wide lock's exemption away from that cookie."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="known_devices")
    device_id = models.CharField(max_length=32)
    user_agent = models.CharField(max_length=300, blank=True)
    created = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "device_id"], name="accounts_known_device_unique")]
