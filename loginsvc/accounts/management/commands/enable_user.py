"""`manage.py enable_user EMAIL`: let a disabled account sign in again (the reverse of disable_user)."""
from __future__ import annotations

from loginsvc.accounts.management.commands.disable_user import SetActive


class Command(SetActive):
    help = ("Reactivate the account EMAIL (disabled by `manage.py disable_user`): it can sign in again with its "
            "password. Sessions ended by the disabling stay ended. Already enabled: nothing changes.")
    active, done = True, "enabled"
