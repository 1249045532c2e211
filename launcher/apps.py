from django.apps import AppConfig


class LauncherConfig(AppConfig):
    name = "launcher"
    verbose_name = "Launcher"

    def ready(self) -> None:
        from launcher import (
            cache_versions,
            checks,  # noqa: F401  (registers the production settings checks)
        )

        cache_versions.connect()
