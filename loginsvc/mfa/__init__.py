"""Second factors: authenticator apps (TOTP) and recovery codes, and the sign-in step that asks for them."""
