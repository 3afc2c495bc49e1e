"""The login form: bounded fields, so huge or NUL-containing input is a form error, never a 500.

`next` is deliberately not a form field: a bad `next` is dropped (see redirects.py), it never
makes an otherwise valid login fail.
"""
from __future__ import annotations

from django import forms

MAX_PASSWORD_LENGTH = 1024  # Argon2 takes any length; bounding it stops hashing megabytes per attempt.


class LoginForm(forms.Form):
    username = forms.CharField(
        label="Email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "username webauthn", "autofocus": True, "required": True}),
    )
    password = forms.CharField(
        label="Password",
        max_length=MAX_PASSWORD_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "required": True}),
    )
