"""What the console shows while `make run` serves: one line per request at most.

- A static file answered 304 (the browser's cache is fresh) is no news: no line.
- A call to the sandbox is logged once, by the Cyberdesk client that made it
  ("cyberdesk GET /v1/runs/… -> 200 in 3 ms"); the development server's own line for the same
  request (`GET /sandbox/v1/…`) is dropped.
- The background worker's bookkeeping (django-tasks' "task started / finished" lines, every 30 s
  for the reconciler alone) is dropped below WARNING; what a task does that matters it logs
  itself, and failures are warnings or errors, which always show.
Warnings and errors are never filtered.
"""

from __future__ import annotations

import logging


class QuietConsole(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if record.name == "django.server":
            line = str(record.args[0]) if record.args else record.getMessage()
            path = line.split(" ")[1] if line.count(" ") >= 1 else ""
            status = str(getattr(record, "status_code", ""))
            if status == "304" or path.startswith(("/static/", "/sandbox/")):
                return False
        return not record.name.startswith(("django_tasks", "django_tasks_db"))
