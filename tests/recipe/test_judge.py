"""The LLM judge against a small real OpenAI-compatible server on loopback: verdicts, the disk
cache, the key's discretion, retries, and the whole-request bound."""

from __future__ import annotations

import json
import logging
import re
import string
from dataclasses import replace

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from recipe.evaluation.judge import (
    JUDGE_PROMPT,
    JudgeError,
    LLMJudge,
    VerdictCache,
    build_judge,
    judge_prompt,
    parse_verdict,
)
from recipe.schema import JudgeConfig
from tests.loopback import TricklingServer, closed_port

KEY = "sk-test-0123456789abcdef-secret"
KEY_ENV = "RECIPE_TEST_JUDGE_KEY"
UNSURE = "A riddle nobody can judge?"  # the server answers neither True nor False to it

ROWS = [
    {"question": "Capital of France?", "golds": ["Paris"], "prediction": "paris"},
    {"question": "Capital of Spain?", "golds": ["Madrid"], "prediction": "Lisbon"},
    {"question": "Largest US city?", "golds": ["New York City", "NYC"], "prediction": " NYC "},
    {"question": "Who wrote Hamlet?", "golds": ["Shakespeare"], "prediction": None},
    {"question": "Who found penicillin?", "golds": ["Fleming"], "prediction": "   "},
    {"question": "Capital of France?", "golds": ["Paris"], "prediction": "paris"},  # repeat
    {"question": UNSURE, "golds": ["yes"], "prediction": "no"},
]
EXPECTED = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
ASKED = 4  # distinct rows with a prediction


def normalized(text: str) -> str:
    return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split())


def completion(content: str, model: str = "judge-model") -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish": "stop"}
        ],
    }


def judge_server(failures: int = 0, status: int = 503):
    """An OpenAI-compatible `POST /v1/chat/completions` that decides from the prompt whether the
    Predicted Answer matches one of the Golden Answer's alternatives. Its first `failures`
    requests get `status` with a body echoing the Authorization header (as some endpoints echo
    the key), so the client's scrubbing is tested too."""
    seen: dict = {"requests": 0, "authorization": [], "prompts": []}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        seen["requests"] += 1
        seen["authorization"].append(request.headers.get("authorization"))
        if seen["requests"] <= failures:
            echoed = f"try again; you sent {request.headers.get('authorization')}"
            return JSONResponse({"error": {"message": echoed}}, status_code=status)
        body = await request.json()
        prompt = body["messages"][0]["content"]
        seen["prompts"].append(prompt)
        question = re.search(r"^Question: (.*)$", prompt, re.M).group(1)
        golds = re.search(r"^Golden Answer: (.*)$", prompt, re.M).group(1).split(" or ")
        prediction = re.search(r"^Predicted Answer: (.*)$", prompt, re.M).group(1)
        if question == UNSURE:
            return completion("I cannot tell from the information given.", body["model"])
        match = normalized(prediction) in {normalized(g) for g in golds}
        return completion("True" if match else "False", body["model"])

    return app, seen


@pytest.fixture
def judge_cfg(tmp_path, monkeypatch) -> JudgeConfig:
    monkeypatch.setenv(KEY_ENV, KEY)
    return JudgeConfig(
        enabled=True,
        url="http://127.0.0.1:1/v1",
        model="judge-model",
        api_key_env=KEY_ENV,
        timeout_s=5.0,
        max_retries=2,
        backoff_s=0.01,
        cache=str(tmp_path / "judge_cache.jsonl"),
    )


def test_verdicts_are_right_and_a_rerun_asks_nothing(serve, judge_cfg):
    app, seen = judge_server()
    cfg = replace(judge_cfg, url=serve(app).url + "/v1/")  # a trailing slash is fine
    with LLMJudge(cfg) as judge:
        assert judge.verdicts(ROWS) == EXPECTED
        assert judge.requests == ASKED and judge.unparseable == 1
    assert seen["requests"] == ASKED
    asked = {(r["question"], tuple(r["golds"]), r["prediction"].strip()) for r in ROWS[:3]}
    asked.add((UNSURE, ("yes",), "no"))  # requests run concurrently: compare as sets
    assert set(seen["prompts"]) == {judge_prompt(q, g, p) for q, g, p in asked}
    assert all(p.startswith("Given a Question and its Golden Answer, ") for p in seen["prompts"])
    assert judge_prompt(*ROWS[2].values()).count("Golden Answer: New York City or NYC\n") == 1

    with LLMJudge(cfg) as rerun:
        assert rerun.verdicts(ROWS) == EXPECTED
        assert rerun.requests == 0
    assert seen["requests"] == ASKED

    entries = [json.loads(line) for line in open(cfg.cache)]
    assert len(entries) == ASKED
    unsure = [e for e in entries if e["question"] == UNSURE]
    assert unsure[0]["parsed"] is False and unsure[0]["verdict"] == 0.0
    assert unsure[0]["reply"].startswith("I cannot tell")


def test_the_key_is_sent_as_bearer_and_appears_nowhere_else(serve, judge_cfg, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    app, seen = judge_server(failures=1)
    cfg = replace(judge_cfg, url=serve(app).url + "/v1")
    with LLMJudge(cfg) as judge:
        assert judge.verdicts(ROWS[:3]) == EXPECTED[:3]
        assert KEY not in repr(judge)
    assert set(seen["authorization"]) == {f"Bearer {KEY}"}
    assert caplog.records  # the check below looked at something
    for record in caplog.records:
        assert KEY not in record.getMessage() and KEY not in str(record.args)
    assert KEY not in caplog.text
    assert KEY not in open(cfg.cache).read()

    # the error messages: retries exhausted on a server echoing the header, and a refused key
    for status in (503, 401):
        app, _ = judge_server(failures=10, status=status)
        with (
            LLMJudge(replace(cfg, url=serve(app).url + "/v1", max_retries=1)) as judge,
            pytest.raises(JudgeError) as refused,
        ):
            judge.verdicts([{"question": "Q?", "golds": ["a"], "prediction": "b"}])
        assert KEY not in str(refused.value) and KEY not in repr(refused.value)
        assert refused.value.__cause__ is None
    assert "refused the key in $" + KEY_ENV in str(refused.value)
    assert KEY not in caplog.text


@pytest.mark.parametrize("status", [503, 429])
def test_transient_refusals_are_retried_then_succeed(serve, judge_cfg, status):
    app, seen = judge_server(failures=2, status=status)
    with LLMJudge(replace(judge_cfg, url=serve(app).url + "/v1", max_retries=2)) as judge:
        assert judge.verdicts(ROWS[:1]) == [1.0]
        assert judge.requests == 3
    assert seen["requests"] == 3


def test_retries_run_out_with_a_clear_error_and_nothing_cached(serve, judge_cfg):
    app, seen = judge_server(failures=100)
    url = serve(app).url + "/v1"
    with LLMJudge(replace(judge_cfg, url=url, max_retries=1)) as judge:
        with pytest.raises(
            JudgeError,
            match=rf"judge endpoint {re.escape(url)}/chat/completions failed 2 attempts "
            r"\(ServerError: HTTP 503: .*try again; you sent Bearer \*\*\*",
        ):
            judge.verdicts(ROWS[:1])
        assert judge.requests == 2
    assert seen["requests"] == 2
    assert VerdictCache(judge_cfg.cache).verdicts == {}

    unreachable = replace(judge_cfg, url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=1)
    with LLMJudge(unreachable) as judge, pytest.raises(JudgeError, match="ConnectError"):
        judge.verdicts(ROWS[:1])


def test_refusals_and_foreign_replies_are_not_retried(serve, judge_cfg):
    seen = {"requests": 0}
    app = FastAPI()

    @app.post("/bad/chat/completions")
    def bad_request():
        seen["requests"] += 1
        return JSONResponse({"error": "unknown model"}, status_code=400)

    @app.post("/html/chat/completions")
    def not_a_completion():
        seen["requests"] += 1
        return PlainTextResponse("<html>welcome</html>")

    url = serve(app).url
    with LLMJudge(replace(judge_cfg, url=url + "/bad")) as judge:
        with pytest.raises(JudgeError, match=r"refused the request with HTTP 400.*unknown model"):
            judge.verdicts(ROWS[:1])
    with LLMJudge(replace(judge_cfg, url=url + "/html")) as judge:
        with pytest.raises(JudgeError, match=r"answered 200 with '<html>.*not a chat completion"):
            judge.verdicts(ROWS[:1])
    assert seen["requests"] == 2


def test_a_trickled_reply_is_cut_at_timeout_s(judge_cfg):
    # a byte every 20 ms never trips httpx's per-read timeout; the whole-request bound cuts it
    body = json.dumps(completion("True")).encode()
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    server = TricklingServer(reply)
    try:
        cfg = replace(judge_cfg, url=server.url + "/v1", timeout_s=0.3, max_retries=1)
        with LLMJudge(cfg) as judge:
            with pytest.raises(JudgeError, match="failed 2 attempts.*no complete reply within 0.3"):
                judge.verdicts(ROWS[:1])
    finally:
        server.close()
    assert len(server.sent) == 2
    assert max(server.sent) < len(reply) // 2, server.sent


def test_a_torn_last_cache_line_is_skipped_and_appends_stay_whole(serve, judge_cfg):
    app, seen = judge_server()
    cfg = replace(judge_cfg, url=serve(app).url + "/v1")
    with LLMJudge(cfg) as judge:
        judge.verdicts(ROWS[:2])
    with open(cfg.cache, "a") as f:
        f.write('{"model": "judge-model", "question": "Capital of Ita')  # a kill mid-write
    with LLMJudge(cfg) as judge:
        assert judge.verdicts(ROWS[:3]) == EXPECTED[:3]
        assert judge.requests == 1  # only the third row was not cached
    with LLMJudge(cfg) as judge:
        assert judge.verdicts(ROWS[:3]) == EXPECTED[:3] and judge.requests == 0
    lines = open(cfg.cache).read().splitlines()
    assert len(lines) == 4 and lines[2].endswith("Capital of Ita")
    assert json.loads(lines[3])["question"] == "Largest US city?"
    assert seen["requests"] == 3


def test_the_judge_is_off_by_default_and_needs_its_key(judge_cfg, monkeypatch):
    assert JudgeConfig().enabled is False
    assert build_judge(replace(judge_cfg, enabled=False)) is None
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(JudgeError, match=rf"\${KEY_ENV}, which is not set"):
        LLMJudge(judge_cfg)
    with pytest.raises(JudgeError, match="judge.url is not set"):
        LLMJudge(replace(judge_cfg, url=None))


@pytest.mark.parametrize(
    "reply, verdict",
    [
        ("True", 1.0),
        ("False", 0.0),
        ("**True**.", 1.0),
        ("false\n", 0.0),
        ("The prediction matches the golden answer: True", 1.0),
        ("False. The prediction is not true to the golden answer.", 0.0),
        ("It is true or false depending on the reading.", None),
        ("Correct", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_the_prompt_is_r1_searchers():
    assert JUDGE_PROMPT.endswith("Predicted Answer: {prediction}\n    ")
    assert judge_prompt("Q?", ["A", "B"], "C") == JUDGE_PROMPT.format(
        question="Q?", reference="A or B", prediction="C"
    )
