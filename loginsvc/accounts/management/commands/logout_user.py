"""`manage.py logout_user EMAIL`: end every session of one account on every node at once (ops' ASVS 3.3.4)."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email

from loginsvc.accounts import auth_epoch
from loginsvc.accounts.models import User, normalise_email


def account(text: str) -> User:
    """The account of the address `text` (any case) for an ops command; a bad or unknown address is
    one line on stderr (CommandError) and exit status 1."""
    email = normalise_email(text)
    try:
        validate_email(email)
        return User.objects.get(email=email)
    except ValidationError:
        raise CommandError(f"{email!r} is not an email address") from None
    except User.DoesNotExist:
        raise CommandError(f"no account {email!r}") from None


class Command(BaseCommand):
    help = ("End every session of the account EMAIL on every node: its next request anywhere is "
            "anonymous. The password is unchanged; deactivate the account to keep it out.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="the account's email address (any case)")

    def handle(self, *args: object, **options: object) -> None:
        user = account(str(options["email"]))
        auth_epoch.sign_out_everywhere(user, by="ops")  # a Redis failure is logged as a warning
        self.stdout.write(f"signed out every session of {user.email}")
