"""Sandbox URLs, mounted at /sandbox/ (so endpoints live under /sandbox/v1/...)."""

urlpatterns: list = []
