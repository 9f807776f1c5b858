"""Publishing the learned-class predictor: its training verdicts in, one `predictors` row out.

At the end of every finished evaluator run the job refits on every verdict whose prompt is
still captured (prompt retention bounds what the predictor may learn from) and publishes the
fit; the proxy replicas load the newest row on their next optimiser tick. Only the newest
`KEEP` predictors are kept.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, desc, insert, select

from evaluator.predictor import Example, Fitted, fit
from evaluator.sampling import Sample
from proxy.accounting.tables import judgments, predictors, prompt_samples
from proxy.jobs.children import low_priority_executor

KEEP = 5


def training_examples(connection: Connection, levels: Sequence[str]) -> list[Example]:
    """Every successful verdict whose prompt is still captured, as the predictor sees it."""
    index = {level: i for i, level in enumerate(levels)}
    query = (select(judgments.c.judged_at, judgments.c.winner_level, prompt_samples.c.endpoint,
                    prompt_samples.c.request_json)
             .join(prompt_samples, prompt_samples.c.sample_id == judgments.c.sample_id)
             .where(judgments.c.winner_level.is_not(None))
             .order_by(judgments.c.judged_at, judgments.c.judgment_id))  # reproducible folds
    examples = []
    for row in connection.execute(query):
        if row.winner_level not in index:
            continue  # judged under another directive catalogue
        sample = Sample("", row.endpoint, "", json.loads(row.request_json))
        judged_at = row.judged_at if row.judged_at.tzinfo else row.judged_at.replace(tzinfo=UTC)
        examples.append(Example(sample.instruction(), index[row.winner_level], judged_at))
    return examples


def fit_examples(examples: Sequence[Example], levels: Sequence[str], now: datetime,
                 min_verdicts: int) -> Fitted | None:
    """Fit on the verdicts judged before `now` (None: too few, the regex classes stay)."""
    return fit(examples, levels, now, min_verdicts=min_verdicts,
               version=f"pred_{now:%Y%m%dT%H%M%S}_{secrets.token_hex(3)}")


def fit_in_child(examples: Sequence[Example], levels: Sequence[str], now: datetime,
                 min_verdicts: int) -> Fitted | None:
    """`fit_examples` in a spawned process at low priority, so the fit never holds the GIL.

    The evaluator job runs inside the leading proxy: a 5-fold fit on thousands of verdicts
    holds the interpreter for seconds in scikit-learn's Python parts, which would stall every
    request on that replica. The child exits when the proxy does.
    """
    with low_priority_executor() as executor:
        return executor.submit(fit_examples, list(examples), list(levels), now,
                               min_verdicts).result()


def publish(connection: Connection, fitted: Fitted, levels: Sequence[str], now: datetime,
            evaluation_id: str | None) -> None:
    """Insert the fit as the newest predictor; drop all but the newest `KEEP`."""
    connection.execute(insert(predictors).values(
        version=fitted.classifier.version, fitted_at=now, evaluation_id=evaluation_id,
        levels=",".join(levels), verdicts=fitted.verdicts,
        heldout_accuracy=fitted.heldout_accuracy, heldout_log_loss=fitted.heldout_log_loss,
        regex_accuracy=fitted.regex_accuracy,
        model_json=json.dumps(fitted.classifier.document()),
        heldout_json=json.dumps([[_iso(h.judged_at), h.task_class, levels[h.winner]]
                                 for h in fitted.heldout])))
    stale = [r[0] for r in connection.execute(select(predictors.c.version).order_by(
        desc(predictors.c.fitted_at)).offset(KEEP))]
    if stale:
        connection.execute(delete(predictors).where(predictors.c.version.in_(stale)))


def _iso(judged_at: datetime | float) -> str:
    assert isinstance(judged_at, datetime)
    return judged_at.isoformat()
