"""Single sign-on: the OpenID Connect provider (loginsvc/sso) and the demo products."""
