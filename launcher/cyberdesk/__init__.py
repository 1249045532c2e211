"""The Cyberdesk API client package: the only code in Launcher that speaks HTTP.

from launcher.cyberdesk import get_client, errors, types
run = get_client().get_run(run_id)
"""

from launcher.cyberdesk import errors, types
from launcher.cyberdesk.client import (
    CyberdeskClient,
    close_client,
    get_client,
    quick_reads,
    use_transport,
)

__all__ = [
    "CyberdeskClient",
    "close_client",
    "errors",
    "get_client",
    "quick_reads",
    "types",
    "use_transport",
]
