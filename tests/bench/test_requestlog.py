"""Reading the bench server's request log."""

from launcher.bench.requestlog import read_log, upstream_calls

RUN = "0b6f7a5e-4d1c-4f7e-9a2b-3c4d5e6f7a8b"


def test_it_reads_every_process_file_within_the_window(tmp_path):
    (tmp_path / "requests-1.log").write_text(
        f"100.0 upstream - GET 200 3.5 -1 - /sandbox/v1/runs/{RUN}\n"
        "101.0 upstream - GET 200 4.0 -1 - /sandbox/v1/runs\n"
    )
    (tmp_path / "requests-2.log").write_text(
        "102.0 traced list50 GET 200 20.0 7 - /runs/\n"
        f"103.0 upstream - POST 201 6.0 -1 key-9 /sandbox/v1/runs\n"
        f"104.0 upstream - GET 200 1.0 -1 - /sandbox/v1/runs/{RUN}/llm-costs\n"
        "a line cut short\n"
    )

    window = read_log(tmp_path, since=100.5, until=103.5)

    assert [record.at for record in sorted(window, key=lambda r: r.at)] == [101.0, 102.0, 103.0]
    assert upstream_calls(read_log(tmp_path)) == {
        "get_run": 1,
        "list_runs": 1,
        "create_run": 1,
        f"GET /sandbox/v1/runs/{RUN}/llm-costs": 1,
    }
    traced = [record for record in window if record.kind == "traced"]
    assert traced[0].queries == 7
    assert traced[0].label == "list50"
