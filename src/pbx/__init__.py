"""pbx: an enterprise telephone system on Twisted."""

__version__ = "0.1.0"
