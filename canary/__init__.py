"""Canary router: pins users to the stable or canary cluster of the login service, ramps, fails over."""
from canary.native import compiled

compiled.select()      # the compiled data plane when they match their sources, else the plain-Python ones
