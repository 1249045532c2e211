"""python manage.py move_prompt_label WORKFLOW LABEL VERSION --user NAME [--batch N] [--reason …]
[--without-evidence] — move a label from the command line, under the same rule as the app and
the admin (`prompt_label_move`: permissions, and the evidence gate for protected labels)."""

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from launcher.models import Batch, PromptVersion, Workflow
from launcher.services.prompts import PromptError, prompt_label_move


class Command(BaseCommand):
    help = (
        "Move a prompt label (e.g. production) of a workflow to a version number. Protected "
        "labels need evidence (a finished batch) or --without-evidence with a --reason."
    )

    def add_arguments(self, parser):
        parser.add_argument("workflow", help="The workflow's id.")
        parser.add_argument("label", help="The label's name, e.g. production.")
        parser.add_argument("version", type=int, help="The version number, e.g. 4.")
        parser.add_argument("--user", required=True, help="Who moves it (their permissions apply).")
        parser.add_argument("--batch", type=int, help="The evidence batch's number.")
        parser.add_argument("--reason", default="", help="Why (kept in the label history).")
        parser.add_argument(
            "--without-evidence",
            action="store_true",
            help="Move a protected label without evidence (needs the permission and --reason).",
        )

    def handle(self, *args, **options):
        try:
            workflow = Workflow.objects.get(pk=options["workflow"])
        except (Workflow.DoesNotExist, ValidationError):
            raise CommandError(f"No workflow {options['workflow']!r}.") from None
        version = PromptVersion.objects.filter(workflow=workflow, number=options["version"]).first()
        if version is None:
            raise CommandError(f"{workflow} has no v{options['version']}.")
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user {options['user']!r}.")
        batch = None
        if options["batch"] is not None:
            batch = Batch.objects.filter(pk=options["batch"], workflow=workflow).first()
            if batch is None:
                raise CommandError(f"{workflow} has no batch {options['batch']}.")
        try:
            label = prompt_label_move(
                workflow=workflow,
                name=options["label"],
                version=version,
                user=user,
                reason=options["reason"],
                evidence_batch=batch,
                without_evidence=options["without_evidence"],
            )
        except (PromptError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"{label.name} → v{version.number}."))
