"""Canary router: pins users to the stable or canary cluster of the login service, ramps, fails over."""
