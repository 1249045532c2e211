"""The property-based tests' profile and their tally (tests/hardening/fuzz.py)."""

from tests.hardening import fuzz


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    figures = fuzz.report()
    if not figures["requests"]:
        return
    terminalreporter.write_sep("-", "property-based tests (issue 15)")
    terminalreporter.write_line(
        f"profile {figures['profile']}: {figures['examples']} examples, "
        f"{figures['requests']} requests, 500s: {figures['server_errors']}, "
        f"secrets echoed: {figures['secrets_echoed']}"
    )
    fuzz.write_report()
