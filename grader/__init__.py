"""grader: judges Python concurrency exercises by running student code in supervised, probed subprocesses."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grader")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0.0.0+checkout"
