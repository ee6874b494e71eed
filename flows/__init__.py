"""renhu flows: the Prefect flow, its tasks, the CLI, and the I/O around the linkage core."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("renhu")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
