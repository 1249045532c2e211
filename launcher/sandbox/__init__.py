"""The sandbox: a local implementation of the Cyberdesk API subset, served over real HTTP.

It never imports launcher code (tests enforce it): the launcher reaches it only through its
normal HTTP client, exactly as it reaches the real API.
"""
