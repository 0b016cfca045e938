"""neuradiff: track voids in in-situ TEM videos and learn the phase-field physics that moves them."""

from neuradiff._version import __version__

__all__ = ["__version__"]
