"""Learning components from developers' corrections (scikit-learn).

The rules give every deployment a start; the corrections developers make (confirm, reject) are
the labels a model learns from. One TF-IDF + logistic-regression model per component that has
enough corrections on both sides. The model is derived data in the data folder: `flask classify
--learn` trains it again from the database at any time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlmodel import Session

# scikit-learn, joblib, SQLAlchemy and the models are imported where they are used: importing this
# module (every import run, and the parsing process that judges messages) must not cost their second.

MIN_EACH_SIDE = 3
MODEL_FILE = "components-model.joblib"


@dataclass
class LearnedModel:
    vectorizer: Any
    models: dict[str, Any]
    trained_on: int
    meta: dict[str, Any] = field(default_factory=dict)

    def predict(self, text: str) -> dict[str, float]:
        """Probability per learned component."""
        if not self.models:
            return {}
        x = self.vectorizer.transform([text])
        return {name: float(model.predict_proba(x)[0][1]) for name, model in self.models.items()}


def thread_texts(session: Session, thread_ids: list[int]) -> dict[int, str]:
    from sqlalchemy import select

    from .models import Message

    texts: dict[int, list[str]] = {}
    for tid, subject, text in session.execute(
            select(Message.thread_id, Message.subject, Message.new_text).where(Message.thread_id.in_(thread_ids))
            .order_by(Message.thread_id, Message.date)):
        texts.setdefault(tid, [subject]).append(text[:4000])
    return {tid: "\n".join(parts)[:20000] for tid, parts in texts.items()}


def train(session: Session) -> LearnedModel | None:
    """A model from every correction in the database; None when there are too few."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sqlalchemy import select

    from .models import ThreadComponentOverride

    overrides = session.execute(select(ThreadComponentOverride)).scalars().all()
    if not overrides:
        return None
    corrected = sorted({o.thread_id for o in overrides})
    texts = thread_texts(session, corrected)
    confirmed: dict[int, set[str]] = {}
    rejected: dict[int, set[str]] = {}
    for o in overrides:
        (confirmed if o.state == "confirmed" else rejected).setdefault(o.thread_id, set()).add(o.component)
    ids = [t for t in corrected if t in texts]
    if not ids:
        return None
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=1, ngram_range=(1, 2), max_features=50000)
    matrix = vectorizer.fit_transform([texts[t] for t in ids])
    models = {}
    for component in sorted({o.component for o in overrides}):
        # A thread a developer corrected is a negative for what they did not confirm.
        labels = [1 if component in confirmed.get(t, set()) else 0 for t in ids]
        if sum(labels) >= MIN_EACH_SIDE and len(labels) - sum(labels) >= MIN_EACH_SIDE:
            model = LogisticRegression(class_weight="balanced", max_iter=1000)
            model.fit(matrix, labels)
            models[component] = model
    return LearnedModel(vectorizer, models, trained_on=len(ids),
                        meta={"components": sorted(models), "threads": len(ids)})


def save(model: LearnedModel, data_dir: Path) -> Path:
    import joblib

    path = data_dir / MODEL_FILE
    joblib.dump(model, path)
    (data_dir / (MODEL_FILE + ".json")).write_text(json.dumps(model.meta))
    return path


def load(data_dir: Path) -> LearnedModel | None:
    """The trained model, if there is one (a file this deployment wrote itself)."""
    path = data_dir / MODEL_FILE
    if not path.exists():
        return None
    import joblib

    model = joblib.load(path)
    return model if isinstance(model, LearnedModel) else None
