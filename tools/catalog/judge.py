"""The LLM judge of task relevance (METHOD §2): explain → verify → judge each feature from its top spans.

Per feature: (a) the chat model explains the feature from its top spans, or says "Cannot Tell";
(b) it verifies the explanation against the spans; (c) it judges relevance to a task guideline.
Judges end with `Final Decision: [[Yes/Probably/Maybe/No]]`. A reply without one gets one follow-up
turn asking for the decision alone (a model with `choose`, like the local one, scores the four words
instead of generating); when that still gives none, the decision is No and the reply is kept as the
reason. A feature is relevant iff (b) and (c) are Yes/Probably/Maybe and neither the explanation nor
the relevance analysis says "cannot tell". Verification and relevance are skipped once the outcome
is settled (relevant False, reason kept).

Every call goes through JudgeCache, keyed by the judge model name and the full rendered messages
(templates, guideline and spans included), so the same inputs are never asked twice and an
interrupted run resumes where it stopped. The feature id is not in the prompt: features with
identical spans share answers. Transient faults are retried by the chat client (see fac.tools.llm.client).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, get_args, runtime_checkable

from langchain_core.exceptions import ModelError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from fac.prompts import render
from fac.tools.catalog.records import Decision, FeatureEvidence, FeatureRecord
from fac.tools.errors import ConfigError
from fac.tools.llm.client import chat_name, first_line, is_rejection, translate_error, usage
from fac.tools.sqlite_wal import connect_wal

if TYPE_CHECKING:
    from fac.tools.space.models import LoadedModel

logger = logging.getLogger(__name__)

DECISIONS: tuple[Decision, ...] = get_args(Decision)
ACCEPTING: frozenset[Decision] = frozenset({"Yes", "Probably", "Maybe"})
CANNOT_TELL = "cannot tell"
MAX_REASON_CHARS = 2000
MAX_EXPLANATION_CHARS = 500
REJECTIONS_BEFORE_ABORT = 3  # rejected requests with no success at all: the set-up is wrong, not the spans
FOLLOW_UP_MAX_TOKENS = 8  # the decision follow-up wants one word
FOLLOW_UP_MARK = "Final Decision (asked again):"

_WORD = r"(yes|probably|maybe|no)"
_BRACKETED = re.compile(r"\[\[\s*[*_`'\"]*\s*" + _WORD + r"\s*[*_`'\".!]*\s*\]\]", re.IGNORECASE)
_AFTER_LABEL = re.compile(r"decision\W{0,12}?(?:is\W{0,6})?\b" + _WORD + r"\b(?!\s*[/|])", re.IGNORECASE)
_BARE = re.compile(r"^[\W_]*" + _WORD + r"[\W_]*$", re.IGNORECASE)
_LABEL = re.compile(r"^\W*(?:feature\s+)?(?:explanation|description|answer|summary)\s*[:\-–]\s*", re.IGNORECASE)


@runtime_checkable
class ChoiceModel(Protocol):
    """A chat model that can score a closed set of replies (fac.tools.llm.local_chat.LocalChatModel)."""

    def choose(self, messages: Sequence[BaseMessage], choices: Sequence[str]) -> AIMessage: ...


@dataclass(frozen=True)
class FeatureCandidate:
    """A feature to judge: its id, share of anchor samples it fires on, and top evidence."""

    feature: int
    activation_rate: float
    evidence: tuple[FeatureEvidence, ...]


@dataclass(frozen=True)
class CachedReply:
    """A chat reply as stored: its text and the tokens it cost when first asked."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class JudgeStats:
    """Counts of one or more judge runs; tokens are those actually spent (cache hits cost nothing)."""

    features: int = 0
    relevant: int = 0
    calls: int = 0
    cache_hits: int = 0
    rejected: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    reply TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID
"""


class JudgeCache:
    """Chat replies in one SQLite file (WAL), keyed by sha256 of the model name and the full messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = connect_wal(path, _SCHEMA, synchronous="FULL")  # SQLite's default: a paid answer is kept

    @staticmethod
    def key(model_name: str, messages: Sequence[BaseMessage]) -> str:
        """sha256 of the model name and every message's role and full text."""
        canonical = json.dumps([model_name, [[m.type, str(m.text)] for m in messages]], ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def get(self, key: str) -> CachedReply | None:
        with self._lock:
            row = self._db.execute("SELECT reply, input_tokens, output_tokens FROM replies WHERE key = ?",
                                   [key]).fetchone()
        return CachedReply(row[0], int(row[1]), int(row[2])) if row else None

    def put(self, key: str, reply: CachedReply, model_name: str = "") -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?)",
                             [key, model_name, reply.text, reply.input_tokens, reply.output_tokens, time.time()])
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM replies").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def parse_decision(text: str) -> Decision | None:
    """The last Yes/Probably/Maybe/No decision in `text`: `[[Yes]]`, `Final Decision: **maybe**`, a bare word.

    An echoed option list such as `[[Yes/Probably/Maybe/No]]` is not a decision; None when there is none.
    """
    found = [(m.start(1), m.group(1)) for m in _BRACKETED.finditer(text)]
    found += [(m.start(1), m.group(1)) for m in _AFTER_LABEL.finditer(text)]
    if not found:
        bare = _BARE.match(text.strip())
        if bare is None:
            return None
        found = [(0, bare.group(1))]
    word = max(found)[1].capitalize()
    return next(d for d in DECISIONS if d == word)


def parse_one_word_answer(text: str) -> Decision | None:
    """The decision in a reply to "answer with one word": as parse_decision, else the only decision word in it.

    "I will choose one word: Maybe." is Maybe; "No, Probably." names two and is None.
    """
    decision = parse_decision(text)
    if decision is not None:
        return decision
    words = {m.group(1).capitalize() for m in re.finditer(r"\b" + _WORD + r"\b", text, re.IGNORECASE)}
    return next(d for d in DECISIONS if d in words) if len(words) == 1 else None


def _normalise(text: str) -> str:
    return " ".join(text.lower().replace("can't", "cannot").replace("can not", "cannot").split())


def says_cannot_tell(text: str) -> bool:
    """The text says "cannot tell" anywhere (the paper's test on a relevance analysis)."""
    return CANNOT_TELL in _normalise(text)


def is_cannot_tell(explanation: str) -> bool:
    """The explanation is a refusal ("Cannot Tell.", "I cannot tell ..."), not a feature about that phrase."""
    return re.sub(r"^[\W_]*(?:i\s+)?", "", _normalise(explanation)).startswith(CANNOT_TELL)


def _trim(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def clean_explanation(reply: str) -> str:
    """The explanation in a reply: its first paragraph, label removed, whitespace collapsed."""
    paragraph = next((p for p in re.split(r"\n\s*\n", reply.strip()) if p.strip()), "")
    return _trim(" ".join(_LABEL.sub("", paragraph.strip()).split()), MAX_EXPLANATION_CHARS)


def prepare_spans(evidence: Sequence[FeatureEvidence], max_spans: int, max_span_chars: int) -> list[str]:
    """Distinct spans by descending score, newlines shown as \\n, each cut to its last `max_span_chars`."""
    spans: list[str] = []
    for ev in sorted(evidence, key=lambda e: -e.score):
        span = ev.span.replace("\r\n", "\n").replace("\n", "\\n").replace("\t", " ").strip()
        if len(span) > max_span_chars:
            span = "…" + span[-max_span_chars:].lstrip()
        if span and span not in spans:
            spans.append(span)
        if len(spans) == max_spans:
            break
    return spans


def decision_follow_up(messages: Sequence[BaseMessage], reply: str) -> list[BaseMessage]:
    """The conversation asking once more for the decision alone, after a reply that gave none."""
    return [*messages, AIMessage(reply), HumanMessage(render("judge.decision.user"))]


def ask_for_decision(chat: BaseChatModel, follow_up: list[BaseMessage]) -> Callable[[], BaseMessage]:
    """The follow-up call: a local model scores the four decision words, an endpoint answers in a few tokens."""
    if isinstance(chat, ChoiceModel):
        chooser = chat
        return lambda: chooser.choose(follow_up, DECISIONS)
    return lambda: chat.invoke(follow_up, max_tokens=FOLLOW_UP_MAX_TOKENS)


class _Rejected(Exception):
    """The endpoint rejected this one request (invalid, too long, refused)."""


@dataclass(frozen=True)
class _Judge:
    chat: BaseChatModel
    cache: JudgeCache
    model_name: str
    task: str
    guideline: str
    stats: JudgeStats

    def ask(self, step: str, system_vars: dict[str, str], user_vars: dict[str, object]) -> str:
        """The reply to one judge step; for verify/relevance it ends with a decision whenever one can be had."""
        messages: list[BaseMessage] = [SystemMessage(render(f"judge.{step}.system", **system_vars)),
                                       HumanMessage(render(f"judge.{step}.user", **user_vars))]
        text = self._call(step, messages, lambda: self.chat.invoke(messages))
        if step == "explain" or parse_decision(text) is not None:
            return text
        follow_up = decision_follow_up(messages, text)
        word = self._call(f"{step} decision", follow_up, ask_for_decision(self.chat, follow_up))
        decision = parse_one_word_answer(word)
        return f"{text}\n{FOLLOW_UP_MARK} [[{decision}]]" if decision is not None else text

    def _call(self, step: str, messages: list[BaseMessage], call: Callable[[], BaseMessage]) -> str:
        key = JudgeCache.key(self.model_name, messages)
        hit = self.cache.get(key)
        if hit is not None:
            self.stats.add(cache_hits=1)
            return hit.text
        logger.debug("judge %s prompt:\n%s", step, messages[-1].text)
        try:
            reply = call()
        except (ModelError, ValueError) as err:  # ValueError: a reply that is no chat completion (HTML page)
            if is_rejection(err):
                raise _Rejected(first_line(err)) from err
            translated = translate_error(err, self.model_name)
            if translated is err:
                raise
            raise translated from err
        text = str(reply.text)
        n_in, n_out = usage(reply)
        self.cache.put(key, CachedReply(text, n_in, n_out), self.model_name)
        self.stats.add(calls=1, input_tokens=n_in, output_tokens=n_out)
        logger.debug("judge %s reply (%d+%d tokens):\n%s", step, n_in, n_out, text)
        return text

    def judge(self, candidate: FeatureCandidate, max_spans: int, max_span_chars: int) -> FeatureRecord:
        def record(relevant: bool, reason: str, explanation: str | None = None,
                   decision: Decision | None = None) -> FeatureRecord:
            return FeatureRecord(feature=candidate.feature, relevant=relevant, decision=decision,
                                 reason=_trim(reason, MAX_REASON_CHARS), explanation=explanation,
                                 activation_rate=candidate.activation_rate, evidence=candidate.evidence,
                                 method="judge")

        spans = prepare_spans(candidate.evidence, max_spans, max_span_chars)
        if not spans:
            return record(False, "not judged: no evidence spans")
        try:
            reply = self.ask("explain", {}, {"spans": spans})
            explanation = clean_explanation(reply)
            if not explanation or is_cannot_tell(explanation):
                return record(False, f"not judged: the explainer could not tell what it detects ({_trim(reply, 200)})",
                              explanation="Cannot Tell.")
            verdict = self.ask("verify", {}, {"explanation": explanation, "spans": spans})
            verified = parse_decision(verdict)
            if verified not in ACCEPTING:
                return record(False, f"not judged: verification said {verified or 'nothing decisive'}: {verdict}",
                              explanation=explanation)
            analysis = self.ask("relevance", {"task": self.task, "guideline": self.guideline},
                                {"explanation": explanation, "spans": spans})
        except _Rejected as err:
            self.stats.add(rejected=1)
            if self.stats.rejected >= REJECTIONS_BEFORE_ABORT and self.stats.calls == 0:
                raise ConfigError(f"{self.model_name!r} rejected the first {self.stats.rejected} judge requests "
                                  f"and accepted none ({err}); check the model name and its options") from err
            logger.warning("feature %d: judge request rejected: %s", candidate.feature, err)
            return record(False, f"not judged: request rejected by the endpoint: {err}")
        decision = parse_decision(analysis) or "No"
        relevant = decision in ACCEPTING and not says_cannot_tell(analysis)
        return record(relevant, analysis, explanation=explanation, decision=decision)


LOCAL_JUDGE = "local"


def judge_chat(model: str, base_url: str | None = None, key_env: str = "OPENAI_API_KEY", *,
               shared: LoadedModel | None = None) -> tuple[BaseChatModel, str]:
    """The judge's chat model and the name its replies are cached under.

    `model` "local" is the embedded SmolLM2-135M-Instruct in-process (`shared`, when given, is an
    already loaded copy of it, used instead of loading a second one); any other name is served by
    the OpenAI-compatible endpoint at `base_url` (None: OpenAI), key from $`key_env`.
    """
    if model == LOCAL_JUDGE:
        from fac.tools.llm.local_chat import LocalChatModel

        local = LocalChatModel.from_loaded(shared) if shared is not None else LocalChatModel.default()
        return local, f"local:{local.model_id}"
    from fac.tools.llm.client import openai_chat

    return openai_chat(model, base_url, api_key_env=key_env), f"{model}@{base_url or 'openai'}"


def judge_features(
    candidates: Sequence[FeatureCandidate],
    guideline: str,
    chat: BaseChatModel,
    cache: JudgeCache,
    *,
    task: str,
    model_name: str,
    max_spans: int = 10,
    max_span_chars: int = 240,
    max_workers: int = 1,
    stats: JudgeStats | None = None,
    on_feature: Callable[[FeatureRecord], None] | None = None,
) -> list[FeatureRecord]:
    """Judge each candidate (explain → verify → relevance) and return its FeatureRecord, in input order.

    `model_name` identifies the judge in cache keys (empty: the chat model's own name); include anything
    that changes its answers, such as a non-default temperature.
    `stats` (optional) accumulates calls, cache hits and tokens; `on_feature` sees each finished record.
    `max_workers` > 1 judges features in threads (useful for remote endpoints).
    """
    if max_spans < 1 or max_span_chars < 8 or max_workers < 1:
        raise ConfigError(f"max_spans={max_spans} must be >= 1, max_span_chars={max_span_chars} >= 8, "
                          f"max_workers={max_workers} >= 1")
    if not guideline.strip():
        raise ConfigError(f"the guideline for task {task!r} is empty; expected a description of what is relevant")
    stats = stats if stats is not None else JudgeStats()
    judge = _Judge(chat, cache, model_name.strip() or chat_name(chat), task, guideline, stats)

    def one(candidate: FeatureCandidate) -> FeatureRecord:
        rec = judge.judge(candidate, max_spans, max_span_chars)
        stats.add(features=1, relevant=int(rec.relevant))
        if on_feature is not None:
            on_feature(rec)
        return rec

    calls, hits, tokens_in, tokens_out = stats.calls, stats.cache_hits, stats.input_tokens, stats.output_tokens
    if max_workers == 1:
        records = [one(c) for c in candidates]
    else:
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="judge") as pool:
            records = list(pool.map(one, candidates))
    logger.info("judged %d features for %s: %d relevant; %d calls, %d cache hits, %d/%d tokens in/out",
                len(records), task, sum(r.relevant for r in records), stats.calls - calls,
                stats.cache_hits - hits, stats.input_tokens - tokens_in, stats.output_tokens - tokens_out)
    return records
