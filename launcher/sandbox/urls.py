"""Sandbox URLs, mounted at /sandbox/ (so endpoints live under /sandbox/v1/...).

Paths carry no trailing slash, like the real API's; ids are matched as strings so that a
malformed one gets FastAPI's 422 instead of Django's 404 page.
"""

from django.urls import path, re_path

from launcher.sandbox import views

app_name = "sandbox"

urlpatterns = [
    path("v1/workflows", views.workflow_list, name="workflow_list"),
    path("v1/workflows/<str:workflow_id>", views.workflow_detail, name="workflow_detail"),
    path(
        "v1/workflows/<str:workflow_id>/versions",
        views.workflow_versions,
        name="workflow_versions",
    ),
    path(
        "v1/model-configurations",
        views.model_configuration_list,
        name="model_configuration_list",
    ),
    path(
        "v1/model-configurations/<str:model_configuration_id>",
        views.model_configuration_detail,
        name="model_configuration_detail",
    ),
    path("v1/runs", views.run_collection, name="run_collection"),
    path("v1/runs/bulk", views.run_bulk_create, name="run_bulk_create"),
    path("v1/runs/<str:run_id>", views.run_detail_or_chain, name="run_detail"),
    path("v1/runs/<str:run_id>/retry", views.run_retry, name="run_retry"),
    path("v1/runs/<str:run_id>/llm-costs", views.run_llm_costs, name="run_llm_costs"),
    path("v1/run-attachments", views.attachment_collection, name="attachment_list"),
    path(
        "v1/run-attachments/<str:attachment_id>",
        views.attachment_detail,
        name="attachment_detail",
    ),
    path(
        "v1/run-attachments/<str:attachment_id>/download-url",
        views.attachment_download_url,
        name="attachment_download_url",
    ),
    path(
        "v1/run-attachments/<str:attachment_id>/download",
        views.attachment_download,
        name="attachment_download",
    ),
    path("files/<str:token>", views.attachment_file, name="attachment_file"),
    re_path(r"^v1/(?P<rest>.*)$", views.unknown_endpoint, name="unknown_endpoint"),
]
