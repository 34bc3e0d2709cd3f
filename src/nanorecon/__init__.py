"""nanorecon: 3D atomic structures of single nanoparticles from electron microscopy data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nanorecon")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0+unknown"
