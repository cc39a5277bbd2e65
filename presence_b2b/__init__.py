"""presence-b2b: a presence back-to-back user agent (successor of SER's presence_b2b)."""

__version__ = "0.1.0"
