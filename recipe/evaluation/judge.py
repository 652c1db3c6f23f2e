"""The optional LLM-as-judge: asks an OpenAI-compatible endpoint whether a prediction matches
the golds, with R1-Searcher's judge prompt.

The prompt is R1-Searcher's, verbatim (RUCAIBox/R1-Searcher, `evaluation/
metric_calc_gpt_as_judge.py`, commit 631167cbb3c2464f805730e3e364a690f5b136d4, the `prompt` in
`process_one_sample`; that script sends it as one user message to gpt-4o-mini with
`max_tokens=1024` and reads the reply "True" / "False"). Their data sets carry one answer per
question; several golds (aliases) are joined with " or " in the Golden Answer line.

`LLMJudge(cfg).verdicts(rows)` returns 1.0 / 0.0 per row ({"question", "golds", "prediction"}):
- a None or blank prediction is 0.0 without a request;
- verdicts are cached on disk in an append-only jsonl (`judge.cache`) keyed by (model,
  question, golds, prediction), so a rerun asks only for rows it has not seen; a line cut short
  by a kill is skipped on reading, and the next append starts on a fresh line;
- every attempt is bounded as a whole by `timeout_s` (`recipe.bounded_http`: a server that
  trickles its reply cannot hold the evaluation); transport errors, timeouts, 5xx and 429 are
  retried `max_retries` times with exponential backoff, then `JudgeError` names the endpoint;
  another 4xx or a 200 that is not a chat completion is a `JudgeError` at once (asking again
  would get the same answer);
- a reply that is neither True nor False (see `parse_verdict`) counts as 0.0, since the judge
  did not affirm the prediction; it is counted in `unparseable`, logged, and cached with
  `"parsed": false` and the reply, so reruns give the same table (delete those lines to ask
  again);
- the key is read from the environment variable `api_key_env` and sent only as the
  `Authorization: Bearer` header: it is in no log record, no error message (replies quoted in
  errors are scrubbed of it) and not in the cache.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import httpx

from recipe.bounded_http import (
    BackgroundLoop,
    RetriesExhausted,
    ServerError,
    bounded,
    with_retries,
)
from recipe.exit_status import STOPPED
from recipe.schema import JudgeConfig

log = logging.getLogger(__name__)

# Verbatim, trailing indentation included (the source's triple-quoted string ends with it).
JUDGE_PROMPT = (
    "Given a Question and its Golden Answer, verify whether the Predicted Answer is correct. "
    "The prediction is correct if it fully aligns with the meaning and key information of the "
    "Golden Answer. Respond with True if the prediction is correct and False otherwise.\n"
    "\n"
    "Question: {question}\n"
    "Golden Answer: {reference}\n"
    "Predicted Answer: {prediction}\n"
    "    "
)
JUDGE_MAX_TOKENS = 1024  # R1-Searcher's request; the verdict is one word
GOLDS_SEPARATOR = " or "
DEFAULT_CONCURRENCY = 8  # requests in flight at once; the verdicts do not depend on it
_QUOTED_CHARS = 300  # how much of a refusal's body an error quotes
_VERDICT_WORD = re.compile(r"\b(true|false)\b", re.IGNORECASE)
_LEADING_WORD = re.compile(r"[^a-z]*([a-z]+)")


class JudgeError(RuntimeError):
    """The judge endpoint failed (unreachable, kept failing, refused, or answered nonsense);
    the message names the endpoint and never holds the key."""

    exit_status = STOPPED
    exit_note = "the judge failed; rerun to resume (the predictions made so far are kept)"


def judge_prompt(question: str, golds: Sequence[str], prediction: str) -> str:
    reference = GOLDS_SEPARATOR.join(str(g) for g in golds)
    return JUDGE_PROMPT.format(question=question, reference=reference, prediction=prediction)


def parse_verdict(reply: str | None) -> float | None:
    """1.0 for True, 0.0 for False, None when the reply says neither (or both).

    The first word decides when it is true / false ("True.", "**False**"); otherwise the
    reply must hold exactly one of the two words ("The prediction is correct: True").
    """
    if not reply:
        return None
    leading = _LEADING_WORD.match(reply.lower())
    if leading and leading.group(1) in ("true", "false"):
        return 1.0 if leading.group(1) == "true" else 0.0
    words = {w.lower() for w in _VERDICT_WORD.findall(reply)}
    if len(words) != 1:
        return None
    return 1.0 if words == {"true"} else 0.0


def _cache_key(model: str, question: str, golds: Sequence[str], prediction: str) -> str:
    return json.dumps([model, question, list(golds), prediction], ensure_ascii=False)


class VerdictCache:
    """Verdicts by key, read from and appended to a jsonl file (None: in memory only)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.verdicts: dict[str, float] = {}
        self._starts_on_fresh_line = True
        if self.path is not None and self.path.is_file():
            self._load(self.path)

    def _load(self, path: Path) -> None:
        data = path.read_bytes()
        self._starts_on_fresh_line = not data or data.endswith(b"\n")
        unreadable = 0
        for line in data.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = _cache_key(
                    entry["model"], entry["question"], entry["golds"], entry["prediction"]
                )
                self.verdicts[key] = float(entry["verdict"])
            except (ValueError, KeyError, TypeError):
                unreadable += 1  # a line cut short by a kill, most likely the last
        if unreadable:
            log.warning("judge cache %s: skipped %d unreadable line(s)", path, unreadable)

    def get(self, key: str) -> float | None:
        return self.verdicts.get(key)

    def add(self, key: str, entry: dict) -> None:
        self.verdicts[key] = float(entry["verdict"])
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        if not self._starts_on_fresh_line:
            line = "\n" + line  # the torn line stays unreadable; this one stays whole
            self._starts_on_fresh_line = True
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)


class LLMJudge:
    """The judge of one endpoint and model; see the module docstring. Close it when done (or
    use it as a context manager)."""

    def __init__(self, cfg: JudgeConfig, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        if not cfg.url:
            raise JudgeError("judge.url is not set: give the endpoint's OpenAI-compatible base URL")
        if cfg.timeout_s <= 0 or cfg.max_retries < 0 or cfg.backoff_s < 0 or concurrency < 1:
            raise ValueError(
                "LLMJudge needs timeout_s > 0, max_retries >= 0, backoff_s >= 0 and "
                f"concurrency >= 1; got {cfg.timeout_s}, {cfg.max_retries}, {cfg.backoff_s}, "
                f"{concurrency}"
            )
        key = os.environ.get(cfg.api_key_env, "")
        if not key:
            raise JudgeError(
                f"judge.api_key_env names ${cfg.api_key_env}, which is not set; export the "
                "endpoint's key there (any value, e.g. EMPTY, for an endpoint without keys)"
            )
        self.cfg = cfg
        self.endpoint = cfg.url.rstrip("/") + "/chat/completions"
        self.concurrency = concurrency
        self.cache = VerdictCache(cfg.cache)
        self.requests = 0  # attempts sent, retries included
        self.unparseable = 0
        self._key = key  # only for the header and for scrubbing quoted replies
        self._loop = BackgroundLoop("judge-client")
        self._client = self._loop.run(self._open_client(key))

    async def _open_client(self, key: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.AsyncClient(headers=headers, timeout=self.cfg.timeout_s)

    def __enter__(self) -> LLMJudge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LLMJudge(endpoint={self.endpoint!r}, model={self.cfg.model!r})"

    def close(self) -> None:
        if self._loop.closed:
            return
        self._loop.run(self._client.aclose(), timeout_s=self.cfg.timeout_s)
        self._loop.close()

    # ---------------------------------------------------------------------------- verdicts

    def verdicts(self, rows: Sequence[dict]) -> list[float]:
        """1.0 / 0.0 per row, in order; cached rows and blank predictions make no request."""
        keys: list[str | None] = []
        to_ask: dict[str, dict] = {}
        for row in rows:
            prediction = (row.get("prediction") or "").strip()
            if not prediction:
                keys.append(None)
                continue
            question, golds = str(row["question"]), [str(g) for g in row["golds"]]
            key = _cache_key(self.cfg.model, question, golds, prediction)
            keys.append(key)
            if self.cache.get(key) is None:
                to_ask[key] = {"question": question, "golds": golds, "prediction": prediction}
        cached = sum(k is not None for k in keys) - len(to_ask)
        log.info(
            "judge %s: %d rows, %d from the cache, %d to ask",
            self.endpoint,
            len(rows),
            cached,
            len(to_ask),
        )
        if to_ask:
            unparseable_before = self.unparseable
            self._loop.run(self._ask_all(to_ask))
            if self.unparseable > unparseable_before:
                log.warning(
                    "judge %s: %d reply(ies) were neither True nor False and count as 0.0; "
                    "they are in %s with parsed: false",
                    self.endpoint,
                    self.unparseable - unparseable_before,
                    self.cfg.cache,
                )
        return [0.0 if k is None else self.cache.verdicts[k] for k in keys]

    async def _ask_all(self, to_ask: dict[str, dict]) -> None:
        slots = asyncio.Semaphore(self.concurrency)

        async def ask(key: str, item: dict) -> None:
            async with slots:
                reply = await self._reply(judge_prompt(**item))
            verdict = parse_verdict(reply)
            if verdict is None:
                self.unparseable += 1
            entry = {"model": self.cfg.model, **item, "verdict": verdict or 0.0}
            self.cache.add(key, entry | {"parsed": verdict is not None, "reply": reply})

        # A TaskGroup cancels the other requests when one fails for good.
        try:
            async with asyncio.TaskGroup() as group:
                for key, item in to_ask.items():
                    group.create_task(ask(key, item))
        except* JudgeError as failures:
            raise failures.exceptions[0] from None

    async def _reply(self, prompt: str) -> str | None:
        """The judge's reply text, after at most `max_retries` retries."""
        body = {
            "model": self.cfg.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": JUDGE_MAX_TOKENS,
        }
        attempt = functools.partial(self._attempt, body)
        try:
            response = await with_retries(attempt, self.cfg.max_retries, self.cfg.backoff_s)
        except RetriesExhausted as e:
            raise JudgeError(
                f"judge endpoint {self.endpoint} failed {e.attempts} attempts "
                f"({type(e.last).__name__}: {self._scrub(str(e.last))})"
            ) from None
        return self._content_of(response)

    async def _attempt(self, body: dict) -> httpx.Response:
        self.requests += 1
        response = await bounded(self._client.post(self.endpoint, json=body), self.cfg.timeout_s)
        status = response.status_code
        if status >= 500 or status == 429:
            raise ServerError(f"HTTP {status}: {self._quote(response)}")
        if status in (401, 403):
            raise JudgeError(
                f"judge endpoint {self.endpoint} refused the key in ${self.cfg.api_key_env} "
                f"(HTTP {status})"
            )  # the body is not quoted: some endpoints echo part of the key
        if status >= 400:
            raise JudgeError(
                f"judge endpoint {self.endpoint} refused the request with HTTP {status}: "
                f"{self._quote(response)}"
            )
        return response

    def _content_of(self, response: httpx.Response) -> str | None:
        try:
            message = response.json()["choices"][0]["message"]
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise JudgeError(
                f"judge endpoint {self.endpoint} answered {response.status_code} with "
                f"{self._quote(response)!r}, not a chat completion; is judge.url the API's base "
                "URL (the part before /chat/completions)?"
            ) from None
        return content if isinstance(content, str) else None

    def _quote(self, response: httpx.Response) -> str:
        return self._scrub(response.text[:_QUOTED_CHARS])

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***")


def build_judge(cfg: JudgeConfig, concurrency: int = DEFAULT_CONCURRENCY) -> LLMJudge | None:
    """The judge when `judge.enabled`, else None (the judge is off by default)."""
    return LLMJudge(cfg, concurrency) if cfg.enabled else None
