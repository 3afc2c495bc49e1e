"""Canary router: pins users to the stable or canary cluster of the login service, ramps, fails over."""
from . import compiled

compiled.select()      # the compiled hot modules when they match their sources, else the plain-Python ones
