"""What Earshot reads into each message at import: ticket references and component judgments.
Configured once per run from the app config; pure otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from importers.model import ParsedMessage
from importers.refs import DEFAULT_JIRA_PROJECTS, DEFAULT_REDMINE_HOSTS, extract_change_ids, extract_refs
from importers.text import is_reply_subject

from .classify import Judgment, PainJudgment, Taxonomy, load_taxonomy
from .learn import LearnedModel
from .learn import load as load_model


def _csv(value: object, default: frozenset[str]) -> frozenset[str]:
    if value in (None, ""):
        return default
    return frozenset(x.strip() for x in str(value).split(",") if x.strip())


def parse_list_repos(value: object) -> dict[str, str]:
    """`openqa=os-autoinst/openQA,cloudstack-dev=apache/cloudstack` -> {list: repo}."""
    out = {}
    for pair in str(value or "").split(","):
        name, _, repo = pair.partition("=")
        if name.strip() and "/" in repo:
            out[name.strip().lower()] = repo.strip()
    return out


@dataclass
class Enricher:
    taxonomy: Taxonomy
    jira_projects: frozenset[str] = DEFAULT_JIRA_PROJECTS
    redmine_hosts: frozenset[str] = DEFAULT_REDMINE_HOSTS
    list_repos: dict[str, str] = field(default_factory=dict)
    model: LearnedModel | None = None
    # Probability from which a learned component counts.
    model_threshold: float = 0.6

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Enricher:
        path = config.get("TAXONOMY") or None
        return cls(
            taxonomy=load_taxonomy(Path(str(path)) if path else None),
            jira_projects=_csv(config.get("JIRA_PROJECTS"), DEFAULT_JIRA_PROJECTS),
            redmine_hosts=_csv(config.get("REDMINE_HOSTS"), DEFAULT_REDMINE_HOSTS),
            list_repos=parse_list_repos(config.get("LIST_REPOS")),
            model=load_model(Path(str(config["DATA_DIR"]))) if config.get("DATA_DIR") else None,
        )

    def refs(self, msg: ParsedMessage) -> list[str]:
        """References the message itself wrote: its new text, and its subject unless it is a reply
        (a reply's subject repeats the original's)."""
        text = msg.new_text if is_reply_subject(msg.subject) else f"{msg.subject}\n{msg.new_text}"
        found = extract_refs(text, jira_projects=self.jira_projects, redmine_hosts=self.redmine_hosts,
                             repo=self.list_repos.get((msg.list_name or "").lower()))
        return list(dict.fromkeys([*msg.own_refs, *found]))

    def mentions(self, msg: ParsedMessage) -> list[str]:
        """What is stored for a message: its references, and Change-Ids waiting to be resolved."""
        return [*self.refs(msg), *extract_change_ids(msg.new_text)]

    def components(self, msg: ParsedMessage) -> list[Judgment]:
        """The rules' judgments, joined by what the model learned from developers' corrections."""
        judged = {j.component: j for j in self.taxonomy.classify(msg.subject, msg.new_text)}
        if self.model is not None and msg.new_text.strip():
            for component, p in self.model.predict(f"{msg.subject}\n{msg.new_text}").items():
                if p >= self.model_threshold and component in self.taxonomy.components:
                    reason = f"learned from {self.model.trained_on} corrected threads (p={p:.2f})"
                    current = judged.get(component)
                    if current is None or current.confidence < p:
                        judged[component] = Judgment(component, round(p, 3), (reason,))
        return sorted(judged.values(), key=lambda j: -j.confidence)

    def pain(self, msg: ParsedMessage) -> PainJudgment:
        """Does the message describe production pain someone has, or is it talk?"""
        return self.taxonomy.pain.judge(msg.subject, msg.new_text)


@dataclass
class Prejudge:
    """What a parsing process works out for each message beside parsing it (iter_paths_parallel's
    `prepare`): the ticket mentions and the pain verdict the storing process would otherwise
    judge, with the same rules. Components stay with the storing process (a learned model may
    take part, and their judgments are more to send back than to work out)."""

    enricher: Enricher

    @classmethod
    def of(cls, enricher: Enricher) -> Prejudge:
        return cls(replace(enricher, model=None))  # (neither judgment reads the model)

    def __call__(self, msg: ParsedMessage) -> tuple[list[str], PainJudgment]:
        return self.enricher.mentions(msg), self.enricher.pain(msg)
