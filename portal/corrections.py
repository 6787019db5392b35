"""Developers' corrections of a thread's components, shared by the API and the thread page."""

from __future__ import annotations

from sqlmodel import Session, select

from .models import ThreadComponentOverride, ThreadPainOverride


def apply_corrections(session: Session, thread_id: int, known: set[str], by: str, *, confirm: object = (),
                      reject: object = (), clear: object = ()) -> dict[str, str]:
    """Confirm, reject or clear components; returns errors by field (nothing is changed then)."""
    errors: dict[str, str] = {}
    changes: dict[str, list[str]] = {}
    for key, value in (("confirm", confirm), ("reject", reject), ("clear", clear)):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            errors[key] = "expected a list of component names"
            continue
        unknown = [v for v in value if v not in known]
        if unknown:
            errors[key] = f"unknown components: {', '.join(unknown)}"
        changes[key] = list(value)
    both = set(changes.get("confirm", [])) & set(changes.get("reject", []))
    if both:
        errors["reject"] = f"both confirmed and rejected: {', '.join(sorted(both))}"
    if errors:
        return errors
    for key, state in (("confirm", "confirmed"), ("reject", "rejected"), ("clear", None)):
        for name in changes.get(key, []):
            row = session.exec(select(ThreadComponentOverride).where(
                ThreadComponentOverride.thread_id == thread_id, ThreadComponentOverride.component == name)).first()
            if state is None:
                if row is not None:
                    session.delete(row)
                continue
            row = row or ThreadComponentOverride(thread_id=thread_id, component=name, state=state)
            row.state, row.by = state, by
            session.add(row)
    session.commit()
    return {}


def set_pain(session: Session, thread_id: int, is_pain: bool | None, by: str) -> None:
    """A developer says a thread is pain (True) or talk (False); None hands it back to the rules."""
    row = session.exec(select(ThreadPainOverride).where(ThreadPainOverride.thread_id == thread_id)).first()
    if is_pain is None:
        if row is not None:
            session.delete(row)
    else:
        row = row or ThreadPainOverride(thread_id=thread_id, is_pain=is_pain)
        row.is_pain, row.by = is_pain, by
        session.add(row)
    session.flush()
    from .painpoints import group

    group(session)  # the thread joins or leaves its pain point at once
    session.commit()
