"""One evaluation run: regenerate sampled prompts at every level, judge, score.

Bounded (at most `max_prompts` prompts and `time_budget_s` seconds), resumable (a stopped run
continues with the same plan; answers already generated are not asked for again) and
idempotent per (evaluation, prompt, level): answers and verdicts are keyed by them. Only one
run at a time across all processes (a PostgreSQL advisory lock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, desc, insert, select, update

from evaluator import publish, sampling
from evaluator.generator import Answer, Generator
from evaluator.judge import Judge
from evaluator.scores import score_rows
from proxy.accounting.tables import evaluation_answers, evaluations, judgments, quality_scores
from proxy.config import Settings
from proxy.jobs.leader import LeaderLock

log = logging.getLogger(__name__)
EVALUATOR_LOCK_KEY = 0x73_70_72_6F_75_74 + 1
Progress = Callable[[int, int], None]


@dataclasses.dataclass
class RunSummary:
    """What a run did."""

    evaluation_id: str | None
    status: str  # done | stopped | busy | nothing_to_do
    planned: int = 0
    judged: int = 0
    failed: int = 0


@dataclasses.dataclass
class RunOptions:
    """Bounds and context of a run."""

    levels: tuple[str, ...]
    judge_model: str
    judge_mode: str = "auto"
    max_prompts: int = 50
    time_budget_s: float = 900.0
    retention: timedelta = timedelta(days=7)
    trigger: str = "run-once"
    resume: bool = True
    ci_g_per_kwh: float | None = None
    seed: int | None = None
    predictor_min_verdicts: int = 100

    @classmethod
    def from_settings(cls, settings: Settings, levels: tuple[str, ...], trigger: str,
                      **overrides: object) -> RunOptions:
        """The options the settings give (judge model, bounds, retention), plus overrides."""
        values: dict[str, object] = {
            "levels": levels, "judge_model": settings.evaluator_judge_model or "",
            "judge_mode": settings.evaluator_judge_mode,
            "max_prompts": settings.evaluator_max_prompts,
            "time_budget_s": settings.evaluator_time_budget_s,
            "retention": timedelta(days=settings.prompt_retention_days), "trigger": trigger,
            "predictor_min_verdicts": settings.evaluator_predictor_min_verdicts,
        }
        return cls(**(values | overrides))  # type: ignore[arg-type]


class EvaluationRun:
    """Drives one evaluation over the database and a `Generator`."""

    def __init__(self, engine: Engine, generator: Generator, options: RunOptions,
                 progress: Progress | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._generator = generator
        self._options = options
        self._progress = progress
        self._clock = clock
        self._judge = Judge(generator, options.judge_model, options.judge_mode)
        self._rng = random.Random(options.seed)

    async def run(self) -> RunSummary:
        """Run (or resume) under the evaluator lock; database work stays off the event loop."""
        lock = LeaderLock(self._engine, key=EVALUATOR_LOCK_KEY)
        if not await asyncio.to_thread(lock.is_leader):
            return RunSummary(None, "busy")
        try:
            return await self._run()
        finally:
            await asyncio.to_thread(lock.release)

    async def _run(self) -> RunSummary:
        options = self._options
        evaluation_id, sample_ids = await asyncio.to_thread(self._start)
        if evaluation_id is None:
            return RunSummary(None, "nothing_to_do")
        samples = await asyncio.to_thread(self._load, sample_ids)
        deadline = time.monotonic() + options.time_budget_s
        summary = RunSummary(evaluation_id, "done", planned=len(samples))
        for done, sample in enumerate(samples):
            if time.monotonic() > deadline:
                summary.status = "stopped"
                break
            outcome = await self._evaluate(evaluation_id, sample)
            summary.judged += outcome == "judged"
            summary.failed += outcome == "failed"
            if self._progress:
                self._progress(done + 1, len(samples))
        await asyncio.to_thread(self._finish, evaluation_id, summary)
        if summary.status == "done":
            await asyncio.to_thread(self._publish_predictor, evaluation_id)
        return summary

    def _publish_predictor(self, evaluation_id: str) -> None:
        """Refit the learned-class predictor on every retained verdict and publish it."""
        try:
            with self._engine.connect() as connection:
                examples = publish.training_examples(connection, self._options.levels)
            now = self._clock()
            fitted = publish.fit_in_child(examples, self._options.levels, now,
                                          self._options.predictor_min_verdicts)
            if fitted is None:
                log.info("predictor: %d verdicts, too few to fit (regex classes stay)",
                         len(examples))
                return
            with self._engine.begin() as connection:
                publish.publish(connection, fitted, self._options.levels, now, evaluation_id)
            log.info("predictor %s: %d verdicts, held-out accuracy %.3f (regex classes %.3f)",
                     fitted.classifier.version, fitted.verdicts, fitted.heldout_accuracy,
                     fitted.regex_accuracy)
        except Exception:  # a failed fit keeps the published predictor; the run still counts
            log.exception("predictor: fit failed")

    def _load(self, sample_ids: list[str]) -> list[sampling.Sample]:
        with self._engine.connect() as connection:
            return sampling.load(connection, sample_ids)

    def _start(self) -> tuple[str | None, list[str]]:
        options = self._options
        with self._engine.begin() as connection:
            if options.resume:
                unfinished = connection.execute(
                    select(evaluations.c.evaluation_id, evaluations.c.sample_ids_json)
                    .where(evaluations.c.status.in_(("running", "stopped")))
                    .order_by(desc(evaluations.c.started_at)).limit(1)).first()
                if unfinished is not None:
                    connection.execute(update(evaluations).where(
                        evaluations.c.evaluation_id == unfinished[0]).values(status="running"))
                    return unfinished[0], json.loads(unfinished[1])
            now = self._clock()
            sample_ids = sampling.pick(connection, since=now - options.retention,
                                       limit=options.max_prompts, rng=self._rng)
            if not sample_ids:
                return None, []
            evaluation_id = f"eval_{secrets.token_hex(8)}"
            connection.execute(insert(evaluations).values(
                evaluation_id=evaluation_id, started_at=now, status="running",
                trigger=options.trigger, judge_model=options.judge_model,
                levels=",".join(options.levels), planned_prompts=len(sample_ids),
                judged_prompts=0, failed_prompts=0, ci_g_per_kwh=options.ci_g_per_kwh,
                sample_ids_json=json.dumps(sample_ids)))
            return evaluation_id, sample_ids

    def _progress_of(self, evaluation_id: str, sample_id: str) -> tuple[bool, dict[str, Answer]]:
        """Whether the prompt is judged already, and the answers stored for it."""
        with self._engine.connect() as connection:
            judged = connection.execute(select(judgments.c.judgment_id).where(
                judgments.c.judgment_id == f"{evaluation_id}:{sample_id}")).first() is not None
            stored = {row.level: Answer(row.answer_text, row.request_id)
                      for row in connection.execute(select(evaluation_answers).where(
                          evaluation_answers.c.evaluation_id == evaluation_id,
                          evaluation_answers.c.sample_id == sample_id))
                      if row.answer_text is not None}
        return judged, stored

    def _store_answer(self, evaluation_id: str, sample_id: str, level: str,
                      answer: Answer) -> None:
        with self._engine.begin() as connection:
            connection.execute(evaluation_answers.delete().where(
                evaluation_answers.c.evaluation_id == evaluation_id,
                evaluation_answers.c.sample_id == sample_id,
                evaluation_answers.c.level == level))
            connection.execute(insert(evaluation_answers).values(
                evaluation_id=evaluation_id, sample_id=sample_id, level=level,
                request_id=answer.request_id, answer_text=answer.text,
                answer_chars=len(answer.text) if answer.text is not None else None,
                error=answer.error, created_at=self._clock()))

    async def _evaluate(self, evaluation_id: str, sample: sampling.Sample) -> str:
        judgment_id = f"{evaluation_id}:{sample.sample_id}"
        judged, answers = await asyncio.to_thread(self._progress_of, evaluation_id,
                                                  sample.sample_id)
        if judged:
            return "already"
        # Levels generated before a run stopped are not asked again; the others are asked
        # together (a batching backend answers them in one batch).
        missing = [level for level in self._options.levels if level not in answers]
        asked = await asyncio.gather(*(self._generator.answer(sample.endpoint, sample.request,
                                                              level) for level in missing))
        for level, answer in zip(missing, asked, strict=True):
            answers[level] = answer
            await asyncio.to_thread(self._store_answer, evaluation_id, sample.sample_id, level,
                                    answer)
        failed = [f"{lvl}: {a.error}" for lvl, a in answers.items() if a.text is None]
        order = list(self._options.levels)
        self._rng.shuffle(order)
        winner: str | None = None
        error: str | None = "; ".join(failed) if failed else None
        if not failed:
            verdict = await self._judge.judge(sample.instruction(),
                                              [answers[lvl].text or "" for lvl in order])
            error = verdict.error
            winner = order[verdict.position] if verdict.position is not None else None
        chars = {lvl: len(a.text) for lvl, a in answers.items() if a.text is not None}
        values = {"judgment_id": judgment_id, "evaluation_id": evaluation_id,
                  "sample_id": sample.sample_id, "judged_at": self._clock(),
                  "task_class": sample.task_class, "levels": ",".join(self._options.levels),
                  "winner_level": winner, "judge_model": self._options.judge_model,
                  "position_order": ",".join(order), "answer_chars_json": json.dumps(chars),
                  "error": error}
        await asyncio.to_thread(self._insert_judgment, values)
        return "judged" if winner is not None else "failed"

    def _insert_judgment(self, values: dict[str, object]) -> None:
        with self._engine.begin() as connection:
            connection.execute(insert(judgments).values(**values))

    def _finish(self, evaluation_id: str, summary: RunSummary) -> None:
        with self._engine.begin() as connection:
            rows = connection.execute(select(judgments.c.task_class, judgments.c.winner_level,
                                             judgments.c.error).where(
                judgments.c.evaluation_id == evaluation_id)).all()
            judged = [(r.task_class, r.winner_level) for r in rows if r.winner_level]
            summary.judged = len(judged)
            summary.failed = len(rows) - len(judged)
            values = {"judged_prompts": summary.judged, "failed_prompts": summary.failed,
                      "status": summary.status}
            if summary.status == "done":
                values["finished_at"] = self._clock()
                connection.execute(quality_scores.delete().where(
                    quality_scores.c.evaluation_id == evaluation_id))
                scores = score_rows(evaluation_id, self._options.levels, judged)
                if scores:
                    connection.execute(insert(quality_scores), scores)
                # Answers were kept only so the run could resume; lengths live in judgments.
                connection.execute(evaluation_answers.delete().where(
                    evaluation_answers.c.evaluation_id == evaluation_id))
            connection.execute(update(evaluations).where(
                evaluations.c.evaluation_id == evaluation_id).values(**values))
