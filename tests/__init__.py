"""Test suite: real Redis, real gunicorn nodes, real Chromium; see tests/plugin.py for the set-up."""
