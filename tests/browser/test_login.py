import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_person_logs_in_and_sees_the_launch_page(page, sandbox, django_user_model):
    django_user_model.objects.create_superuser("demo", "demo@example.com", "demo")
    page.goto("/runs/")
    expect(page.get_by_role("heading", name="Log in to Launcher")).to_be_visible()
    log_in(page, "demo", "demo")
    page.goto("/")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_role("link", name="Runs")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_a_wrong_password_keeps_the_person_on_the_login_page(page, django_user_model):
    django_user_model.objects.create_user("demo", password="demo")
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    expect(page.get_by_label("Username")).to_have_value("demo")
