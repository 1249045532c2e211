"""`manage.py bench` refuses to start without its load tool, and says how to get it."""

import pytest
from django.core.management import CommandError, call_command

from launcher.bench import load


def test_it_says_how_to_install_wrk_when_missing(monkeypatch):
    monkeypatch.setattr(load.shutil, "which", lambda name: None)

    with pytest.raises(CommandError, match="apt-get install -y wrk"):
        call_command("bench")
