from django.apps import AppConfig


class LauncherConfig(AppConfig):
    name = "launcher"
    verbose_name = "Launcher"

    def ready(self) -> None:
        from launcher import checks  # noqa: F401  (registers the production settings checks)
