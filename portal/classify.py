"""Which components a message or thread hurts: taxonomy signals over the new text and subject.

Pure computation over a versioned taxonomy (data/components.toml): the same text and ruleset
always give the same judgment, so judgments can be recomputed whenever the rules change.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .config import ROOT

DEFAULT_TAXONOMY = ROOT / "data" / "components.toml"
_TOKEN_RE = re.compile(r"[a-z0-9][a-z0-9_.\-]*[a-z0-9]|[a-z0-9]")
_TAG_RE = re.compile(r"\[([^\]\n]{1,40})\]")


@dataclass(frozen=True)
class Judgment:
    component: str
    confidence: float
    reasons: tuple[str, ...]


@dataclass
class Component:
    name: str
    description: str = ""
    owner: str = ""
    aliases: list[str] = field(default_factory=list)
    words: dict[str, float] = field(default_factory=dict)
    phrases: dict[str, float] = field(default_factory=dict)
    tags: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PainJudgment:
    is_pain: bool
    score: float
    reasons: tuple[str, ...]


@dataclass
class PainRules:
    """Signals that a message describes a production problem (pain) or is talk."""

    threshold: float = 2.0
    signals: dict[str, float] = field(default_factory=dict)  # negative weights are talk

    def __post_init__(self) -> None:
        self._re = re.compile(r"(?<![a-z0-9])(" + "|".join(
            re.escape(p) for p in sorted(self.signals, key=len, reverse=True)) + r")(?![a-z0-9])") \
            if self.signals else None

    def judge(self, subject: str, text: str) -> PainJudgment:
        if self._re is None:
            return PainJudgment(False, 0.0, ())
        body = f"{subject or ''}\n{text or ''}".casefold()
        # Strongest signals first, ties by name: a set's order changes from one process to the
        # next (string hashing), and the verdict must not.
        found = sorted({m.group(1) for m in self._re.finditer(body)}, key=lambda f: (-abs(self.signals[f]), f))
        score = sum(self.signals[f] for f in found)
        reasons = tuple(f"{'pain' if self.signals[f] > 0 else 'talk'} '{f}'" for f in found)[:8]
        return PainJudgment(score >= self.threshold, round(score, 2), reasons)


@dataclass
class Taxonomy:
    version: str
    components: dict[str, Component]
    scale: float = 2.0
    threshold: float = 0.55
    # A second component must score at least this share of the first: a message has one main
    # component and names others only when it really covers them.
    secondary_ratio: float = 0.5
    # Subjects that mark process talk (elections, summits, release schedules): no component.
    process_words: frozenset[str] = frozenset()
    process_tags: frozenset[str] = frozenset()
    pain: PainRules = field(default_factory=PainRules)
    # word -> [(component, weight)], for one pass over the tokens of a text
    _by_word: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    _phrase_re: re.Pattern[str] | None = None
    _by_phrase: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    _by_tag: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for comp in self.components.values():
            for word, weight in comp.words.items():
                self._by_word.setdefault(word, []).append((comp.name, weight))
            for phrase, weight in comp.phrases.items():
                self._by_phrase.setdefault(phrase, []).append((comp.name, weight))
            for tag, weight in comp.tags.items():
                self._by_tag.setdefault(tag, []).append((comp.name, weight))
        if self._by_phrase:
            alternatives = sorted(self._by_phrase, key=len, reverse=True)
            self._phrase_re = re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(p) for p in alternatives)
                                         + r")(?![a-z0-9])")

    @property
    def top_level(self) -> list[str]:
        return [n for n in self.components if "/" not in n]

    def is_process_talk(self, subject: str) -> bool:
        """True when the subject says the thread is about process, not about a part of the system."""
        tags = {t.strip().casefold() for t in _TAG_RE.findall(subject or "")}
        words = set(_TOKEN_RE.findall(_TAG_RE.sub(" ", subject or "").casefold()))
        return bool(tags & self.process_tags or words & self.process_words)

    def classify(self, subject: str, text: str) -> list[Judgment]:
        """Components above the threshold, most confident first, each with the signals that fired."""
        if self.is_process_talk(subject):
            return []
        scores: dict[str, float] = {}
        reasons: dict[str, list[str]] = {}

        def add(component: str, weight: float, reason: str) -> None:
            scores[component] = scores.get(component, 0.0) + weight
            reasons.setdefault(component, []).append(reason)

        # Sets in sorted order: their own order changes between processes, and so would the
        # reasons kept (the first 8) and the sums.
        for tag in sorted({t.strip().casefold() for t in _TAG_RE.findall(subject or "")}):
            for component, weight in self._by_tag.get(tag, ()):
                add(component, weight, f"subject tag [{tag}]")
        body = f"{subject or ''}\n{text or ''}".casefold()
        counts: dict[str, int] = {}
        for token in _TOKEN_RE.findall(body):
            if token in self._by_word:
                counts[token] = counts.get(token, 0) + 1
        for token, n in counts.items():
            bonus = 1.0 + 0.25 * min(n - 1, 4)
            for component, weight in self._by_word[token]:
                add(component, weight * bonus, f"word '{token}'" + (f" x{n}" if n > 1 else ""))
        if self._phrase_re is not None:
            for phrase in sorted({m.group(1) for m in self._phrase_re.finditer(body)}):
                for component, weight in self._by_phrase[phrase]:
                    add(component, weight, f"phrase '{phrase}'")
        result = []
        top = max(scores.values(), default=0.0)
        for component, score in scores.items():
            confidence = 1.0 - math.exp(-score / self.scale)
            if confidence >= self.threshold and score >= self.secondary_ratio * top:
                result.append(Judgment(component, round(confidence, 3), tuple(reasons[component][:8])))
        return sorted(result, key=lambda j: -j.confidence)


def _weighted(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        text, _, weight = item.rpartition(":") if re.search(r":\d+(\.\d+)?$", item) else (item, "", "1")
        out[text.casefold().strip()] = float(weight)
    return out


def parse_taxonomy(text: str) -> Taxonomy:
    """A taxonomy from TOML text; raises ValueError naming what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"components.toml: {exc}") from exc
    comps = data.get("components")
    if not isinstance(comps, dict) or not comps:
        raise ValueError("components.toml: no [components.NAME] tables")
    components = {}
    for name, spec in comps.items():
        if not isinstance(spec, dict):
            raise ValueError(f"components.toml: [components.{name}] must be a table")
        if "/" in name and name.rsplit("/", 1)[0] not in comps:
            raise ValueError(f"components.toml: {name} has no parent component")
        components[name] = Component(
            name=name, description=str(spec.get("description", "")), owner=str(spec.get("owner", "")),
            aliases=list(spec.get("aliases", [])), words=_weighted(list(spec.get("words", []))),
            phrases=_weighted(list(spec.get("phrases", []))), tags=_weighted(list(spec.get("tags", []))),
        )
        components[name].tags = {t if t.startswith("[") else f"[{t}]": w for t, w in components[name].tags.items()}
        components[name].tags = {t.strip("[]"): w for t, w in components[name].tags.items()}
    process = data.get("process") or {}
    pain = data.get("pain") or {}
    pain_signals = _weighted(list(pain.get("words", [])) + list(pain.get("phrases", [])))
    talk = _weighted(list(pain.get("talk_words", [])) + list(pain.get("talk_phrases", [])))
    pain_signals.update({k: -v for k, v in talk.items()})
    return Taxonomy(version=str(data.get("version", "0")), components=components,
                    pain=PainRules(float(pain.get("threshold", 2.0)), pain_signals),
                    process_words=frozenset(str(w).casefold() for w in process.get("subject_words", [])),
                    process_tags=frozenset(str(t).casefold().strip("[]") for t in process.get("subject_tags", [])),
                    scale=float(data.get("scale", 2.0)), threshold=float(data.get("threshold", 0.55)),
                    secondary_ratio=float(data.get("secondary_ratio", 0.5)))


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> Taxonomy:
    return parse_taxonomy(Path(path).read_text(encoding="utf-8"))


def load_taxonomy(path: Path | str | None = None) -> Taxonomy:
    """The taxonomy at path (default data/components.toml), re-read when the file changes."""
    p = Path(path or DEFAULT_TAXONOMY)
    return _load_cached(str(p), p.stat().st_mtime)


def top_level(components: list[str]) -> list[str]:
    """Children folded into their parents (networking/virtual-router -> networking), order kept."""
    return list(dict.fromkeys(c.split("/", 1)[0] for c in components))


def aggregate(judgments: list[tuple[str, float, list[str]]], secondary_ratio: float = 0.5) -> list[dict]:
    """A thread's components from its messages' judgments: support is the sum of confidences, and
    a component stays when its support reaches `secondary_ratio` of the best one, so a long thread
    is not tagged with everything one reply mentioned. Best confidence and its reasons are kept."""
    support: dict[str, float] = {}
    best: dict[str, tuple[float, list[str]]] = {}
    for component, confidence, reasons in judgments:
        support[component] = support.get(component, 0.0) + confidence
        if component not in best or confidence > best[component][0]:
            best[component] = (confidence, reasons)
    top = max(support.values(), default=0.0)
    kept = [c for c, s in support.items() if s >= secondary_ratio * top]
    return sorted(({"name": c, "confidence": best[c][0], "reasons": best[c][1], "support": round(support[c], 3)}
                   for c in kept), key=lambda x: (-x["support"], -x["confidence"]))
