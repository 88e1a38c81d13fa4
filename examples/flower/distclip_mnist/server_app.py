"""The ServerApp: distclip's strategy running the config named by the run config's ``config``."""

from pathlib import Path

from distclip.flower import server_app

app = server_app(base=Path(__file__).parent)
