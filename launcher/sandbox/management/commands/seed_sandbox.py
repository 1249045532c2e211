"""`manage.py seed_sandbox`: load the sandbox's demo workflows and models (safe to repeat)."""

from django.core.management.base import BaseCommand

from launcher.sandbox.seed import seed_demo_data
from launcher.sandbox.tasks import driver_ensure_scheduled


class Command(BaseCommand):
    help = "Create the sandbox's demo workflows, tags and model configurations if missing."

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Also put existing demo rows back to their original values.",
        )

    def handle(self, *args, reset: bool = False, **options):
        created = seed_demo_data(reset=reset)
        # Runs left unfinished by a previous session resume with the worker.
        driver_ensure_scheduled()
        summary = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in created.items())
        self.stdout.write(f"Sandbox demo data ready (created {summary}).")
