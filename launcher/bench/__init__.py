"""The benchmark harness behind `manage.py bench` (and `make bench`).

Only the `bench` command imports this package; the production application never does (the
bench server's WSGI entry, `launcher.bench.wsgi`, is a separate module gunicorn is pointed at).
See docs/benchmarks.md for what is measured and how.
"""
