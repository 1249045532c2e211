"""Create the "Prompt editors" group: write prompt versions and labels, publish to workflows.

Moving the `production` label needs `move_production_label` on top; it is given separately,
on purpose (see launcher.models.PromptLabel).
"""

from django.db import migrations

PROMPT_EDITOR_CODENAMES = [
    "add_promptversion",
    "view_promptversion",
    "add_promptlabel",
    "change_promptlabel",
    "view_promptlabel",
    "view_promptlabelmove",
    "view_workflow",
    "change_workflow",  # publish a version to the workflow (an admin action)
]


def create_prompt_editors_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Prompt editors")
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="launcher", codename__in=PROMPT_EDITOR_CODENAMES
        )
    )


def remove_prompt_editors_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Prompt editors").delete()


class Migration(migrations.Migration):
    # 0002 created every permission up front (create_permissions), so they exist here.
    dependencies = [("launcher", "0002_operators_group")]

    operations = [migrations.RunPython(create_prompt_editors_group, remove_prompt_editors_group)]
