"""The evidence a run leaves, made readable: its attempts and history (`attempts`), the agent's
steps as a timeline (`timeline`), inputs and usage as a person reads them (`readable`), and the
comparison of any two runs or attempts (`compare`). Read side only: the writes (keeping an
attempt, recording history) are in `launcher.services.runs` and `launcher.services.run_events`.
"""
