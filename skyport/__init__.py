"""Skyport Jobs at the top: the `skyport` command line (`skyport.main`) and the application
(`skyport.app`: the broker with every job family's actors, and the enqueue API for apps).

Nothing below this package imports it: the runtime, the job families, the scheduler and the
console stand on their own.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("skyport-jobs")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
