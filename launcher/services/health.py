"""Health probes used by /healthz."""


def api_health() -> str:
    """'ok' when the Cyberdesk API answers, else a short error. (The client issue fills this in.)"""
    return "ok"
