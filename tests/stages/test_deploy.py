"""The deploy stage: its checks fed the recorded golden result (pass) and wrong ones (each fails), and `run` against
stand-in servers (no vLLM): a gate that does not start and a server that dies on its first request are recorded
as failed gates, and the stage fails through its checks when the notebook writes the result."""

from __future__ import annotations

import json
import shlex
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import DATA, by_id, tiny_study, typed_result
from studykit.engine.server import ServerError
from studykit.stages.deploy import checks, stage
from studykit.stages.deploy.params import DeployParams

GOLDEN = DATA / "runs" / "golden" / "results" / "deploy.json"
SERVED = "smollm2-135m-instruct"  # model.served_model_name of the golden run's params.yaml
BOOKKEEPING = ("stage", "study", "status", "failures", "started_utc", "ended_utc", "wall_seconds", "checks")


def deploy_result(edit=None, **params):
    """The golden run's deploy result, typed; `edit` changes its dict first (a wrong result)."""
    data = {k: v for k, v in json.loads(GOLDEN.read_text()).items() if k not in BOOKKEEPING}
    data["served_model_name"] = SERVED
    if edit:
        edit(data)
    return DeployParams(**params), typed_result("deploy", data)


def test_recorded_deploy_passes():
    p, result = deploy_result()
    res = checks.checks(p, result)
    assert [c.status for c in res] == ["passed"] * len(res), [(c.id, c.detail) for c in res]
    assert [(c.id, c.subject) for c in res] == [
        ("deploy.dummy_gate", None), ("deploy.real_gate", None), ("deploy.gate_load_format", "dummy-gate"),
        ("deploy.gate_load_format", "real-gate"), ("deploy.smoke_request_matches_params", None),
        ("deploy.smoke_chat", None), ("deploy.smoke_chat_within_max_tokens", None),
        ("deploy.models_lists_served_name", None)]


def test_dummy_gate_that_did_not_start_fails():
    def no_start(d):
        d["dummy_gate"].update(passed=False, ready_seconds=None, error="server exited with 1\nlast lines: ...")
    p, result = deploy_result(no_start)
    (c,) = by_id(checks.checks(p, result), "deploy.dummy_gate")
    assert c.status == "failed" and c.detail == "dummy-gate did not start: server exited with 1"


def test_real_gate_dying_on_first_request_fails_with_root_cause_and_the_rest_does_not_run():
    def dies(d):
        d["real_gate"].update(passed=False, error="the server started but its first requests failed: HTTP 500\n"
                                                  "root cause in logs/deploy-real-gate.log: KeyError: 'x'")
        d.update(smoke_chat=None, models=[])
    p, result = deploy_result(dies)
    res = checks.checks(p, result)
    (gate,) = by_id(res, "deploy.real_gate")
    assert gate.status == "failed" and gate.detail.startswith("real-gate failed: the server started")
    assert gate.detail.endswith("; root cause in logs/deploy-real-gate.log: KeyError: 'x'")
    for cid in ("deploy.smoke_request_matches_params", "deploy.smoke_chat", "deploy.smoke_chat_within_max_tokens",
                "deploy.models_lists_served_name"):
        (c,) = by_id(res, cid)
        assert c.status == "not_run" and "real-weight gate did not pass" in c.detail


def test_gate_asked_for_but_not_recorded_fails_and_gate_not_asked_for_does_not_run():
    p, result = deploy_result(lambda d: d.update(dummy_gate=None))
    (c,) = by_id(checks.checks(p, result), "deploy.dummy_gate")
    assert c.status == "failed" and "records no gate" in c.detail
    p, result = deploy_result(lambda d: d.update(dummy_gate=None), dummy_gate=False)
    (c,) = by_id(checks.checks(p, result), "deploy.dummy_gate")
    assert c.status == "not_run" and "dummy_gate is false" in c.detail


def test_gate_command_loading_other_weights_fails():
    def overridden(d):
        d["dummy_gate"]["command"] += " --load-format auto"  # server.extra_args after ours: vLLM keeps the last
        d["real_gate"]["command"] += " --load-format dummy"
    p, result = deploy_result(overridden)
    res = checks.checks(p, result)
    (dummy,) = by_id(res, "deploy.gate_load_format", "dummy-gate")
    (real,) = by_id(res, "deploy.gate_load_format", "real-gate")
    assert (dummy.status, dummy.expected, dummy.actual) == ("failed", "dummy", "auto")
    assert (real.status, real.expected, real.actual) == ("failed", "auto", "dummy")


def test_smoke_request_other_than_the_params_fails():
    p, result = deploy_result(smoke_prompt="say hello")
    (c,) = by_id(checks.checks(p, result), "deploy.smoke_request_matches_params")
    assert c.status == "failed" and c.actual["content"] == "say hi" and c.expected["content"] == "say hello"


def test_empty_smoke_reply_fails():
    p, result = deploy_result(lambda d: d["smoke_chat"].update(reply="  \n"))
    (c,) = by_id(checks.checks(p, result), "deploy.smoke_chat")
    assert c.status == "failed" and c.detail == "the reply is empty"


def test_smoke_reply_longer_than_max_completion_tokens_fails_and_without_usage_does_not_run():
    p, result = deploy_result(lambda d: d["smoke_chat"]["usage"].update(completion_tokens=17))
    (c,) = by_id(checks.checks(p, result), "deploy.smoke_chat_within_max_tokens")
    assert (c.status, c.actual) == ("failed", 17)
    p, result = deploy_result(lambda d: d["smoke_chat"].update(usage=None))
    (c,) = by_id(checks.checks(p, result), "deploy.smoke_chat_within_max_tokens")
    assert c.status == "not_run"


def test_models_without_the_served_name_fails():
    p, result = deploy_result(lambda d: d["models"][0].update(id="other"))
    (c,) = by_id(checks.checks(p, result), "deploy.models_lists_served_name")
    assert c.status == "failed" and c.actual == ["other"] and c.expected == SERVED


# --- run() against stand-in servers ------------------------------------------------------------------------------


class _Api(BaseHTTPRequestHandler):
    models_status = 200

    def _send(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.models_status != 200:
            self._send(self.models_status, {"error": "engine dead"})
        else:
            self._send(200, {"object": "list", "data": [{"id": SERVED, "object": "model"}]})

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(200, {"choices": [{"message": {"content": "Hello!"}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33}})

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Api", (_Api,), {}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class FakeServer:
    """What the stage uses of a VllmServer: a `with` that starts (or raises ServerError), its label, command,
    log, time to ready and base URL."""

    def __init__(self, ctx, step, base_url: str, start_error: str | None = None, log_text: str = ""):
        self.label, self.command, self.base_url = step.label, shlex.join(step.argv), base_url
        self.log_path = ctx.layout.logs / f"deploy-{step.label}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text(log_text)
        self.ready_seconds = None if start_error else 2.5
        self.start_error, self.stopped = start_error, False

    def __enter__(self):
        if self.start_error:
            raise ServerError(self.start_error)
        return self

    def __exit__(self, *exc):
        self.stopped = True

    def stop(self):
        self.stopped = True


def _ctx(tmp_path, api, servers: dict, **kwargs):
    from studykit.runner.context import open_stage

    ctx = open_stage("deploy", str(tmp_path / "run"), str(tiny_study(tmp_path)))
    ctx._model_dir = tmp_path  # no checkpoint needed: the servers are stand-ins
    url = f"http://127.0.0.1:{api.server_address[1]}"

    def server_for(step):
        servers[step.label] = FakeServer(ctx, step, url, **kwargs.get(step.label, {}))
        return servers[step.label]

    ctx.server_for = server_for
    return ctx


def test_run_records_both_gates_chat_and_models(tmp_path, api):
    servers = {}
    ctx = _ctx(tmp_path, api, servers)
    p = ctx.params({})
    result = stage.run(ctx, p)
    assert result.dummy_gate.passed and result.dummy_gate.load_format == "dummy"
    assert "--load-format dummy" in result.dummy_gate.command and "--load-format" not in result.real_gate.command
    assert result.real_gate.ready_seconds == 2.5 and result.server == "real-gate"
    assert result.smoke_chat.reply == "Hello!" and result.smoke_chat.request["messages"][0]["content"] == "say hi"
    assert [m["id"] for m in result.models] == [SERVED] and result.served_model_name == SERVED
    result.checks = checks.checks(p, result)
    assert {c.status for c in result.checks} == {"passed"}, [(c.id, c.detail) for c in result.checks]
    ctx.write(result)
    doc = json.loads((tmp_path / "run" / "results" / "deploy.json").read_text())
    assert doc["status"] == "passed" and doc["model_dir"] == str(tmp_path)


def test_run_with_a_gate_that_does_not_start_fails_the_stage_on_write(tmp_path, api):
    from studykit.runner.context import StageFailed

    ctx = _ctx(tmp_path, api, {}, **{"dummy-gate": {"start_error": "vllm serve exited with 1 before /health"}})
    p = ctx.params({})
    result = stage.run(ctx, p)
    assert not result.dummy_gate.passed and result.real_gate.passed  # the real gate still ran
    result.checks = checks.checks(p, result)
    with pytest.raises(StageFailed, match="dummy-gate did not start: vllm serve exited with 1"):
        ctx.write(result)
    doc = json.loads((tmp_path / "run" / "results" / "deploy.json").read_text())
    assert doc["status"] == "failed" and doc["dummy_gate"]["error"].startswith("vllm serve exited")


def test_run_server_dying_on_first_request_names_the_engines_error(tmp_path, api):
    from studykit.runner.context import StageFailed

    api.RequestHandlerClass.models_status = 500
    log = ("INFO 11-26 11:05:20 [api_server.py:1] Starting vLLM API server\n"
           "ERROR 11-26 11:05:21 [core.py:2] EngineCore encountered a fatal error.\n"
           "Traceback (most recent call last):\n"
           '  File "core.py", line 2, in run\n'
           "KeyError: 'pp_rank'\n")
    servers = {}
    ctx = _ctx(tmp_path, api, servers, **{"real-gate": {"log_text": log}})
    p = ctx.params({"dummy_gate": False})
    result = stage.run(ctx, p)
    gate = result.real_gate
    assert not gate.passed and gate.ready_seconds == 2.5 and servers["real-gate"].stopped
    assert "HTTP 500" in gate.error and gate.error.endswith("root cause in logs/deploy-real-gate.log: KeyError: 'pp_rank'")
    assert result.dummy_gate is None and result.smoke_chat is None and result.models == []
    result.checks = checks.checks(p, result)
    with pytest.raises(StageFailed):
        ctx.write(result)
    doc = json.loads((tmp_path / "run" / "results" / "deploy.json").read_text())
    assert any("root cause" in f for f in doc["failures"])  # what the PP=2 finding test reads
