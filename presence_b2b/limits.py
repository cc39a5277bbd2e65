"""Process resource limits the service needs raised at start."""

from __future__ import annotations

import resource


def raise_fd_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit and return it.

    Every QSA client costs the supervisor 3 fds per ring (1 + shards rings) and
    each shard 3; the common soft default of 1024 would cap the service near a
    hundred clients for no reason.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            return soft
    return soft
