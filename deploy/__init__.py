"""Deployment: process layout, gunicorn settings and the local stack that `make up` runs."""
