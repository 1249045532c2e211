"""Launcher URLs. Every page needs a login (LoginRequiredMiddleware); the only anonymous
URLs are /healthz, the webhook receiver and the sandbox API (which has its own Bearer auth)."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from launcher.views import health, launch, models, prompts, runs

urlpatterns = [
    path("", launch.launch, name="launch"),
    path("runs/", runs.run_list, name="run_list"),
    path("runs/<int:run_id>/", runs.run_detail, name="run_detail"),
    path("prompts/", prompts.prompt_index, name="prompt_index"),
    path("models/", models.model_list, name="model_list"),
    path("healthz", health.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("launcher.sandbox.urls")))
