from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "launcher.sandbox"
    label = "sandbox"
    verbose_name = "Cyberdesk sandbox"
