"""presence-b2b: a presence back-to-back user agent (successor of SER's presence_b2b)."""

from . import compiled as _compiled

__version__ = "0.1.0"

# Before any hot module is imported: the compiled build of this source, if there is one.
_compiled.install()
