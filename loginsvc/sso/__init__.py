"""Single sign-on: the OpenID Connect provider (django-oauth-toolkit) and what it does not ship."""
