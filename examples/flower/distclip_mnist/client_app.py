"""The ClientApp: each SuperNode runs the distclip client given by its node config's ``partition-id``."""

from distclip.flower import client_app

app = client_app()
