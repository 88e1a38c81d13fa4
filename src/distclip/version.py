"""The installed package version (``0.0.0+source`` when running from a source tree without installation)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("distclip")
except PackageNotFoundError:
    __version__ = "0.0.0+source"
