"""`flask` commands: thin wrappers over the service functions the scheduler and pages use."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlmodel import select
from tqdm import tqdm

from importers.sources import FORMATS, total_bytes

from . import db as dbmod
from .auth import create_token
from .bulk import fewer_collections, release_free_memory, skip_last_collection
from .enrich import Enricher
from .ingest import Ingest, reclassify
from .models import ROLES, ImportProblemRow, ImportRun, MailingList, Person, User
from .painpoints import group, refresh_all


def init_app(app: Flask) -> None:
    app.cli.add_command(db_group)
    app.cli.add_command(import_command)
    app.cli.add_command(lists_group)
    app.cli.add_command(people_group)
    app.cli.add_command(users_group)
    app.cli.add_command(tokens_group)
    app.cli.add_command(reports_group)
    app.cli.add_command(demo_group)
    app.cli.add_command(runs_group)
    app.cli.add_command(evaluate_command)
    app.cli.add_command(tickets_group)
    app.cli.add_command(git_group)
    app.cli.add_command(classify_command)
    app.cli.add_command(painpoints_group)
    app.cli.add_command(cycles_group)
    app.cli.add_command(subscriptions_group)
    app.cli.add_command(digest_group)
    app.cli.add_command(scheduler_group)
    app.cli.add_command(sources_group)
    app.cli.add_command(index_group)
    app.cli.add_command(search_command)


@click.group("db", cls=AppGroup, help="Database schema.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply migrations (run before serving).")
@click.option("--revision", default="head")
def db_upgrade(revision: str) -> None:
    dbmod.upgrade(current_app.config["SQLALCHEMY_URL"], revision)
    click.echo(f"database at {revision}", err=True)


# Below this, starting a parsing process costs more than it saves.
PARALLEL_FROM_BYTES = 2 * 1024 * 1024


def run_import(paths: list[Path], *, fmt: str = "auto", list_name: str | None = None,
               show_progress: bool = False, keep_index: bool = True) -> dict[str, object]:
    """Import paths and return the run summary (shared by the CLI, the demo loader and the
    scheduler's polls), with the seconds each step took (`seconds`: store, reclassify, group,
    index). `keep_index` is grouping's (painpoints.group): a command that ends after this import
    passes False; the scheduler, which polls again, keeps it."""
    with fewer_collections():  # (20k messages: 10.6 -> 9.6 s)
        return _run_import(paths, fmt=fmt, list_name=list_name, show_progress=show_progress, keep_index=keep_index)


def _run_import(paths: list[Path], *, fmt: str, list_name: str | None, show_progress: bool,
                keep_index: bool) -> dict[str, object]:
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal started
        now = time.perf_counter()
        seconds[step] = round(now - started, 2)
        started = now

    total = total_bytes(paths)
    large = total > PARALLEL_FROM_BYTES
    workers = str(current_app.config.get("IMPORT_PARALLEL", "auto")).lower()
    parallel = (os.cpu_count() or 1) > 1 and large if workers == "auto" else workers in ("1", "true", "yes", "on")
    bulk_index = None
    if large:  # an import this size also writes the index in several processes (EARSHOT_INDEX_PROCS)
        from .search import WhooshIndex, index_for

        index = index_for(current_app.config)
        if isinstance(index, WhooshIndex) and index.procs > 1:
            index.prepare_bulk()
            bulk_index = index
    with tqdm(total=total, unit="B", unit_scale=True, desc="import", disable=not show_progress,
              file=sys.stderr) as bar, dbmod.session_scope() as session:
        ingest = Ingest(session, enricher=Enricher.from_config(current_app.config), parse_in_parallel=parallel,
                        batch_size=int(current_app.config["IMPORT_BATCH"]),
                        subject_window_days=int(current_app.config["SUBJECT_WINDOW_DAYS"]))
        result = ingest.run(paths, fmt=fmt, list_name=list_name, progress=bar.update)
    lap("store")
    summary = result.as_dict()
    # A changed taxonomy re-tags what older runs judged, so every item answers to one ruleset.
    with dbmod.session_scope() as session:
        summary["rejudged"] = reclassify(session, ingest.enricher, show_progress=show_progress) \
            if ingest.enricher is not None else 0
    lap("reclassify")
    # The index writer processes get the threads grouping cannot change first, and analyse them
    # while this process groups (20k messages: grouping and indexing 4.3 -> 3.9 s).
    update, settled = _index_settled(bulk_index, result.threads) if bulk_index is not None else (None, [])
    if update is not None:
        lap("index_settled")
    release_free_memory()  # (storing's batches: grouping starts from a smaller process)
    try:
        with dbmod.session_scope() as session:
            grouped = group(session, keep_index=keep_index)
    except BaseException:
        if update is not None:
            update.abandon()
        raise
    summary["pain_points"] = grouped.as_dict()
    lap("group")
    summary.update(_reindex(thread_ids=set(result.threads) - set(settled), painpoint_ids=grouped.touched,
                            update=update))
    lap("index")
    summary["seconds"] = seconds
    return summary


def _echo_problems(problems: Any) -> None:
    """Each problem on stderr with its file and position."""
    for p in problems:
        click.echo(f"  {p['file']}: {p['where']}: {p['reason']}", err=True)


def _index_settled(index: Any, thread_ids: Iterable[int]) -> tuple[Any, list[int]]:
    """Start a bulk index update with the documents of the threads grouping leaves as they are
    (painpoints.settled_threads), whose writer processes (one fewer than the cores grouping
    shares) then write their segments while grouping runs (200k messages: settled, group and
    index 51.7 -> 48.0 s; the rest goes to new processes): (the update, those threads). If the
    index cannot take them now, (None, []): the index step after grouping writes every thread as
    it would have."""
    from .painpoints import settled_threads
    from .search import thread_documents

    update = None
    try:
        with dbmod.session_scope() as session:
            settled = settled_threads(session, thread_ids)
            # One core is left to grouping (20k messages: group 1.5-1.6 -> 1.2 s, index the same).
            update = index.begin_update(bulk=True, first_procs=max(1, index.procs - 1))
            update.add(thread_documents(session, settled))
            update.finish_segments()
    except Exception as exc:  # noqa: BLE001 - the index step reports what stops the index
        logging.getLogger(__name__).warning("settled threads not handed to the index before grouping "
                                            "(%s: %s); the index step writes them", exc.__class__.__name__, exc)
        if update is not None:
            update.abandon()
        return None, []
    return update, settled


def _reindex(**what: Any) -> dict[str, object]:
    """Write the search index after the database committed. It is derived data: if it cannot be
    written now, what was stored stands and `flask index rebuild` catches up."""
    from .search import reindex

    try:
        with dbmod.session_scope() as session:
            return {"indexed": reindex(session, current_app.config, **what)}
    except Exception as exc:  # noqa: BLE001
        return {"index_problem": f"search index not updated ({exc.__class__.__name__}: {exc}); "
                                 "run flask index rebuild"}


@click.command("import", help="Import mail archives, messages and pasted pages (files or folders).")
@click.option("--list", "list_name", default=None, help="List name for messages that do not say.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@with_appcontext
def import_command(list_name: str | None, fmt: str, as_json: bool, paths: tuple[Path, ...]) -> None:
    skip_last_collection()
    summary = run_import(list(paths), fmt=fmt, list_name=list_name, show_progress=sys.stderr.isatty(),
                         keep_index=False)  # (the command ends: nothing would use grouping's index)
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{summary['messages_new']} new, {summary['duplicates']} already stored, "
               f"{summary['threads_touched']} threads touched, {len(summary['problems'])} problems")  # type: ignore[arg-type]
    _echo_problems(summary["problems"])


def _test_globs() -> list[str]:
    from importers.gitlog import DEFAULT_TEST_GLOBS

    value = str(current_app.config.get("TEST_GLOBS") or "")
    return [g.strip() for g in value.split(",") if g.strip()] or list(DEFAULT_TEST_GLOBS)


def _print_ticket_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items() if k != "problems")
               + f", problems {len(summary['problems'])}")
    _echo_problems(summary["problems"])


@click.group("tickets", cls=AppGroup, help="Developer tickets from trackers.")
def tickets_group() -> None:
    pass


@tickets_group.command("import", help="Import tracker JSON (Jira, Launchpad, GitHub, Gerrit, Redmine).")
@click.option("--tracker", type=click.Choice(["jira", "launchpad", "github", "gerrit", "redmine"]), default=None,
              help="Read every file as this tracker's JSON (default: found from the JSON's shape).")
@click.option("--json", "as_json", is_flag=True)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def tickets_import(tracker: str | None, as_json: bool, paths: tuple[Path, ...]) -> None:
    from importers.trackers import iter_tickets

    from .tickets import store_tracker_items

    def items():  # type: ignore[no-untyped-def]
        for path in paths:
            yield from iter_tickets(path, tracker)

    with dbmod.session_scope() as s:
        result = store_tracker_items(s, items(), _test_globs())
        refresh_all(s)  # pain points follow their tickets' fix and test state
    _print_ticket_summary({**result.as_dict(), **_reindex(painpoint_ids=None, tickets=True)}, as_json)


@tickets_group.command("fetch", help="Fetch the tickets threads mention from the configured tracker APIs.")
@click.option("--json", "as_json", is_flag=True)
@click.argument("refs", nargs=-1)
def tickets_fetch(as_json: bool, refs: tuple[str, ...]) -> None:
    from .tickets import fetch_tickets, tracker_urls

    if not tracker_urls(current_app.config):
        raise click.ClickException("no tracker URL configured (EARSHOT_LAUNCHPAD_API_URL, EARSHOT_JIRA_URL, "
                                   "EARSHOT_GITHUB_API_URL, EARSHOT_GERRIT_URL, EARSHOT_REDMINE_URL)")
    with dbmod.session_scope() as s:
        result = fetch_tickets(s, current_app.config, list(refs) or None, _test_globs())
        refresh_all(s)  # pain points follow their tickets' fix and test state
    _print_ticket_summary({**result.as_dict(), **_reindex(painpoint_ids=None, tickets=True)}, as_json)


@click.group("git", cls=AppGroup, help="Fix and test evidence from code history.")
def git_group() -> None:
    pass


@git_group.command("import", help="Read a repository folder or a saved `git log --format=fuller --numstat`.")
@click.option("--repo", default=None, help="owner/name on GitHub, so `Closes #N` names an issue there.")
@click.option("--repo-url", default="", help="Base URL for links to commits, e.g. https://opendev.org/openstack/nova")
@click.option("--cycles-from-tags", "cycle_tags", default=None, metavar="REGEX",
              help="Release tags matching this (e.g. '^[0-9]+\\.[0-9]+\\.0$') end release cycles; each cycle starts at "
                   "the previous such tag.")
@click.option("--json", "as_json", is_flag=True)
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def git_import(repo: str | None, repo_url: str, cycle_tags: str | None, as_json: bool, path: Path) -> None:
    from importers.gitlog import iter_commits

    from .tickets import store_commits

    enricher = Enricher.from_config(current_app.config)
    with dbmod.session_scope() as s:
        result = store_commits(s, iter_commits(path), jira_projects=enricher.jira_projects, repo=repo,
                               repo_url=repo_url or (f"https://github.com/{repo}" if repo else ""),
                               test_globs=_test_globs())
        summary = result.as_dict()
        if cycle_tags:
            summary["cycles"] = _cycles_from_tags(s, result.tags, cycle_tags)
        refresh_all(s)  # pain points follow their tickets' fix and test state
    _print_ticket_summary({**summary, **_reindex(painpoint_ids=None, tickets=True)}, as_json)


def _cycles_from_tags(session: Any, tags: list[tuple[str, Any]], pattern: str) -> list[str]:
    """Each release tag matching the pattern ends a cycle that began at the previous one."""
    import re as _re

    from .cycles import CycleError, add_cycle

    try:
        wanted = _re.compile(pattern)
    except _re.error as exc:
        raise click.ClickException(f"--cycles-from-tags: {exc}") from exc
    releases = sorted((when, tag) for tag, when in tags if wanted.search(tag))
    added = []
    for (start, _previous), (end, tag) in zip(releases, releases[1:], strict=False):
        try:
            add_cycle(session, tag, start, end, source="git")
            added.append(tag)
        except CycleError as exc:
            click.echo(f"  tag {tag}: {exc}", err=True)
    return added


@click.command("evaluate", help="Measure components and references on a labeled JSONL file.")
@click.option("--json", "as_json", is_flag=True)
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def evaluate_command(as_json: bool, labels: Path) -> None:
    from .evaluate import LabelError, evaluate

    try:
        report = evaluate(labels, Enricher.from_config(current_app.config))
    except LabelError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report))
        return
    comps = report["components"]
    click.echo(f"{report['n']} items, ruleset {report['ruleset_version']}")
    click.echo(f"components: macro-F1 {comps['macro_f1']}")
    for name, v in comps["per_component"].items():
        click.echo(f"  {name:14} P {v['precision']:.2f}  R {v['recall']:.2f}  F1 {v['f1']:.2f}  support {v['support']}")
    r = report["refs"]
    click.echo(f"references: P {r['precision']:.2f}  R {r['recall']:.2f}  F1 {r['f1']:.2f}")


@click.command("classify", help="Re-judge stored messages with the current taxonomy (corrections are kept).")
@click.option("--all", "everything", is_flag=True, help="Every message, not only those judged by another ruleset.")
@click.option("--learn", is_flag=True, help="First train the model on developers' corrections, then re-judge all.")
@with_appcontext
def classify_command(everything: bool, learn: bool) -> None:
    if learn:
        from . import learn as learning

        with dbmod.session_scope() as s:
            model = learning.train(s)
        if model is None or not model.models:
            click.echo(f"not enough corrections to learn from (each component needs {learning.MIN_EACH_SIDE} "
                       "confirmed and not confirmed threads)", err=True)
        else:
            learning.save(model, Path(current_app.config["DATA_DIR"]))
            click.echo(f"learned {', '.join(model.models)} from {model.trained_on} corrected threads")
            everything = True
    enricher = Enricher.from_config(current_app.config)
    with dbmod.session_scope() as s:
        done = reclassify(s, enricher, everything=everything, show_progress=sys.stderr.isatty())
    with dbmod.session_scope() as s:
        grouped = group(s, keep_index=False)
    click.echo(f"re-judged {done} messages with ruleset {enricher.taxonomy.version}; pain points: "
               f"{grouped.pain_points_new} new, {grouped.left} threads left, {grouped.refreshed} refreshed")


@click.group("runs", cls=AppGroup, help="Recorded import runs and their problems.")
def runs_group() -> None:
    pass


@runs_group.command("show", help="The latest runs, or one run with its problems.")
@click.argument("run_id", required=False, type=int)
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def runs_show(run_id: int | None, limit: int, as_json: bool) -> None:
    with dbmod.session_scope() as s:
        q = select(ImportRun).order_by(ImportRun.id.desc()).limit(limit)
        if run_id is not None:
            q = select(ImportRun).where(ImportRun.id == run_id)
        runs = s.exec(q).all()
        if run_id is not None and not runs:
            raise click.ClickException(f"no import run {run_id}")
        out = []
        for run in runs:
            item = {"id": run.id, "started_at": run.started_at.isoformat(), "status": run.status,
                    "paths": run.paths.splitlines(), "messages_new": run.messages_new,
                    "duplicates": run.duplicates, "threads_touched": run.threads_touched,
                    "problem_count": run.problem_count}
            if run_id is not None:
                item["problems"] = [{"file": p.file, "where": p.where, "reason": p.reason} for p in s.exec(
                    select(ImportProblemRow).where(ImportProblemRow.run_id == run.id).order_by(ImportProblemRow.id))]
            out.append(item)
    if as_json:
        click.echo(json.dumps(out if run_id is None else out[0]))
        return
    for item in out:
        click.echo(f"#{item['id']} {item['started_at'][:19]} {item['status']}: {item['messages_new']} new, "
                   f"{item['duplicates']} duplicates, {item['problem_count']} problems — {', '.join(item['paths'])}")
        for p in item.get("problems", []):
            click.echo(f"  {p['file']}: {p['where']}: {p['reason']}")


@click.group("lists", cls=AppGroup, help="Mailing lists and their role.")
def lists_group() -> None:
    pass


@lists_group.command("show")
def lists_show() -> None:
    with dbmod.session_scope() as s:
        for ml in s.exec(select(MailingList).order_by(MailingList.name)):
            click.echo(f"{ml.name}\t{ml.role}")


@lists_group.command("set-role", help="Say whether a list is an operator or a developer list.")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
def lists_set_role(name: str, role: str) -> None:
    from .ingest import set_list_role

    with dbmod.session_scope() as s:
        changed = set_list_role(s, name, role)
    click.echo(f"{name.lower()} is a {role} list; {changed} people seeded from it follow")


@click.group("people", cls=AppGroup, help="People who wrote to the lists.")
def people_group() -> None:
    pass


@people_group.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(ROLES))
def people_set_role(email: str, role: str) -> None:
    with dbmod.session_scope() as s:
        person = s.exec(select(Person).where(Person.email == email.lower())).first()
        if person is None:
            raise click.ClickException(f"no person with address {email}")
        person.role, person.role_source = role, "manual"
        s.add(person)
    click.echo(f"{email} is now {role}")


@click.group("users", cls=AppGroup, help="Accounts.")
def users_group() -> None:
    pass


@users_group.command("create")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option("--role", type=click.Choice(["operator", "developer", "admin"]), default="operator")
def users_create(email: str, name: str, role: str) -> None:
    with dbmod.session_scope() as s:
        if s.exec(select(User).where(User.email == email.lower())).first():
            raise click.ClickException(f"a user with address {email} exists")
        s.add(User(email=email.lower(), name=name, role=role))
    click.echo(f"created {role} {email.lower()}")


@click.group("tokens", cls=AppGroup, help="API tokens (shown once, stored hashed).")
def tokens_group() -> None:
    pass


@tokens_group.command("create")
@click.option("--email", required=True)
@click.option("--scopes", default="read,write", show_default=True,
              help="read (every GET of a private deployment), write (what the user's role allows).")
def tokens_create(email: str, scopes: str) -> None:
    from .auth import parse_scopes

    try:
        parse_scopes(scopes)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scopes") from exc
    with dbmod.session_scope() as s:
        user = s.exec(select(User).where(User.email == email.lower())).first()
        if user is None:
            raise click.ClickException(f"no user with address {email}; create one with `flask users create`")
        token = create_token(s, user, scopes)
    click.echo("Store this token now; it is not shown again:", err=True)
    click.echo(token)


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def users_list(as_json: bool) -> None:
    with dbmod.session_scope() as s:
        rows = [{"id": u.id, "email": u.email, "name": u.name, "role": u.role, "disabled": u.disabled,
                 "identity": u.identity or "",
                 "last_signin": u.last_signin_at.isoformat() if u.last_signin_at else None}
                for u in s.exec(select(User).order_by(User.id))]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['id']:>5}  {r['role']:<9} {r['email']}{'  (disabled)' if r['disabled'] else ''}")


@users_group.command("set", help="Change a user's role, or disable (and re-enable) the account.")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["operator", "developer", "admin"]), default=None)
@click.option("--disable/--enable", "disable", default=None)
def users_set(email: str, role: str | None, disable: bool | None) -> None:
    from .auth import AccountError, set_account

    with dbmod.session_scope() as s:
        user = s.exec(select(User).where(User.email == email.lower())).first()
        if user is None:
            raise click.ClickException(f"no user with address {email}")
        try:
            set_account(s, user, "cli", role=role, disabled=disable)
        except AccountError as exc:
            raise click.ClickException(exc.message) from exc
        click.echo(f"{user.email}: {user.role}{', disabled' if user.disabled else ''}")


@tokens_group.command("list")
@click.option("--email", default=None, help="Only this user's tokens.")
def tokens_list(email: str | None) -> None:
    from .models import ApiToken

    with dbmod.session_scope() as s:
        q = select(ApiToken, User).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id)
        if email:
            q = q.where(User.email == email.lower())
        for tok, user in s.exec(q):
            state = f"revoked {tok.revoked_at:%Y-%m-%d}" if tok.revoked_at else "active"
            click.echo(f"{tok.id:>5}  {tok.prefix}…  {tok.scopes:<10} {user.email}  {state}")


@tokens_group.command("revoke")
@click.argument("token_id", type=int)
def tokens_revoke(token_id: int) -> None:
    from .auth import revoke
    from .models import ApiToken

    with dbmod.session_scope() as s:
        if s.get(ApiToken, token_id) is None:
            raise click.ClickException(f"no token {token_id} (see flask tokens list)")
        revoke(s, token_id)
    click.echo(f"token {token_id} revoked")


@click.group("reports", cls=AppGroup, help="Operators' field reports.")
def reports_group() -> None:
    pass


@reports_group.command("import", help="Import field reports: JSON, JSON Lines, CSV, YAML files, post-mortem pages "
                                      "(a Redmine five-whys ticket as pasted), or folders of them.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def reports_import(as_json: bool, paths: tuple[Path, ...]) -> None:
    from .classify import load_taxonomy
    from .reports import import_files, index_after

    known = set(load_taxonomy(current_app.config.get("TAXONOMY") or None).components)
    with tqdm(unit="report", desc="reports", disable=not sys.stderr.isatty(), file=sys.stderr) as bar, \
            dbmod.session_scope() as s:
        result = import_files(s, current_app.config, list(paths), known, progress=bar.update)
        index_after(s, current_app.config, stored=result.stored)
    summary = result.as_dict()
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{summary['reports_new']} new, {summary['already_stored']} already stored, "
               f"{len(summary['problems'])} problems")
    _echo_problems(summary["problems"])


@reports_group.command("list")
@click.option("--limit", default=25, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def reports_list(limit: int, as_json: bool) -> None:
    from .reports import list_reports

    with dbmod.session_scope() as s:
        total, items = list_reports(s, limit=limit, offset=0)
    if as_json:
        click.echo(json.dumps({"total": total, "items": items}))
        return
    for r in items:
        click.echo(f"{r['id']:>6}  {(r['created'] or '')[:10]}  {r['status']:<15} {r['title']}")
    click.echo(f"{total} reports", err=True)


@reports_group.command("history", help="Who changed a report, and what (the audit log).")
@click.argument("report_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def reports_history(report_id: int, as_json: bool) -> None:
    from .models import AuditEvent

    with dbmod.session_scope() as s:
        rows = [{"at": e.at.isoformat(), "by": e.by, "action": e.action, "detail": json.loads(e.detail or "{}")}
                for e in s.exec(select(AuditEvent).where(AuditEvent.target_kind == "field_report",
                                                         AuditEvent.target_id == report_id).order_by(AuditEvent.id))]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['at'][:19]}  {r['action']:<14} {r['by']}  {json.dumps(r['detail'])[:100]}")


@click.group("demo", cls=AppGroup, help="The demo data set.")
def demo_group() -> None:
    pass


@demo_group.command("load", help="Generate the demo archive (deterministic) and import it.")
@click.option("--messages", default=1500, show_default=True)
@click.option("--seed", default=7, show_default=True)
def demo_load(messages: int, seed: int) -> None:
    from .demo import write_demo_archives

    folder = Path(current_app.config["DATA_DIR"]) / "demo"
    paths = write_demo_archives(folder, messages=messages, seed=seed)
    with dbmod.session_scope() as s:
        for name, role in (("openstack-operators", "operator"), ("openstack-dev", "developer"),
                           ("cloudstack-users", "operator"), ("cloudstack-dev", "developer")):
            if s.exec(select(MailingList).where(MailingList.name == name)).first() is None:
                s.add(MailingList(name=name, role=role))
    summary = run_import(paths, show_progress=sys.stderr.isatty(), keep_index=False)
    click.echo(f"demo: {summary['messages_new']} new messages, {summary['duplicates']} already there")
    from .demo import DEVELOPERS, OPERATORS

    # The generator knows who operates and who develops; seeding from the first list cannot.
    with dbmod.session_scope() as s:
        for people, role in ((OPERATORS, "operator"), (DEVELOPERS, "developer")):
            for _name, address in people:
                person = s.exec(select(Person).where(Person.email == address)).first()
                if person is not None and person.role_source != "manual":
                    person.role, person.role_source = role, "manual"
                    s.add(person)
    from importers.gitlog import iter_commits

    from .demo import write_demo_gitlog
    from .models import TicketMention
    from .tickets import store_commits

    with dbmod.session_scope() as s:
        from sqlalchemy import func

        from .models import Message

        refs = {r: (first, last) for r, first, last in s.execute(
            select(TicketMention.ref, func.min(Message.date), func.max(Message.date))
            .join(Message, Message.id == TicketMention.message_pk).group_by(TicketMention.ref))
            if r.startswith(("lp:", "jira:CLOUDSTACK-")) and first is not None}
        log = write_demo_gitlog(folder / "demo-git.log", refs, seed)
        result = store_commits(s, iter_commits(log), jira_projects=["CLOUDSTACK"])
        refresh_all(s)  # pain points follow their tickets' fix and test state
    click.echo(f"demo: git history fixes {len(result.fixes)} tickets, {len(result.tested)} with a test")
    from .classify import load_taxonomy
    from .demo import demo_reports
    from .enrich import Enricher
    from .reports import create, group_reports, validate

    known = set(load_taxonomy(current_app.config.get("TAXONOMY") or None).components)
    filed, threads = 0, set()
    enricher = Enricher.from_config(current_app.config)
    with dbmod.session_scope() as s:
        for i, item in enumerate(demo_reports(seed)):
            report, new = create(s, current_app.config, validate(item["fields"], known),
                                  author_name=item["author_name"], author_email=item["author_email"],
                                  key=f"demo-{seed}-{i}", created=item["created"], source="demo", group_now=False,
                                  enricher=enricher)
            filed += new
            threads.add(report.thread_id)
        group_reports(s)
    _reindex(thread_ids=threads, painpoint_ids=None, tickets=True)
    click.echo(f"demo: {filed} field reports filed")


@click.group("painpoints", cls=AppGroup, help="Pain points: threads about one production problem.")
def painpoints_group() -> None:
    pass


@painpoints_group.command("group", help="Group pain threads not yet in a pain point (imports do this too).")
@click.option("--json", "as_json", is_flag=True)
def painpoints_group_command(as_json: bool) -> None:
    with dbmod.session_scope() as s:
        result = group(s, keep_index=False).as_dict()
    click.echo(json.dumps(result) if as_json else ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.items()))


@painpoints_group.command("refresh", help="Recompute every pain point's status and impact (recency changes daily).")
def painpoints_refresh() -> None:
    with dbmod.session_scope() as s:
        n = refresh_all(s)
    indexed = _reindex(painpoint_ids=None)
    click.echo(f"refreshed {n} pain points" + (f"; {indexed['index_problem']}" if "index_problem" in indexed else ""))


@painpoints_group.command("list", help="Pain points, highest impact first.")
@click.option("--component", default=None)
@click.option("--status", default=None)
@click.option("--cycle", "cycle_name", default=None)
@click.option("--sort", type=click.Choice(["impact", "recent", "oldest", "reports", "triage"]), default="impact")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def painpoints_list(component: str | None, status: str | None, cycle_name: str | None, sort: str, limit: int,
                    as_json: bool) -> None:
    from .cycles import all_cycles, find
    from .painpoints import coverage, list_painpoints

    with dbmod.session_scope() as s:
        cycle = find(all_cycles(s), cycle_name) if cycle_name else None
        if cycle_name and cycle is None:
            raise click.ClickException(f"no cycle {cycle_name}; `flask cycles list` shows them")
        total, items = list_painpoints(s, component=component, status=status, cycle=cycle, sort=sort, limit=limit)
        cover = coverage(s, cycle)
    if as_json:
        click.echo(json.dumps({"total": total, "coverage": cover, "items": items}))
        return
    rate = "n/a" if cover["rate"] is None else f"{cover['rate']:.0%}"
    click.echo(f"{total} pain points; coverage {rate} of {cover['operator_pain_points']} with operators")
    for p in items:
        click.echo(f"#{p['id']:<5} {p['impact']['score']:>8.2f}  {p['status']:<15} {p['reports']:>3} reports  "
                   f"{p['title'][:70]}  [{', '.join(p['components'])}]")


@painpoints_group.command("merge", help="Merge pain point SOURCE into INTO (undo with `painpoints undo`).")
@click.argument("source", type=int)
@click.argument("into", type=int)
@click.option("--by", default="cli")
def painpoints_merge(source: int, into: int, by: str) -> None:
    from .painpoints import PainPointError, merge

    with dbmod.session_scope() as s:
        try:
            event = merge(s, source, into, by)
        except PainPointError as exc:
            raise click.ClickException(exc.message) from exc
        click.echo(f"merged #{source} into #{into} (event {event.id})")


@painpoints_group.command("undo", help="Undo a merge or split by its event id.")
@click.argument("event_id", type=int)
@click.option("--by", default="cli")
def painpoints_undo(event_id: int, by: str) -> None:
    from .painpoints import PainPointError, undo

    with dbmod.session_scope() as s:
        try:
            undo(s, event_id, by)
        except PainPointError as exc:
            raise click.ClickException(exc.message) from exc
    click.echo(f"undid event {event_id}")


@click.group("cycles", cls=AppGroup, help="Release cycles (data/cycles.toml and the database).")
def cycles_group() -> None:
    pass


@cycles_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def cycles_list(as_json: bool) -> None:
    from .cycles import CycleError, all_cycles

    with dbmod.session_scope() as s:
        try:
            cycles = [c.as_dict() for c in all_cycles(s)]
        except CycleError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(cycles))
        return
    for c in cycles:
        click.echo(f"{c['name']:<20} {c['start']} .. {c['end']}  ({c['source']})")


@cycles_group.command("add", help="Add a cycle or move the dates of one added before.")
@click.argument("name")
@click.option("--start", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--end", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
def cycles_add(name: str, start: object, end: object) -> None:
    from datetime import datetime

    from .cycles import CycleError, add_cycle

    assert isinstance(start, datetime) and isinstance(end, datetime)
    with dbmod.session_scope() as s:
        try:
            span = add_cycle(s, name, start, end)
        except CycleError as exc:
            raise click.ClickException(str(exc)) from exc
        refresh_all(s)  # reach depends on cycles
    click.echo(f"cycle {span.name}: {span.start.date()} .. {span.end.date()}")


def _known_components() -> list[str]:
    from .classify import load_taxonomy

    return list(load_taxonomy(current_app.config.get("TAXONOMY") or None).components)


@click.group("subscriptions", cls=AppGroup, help="Who gets the weekly digest, for which components.")
def subscriptions_group() -> None:
    pass


@subscriptions_group.command("add", help="Subscribe a user to components (comma-separated) or all.")
@click.option("--email", required=True)
@click.option("--components", required=True, help="a,b or all")
def subscriptions_add(email: str, components: str) -> None:
    from .digest import DigestError, parse_components, subscribe

    try:
        wanted = parse_components(components, _known_components())
    except DigestError as exc:
        raise click.ClickException(str(exc)) from exc
    with dbmod.session_scope() as s:
        user = s.exec(select(User).where(User.email == email.lower())).first()
        if user is None:
            raise click.ClickException(f"no user with address {email}; create one with `flask users create`")
        subscribe(s, user, wanted)
    click.echo(f"{email.lower()} follows {'all components' if wanted is None else ', '.join(sorted(wanted))}")


@subscriptions_group.command("list")
def subscriptions_list() -> None:
    from .models import Subscription

    with dbmod.session_scope() as s:
        for user, sub in s.execute(select(User, Subscription).join(Subscription, Subscription.user_id == User.id)
                                   .order_by(User.email)).all():
            click.echo(f"{user.email:<40} {'active' if sub.active else 'unsubscribed':<13} {sub.components}")


@subscriptions_group.command("remove")
@click.option("--email", required=True)
def subscriptions_remove(email: str) -> None:
    from .digest import unsubscribe

    with dbmod.session_scope() as s:
        user = s.exec(select(User).where(User.email == email.lower())).first()
        if user is None or not unsubscribe(s, user.id or 0):
            raise click.ClickException(f"{email} has no active subscription")
    click.echo(f"{email.lower()} unsubscribed")


def _cycle_week(session: Any, cycle_name: str, week_name: str) -> tuple[Any, Any]:
    from .cycles import all_cycles, find
    from .digest import DigestError, check_week_in_cycle, parse_week

    cycle = find(all_cycles(session), cycle_name)
    if cycle is None:
        raise click.ClickException(f"no cycle {cycle_name}; `flask cycles list` shows them")
    try:
        week = parse_week(week_name)
        check_week_in_cycle(cycle, week)
    except DigestError as exc:
        raise click.ClickException(str(exc)) from exc
    return cycle, week


@click.group("digest", cls=AppGroup, help="The weekly digest of pain with no fix or no test.")
def digest_group() -> None:
    pass


@digest_group.command("preview", help="Print one recipient's digest (or the all-components one) without sending.")
@click.option("--cycle", "cycle_name", required=True)
@click.option("--week", "week_name", required=True, help="ISO week, e.g. 2014-W23")
@click.option("--to", "to", default=None, help="a subscriber's address: their components")
@click.option("--format", "fmt", type=click.Choice(["text", "html", "json"]), default="text", show_default=True)
def digest_preview(cycle_name: str, week_name: str, to: str | None, fmt: str) -> None:
    from .digest import build, components_of_subscription, for_recipient, render, unsubscribe_token
    from .models import Subscription

    with dbmod.session_scope() as s:
        cycle, week = _cycle_week(s, cycle_name, week_name)
        wanted, url = None, ""
        if to:
            row = s.execute(select(User, Subscription).join(Subscription, Subscription.user_id == User.id, isouter=True)
                            .where(User.email == to.lower())).first()
            if row is None:
                raise click.ClickException(f"no user with address {to}")
            user, sub = row
            wanted = components_of_subscription(sub) if sub is not None else None
            url = f"{str(current_app.config['BASE_URL']).rstrip('/')}/unsubscribe/" \
                  f"{unsubscribe_token(current_app.config['SECRET_KEY'], user.id)}"
        data = for_recipient(build(s, cycle, week, base_url=str(current_app.config["BASE_URL"])), wanted)
        click.echo(render(data, fmt, unsubscribe_url=url))


@digest_group.command("send", help="Freeze and send the week's digests; each recipient gets it once.")
@click.option("--cycle", "cycle_name", required=True)
@click.option("--week", "week_name", required=True, help="ISO week, e.g. 2014-W23")
@click.option("--json", "as_json", is_flag=True)
def digest_send(cycle_name: str, week_name: str, as_json: bool) -> None:
    from .digest import send_week
    from .mail import MailConfigError

    with dbmod.session_scope() as s:
        cycle, week = _cycle_week(s, cycle_name, week_name)
        try:
            result = send_week(s, current_app.config, cycle, week)
        except MailConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            raise click.ClickException(f"cannot reach the mail server ({exc}); the digests stay frozen and the "
                                       "next run sends them") from exc
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(", ".join(f"{k} {v}" for k, v in result.items()))
    if result.get("uncertain"):
        click.echo(f"{result['uncertain']} digests were being sent when a sender stopped; check the mail log "
                   "before resending them", err=True)


@click.group("scheduler", cls=AppGroup, help="The one process that runs periodic jobs.")
def scheduler_group() -> None:
    pass


@scheduler_group.command("run", help="Run the weekly digest and the periodic jobs until stopped.")
def scheduler_run() -> None:
    import logging

    from . import scheduler as sched

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with sched.single_instance(app.config, on_wait=lambda: click.echo(
            "another scheduler is running; waiting for the scheduler lock", err=True)):
        scheduler = sched.build(app)
        click.echo("scheduler started: " + ", ".join(f"{j.id} next at {j.trigger}" for j in scheduler.get_jobs()),
                   err=True)
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            pass


@click.group("sources", cls=AppGroup, help="Feeds and remote list archives Earshot follows by itself.")
def sources_group() -> None:
    pass


@sources_group.command("add", help="Follow a feed, a remote list archive or a tracker feed.")
@click.option("--kind", type=click.Choice(["feed", "pipermail", "ponymail", "hyperkitty", "tracker"]), required=True)
@click.option("--url", required=True)
@click.option("--list", "list_name", default="", help="the list its messages belong to (list@domain for Pony Mail)")
@click.option("--name", default="", help="a short name (default: the list)")
@click.option("--role", type=click.Choice(ROLES), default="unknown", help="operator or developer list")
@click.option("--every", default="1h", show_default=True, help="poll interval: 30m, 1h, 1d")
@click.option("--since", default="", help="first month (YYYY-MM) of a Pony Mail or HyperKitty archive")
def sources_add(kind: str, url: str, list_name: str, name: str, role: str, every: str, since: str) -> None:
    from .polling import SourceError, add_source

    with dbmod.session_scope() as s:
        try:
            source = add_source(s, name=name, kind=kind, url=url, list_name=list_name, role=role, every=every,
                                since=since)
        except SourceError as exc:
            raise click.ClickException(f"--{exc.field}: {exc.message}") from exc
        click.echo(f"following {source.name} ({kind}) every {source.every_minutes} minutes")


@sources_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def sources_list(as_json: bool) -> None:
    from .models import Source
    from .threads import iso

    with dbmod.session_scope() as s:
        rows = [{"name": x.name, "kind": x.kind, "url": x.url, "list": x.list_name, "role": x.role,
                 "every_minutes": x.every_minutes, "enabled": x.enabled, "last_run": iso(x.last_run_at),
                 "last_status": x.last_status, "last_error": x.last_error, "messages_total": x.messages_total}
                for x in s.execute(select(Source).order_by(Source.name)).scalars()]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['name']:<28} {r['kind']:<10} {'on ' if r['enabled'] else 'off'} every {r['every_minutes']}m  "
                   f"last {r['last_run'] or 'never'} {r['last_status']}  {r['url']}")


@sources_group.command("enable")
@click.argument("name")
def sources_enable(name: str) -> None:
    _set_enabled(name, True)


@sources_group.command("disable")
@click.argument("name")
def sources_disable(name: str) -> None:
    _set_enabled(name, False)


def _set_enabled(name: str, on: bool) -> None:
    from .models import Source

    with dbmod.session_scope() as s:
        source = s.execute(select(Source).where(Source.name == name)).scalars().first()
        if source is None:
            raise click.ClickException(f"no source {name}")
        source.enabled = on
        s.add(source)
    click.echo(f"{name} {'enabled' if on else 'disabled'}")


@sources_group.command("poll", help="Poll every enabled source now (or the one named).")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
def sources_poll(name: str | None, as_json: bool) -> None:
    from .models import Source
    from .polling import fetcher_from, poll

    fetcher = fetcher_from(current_app.config)
    results = []
    with dbmod.session_scope() as s:
        q = select(Source).order_by(Source.id)
        q = q.where(Source.name == name) if name else q.where(Source.enabled.is_(True))
        sources = list(s.execute(q).scalars())
        if name and not sources:
            raise click.ClickException(f"no source {name}")
        for source in sources:
            results.append(poll(s, source, fetcher).as_dict())
    summary = {"messages_new": sum(r["messages_new"] for r in results),
               "duplicates": sum(r["duplicates"] for r in results),
               "problems": [p for r in results for p in r["problems"]], "sources": results}
    if as_json:
        click.echo(json.dumps(summary))
        return
    for r in results:
        click.echo(f"{r['source']}: {r['status']}, {r['messages_new']} new, {r['duplicates']} already stored, "
                   f"{r['not_modified']} not modified, {len(r['problems'])} problems")
        _echo_problems(r["problems"])


@click.group("index", cls=AppGroup, help="The search index (derived from the database).")
def index_group() -> None:
    pass


@index_group.command("rebuild", help="Build a fresh index beside the live one, then swap it in.")
def index_rebuild() -> None:
    from .models import PainPoint, Thread, Ticket
    from .search import all_documents, index_for

    skip_last_collection()

    with dbmod.session_scope() as s:
        from sqlalchemy import func as sqlfunc

        total = sum(int(s.execute(select(sqlfunc.count(m.id))).scalar_one()) for m in (Thread, PainPoint, Ticket))
        with tqdm(total=total, unit="doc", desc="index", disable=not sys.stderr.isatty(), file=sys.stderr) as bar, \
                fewer_collections():
            n = index_for(current_app.config).rebuild(all_documents(s), progress=bar.update)
    click.echo(f"indexed {n} documents")


@index_group.command("stats")
def index_stats() -> None:
    from .search import stats

    click.echo(json.dumps(stats(current_app.config)))


@click.command("search", help="Search threads, pain points and tickets (the search page's query language).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--sort", type=click.Choice(["relevance", "date", "impact"]), default="relevance")
@click.option("--page", default=1, show_default=True)
@click.argument("query", nargs=-1, required=True)
@with_appcontext
def search_command(as_json: bool, sort: str, page: int, query: tuple[str, ...]) -> None:
    import re as _re

    from .search import SearchError, index_for, parse

    try:
        result = index_for(current_app.config).search(parse(" ".join(query)), sort=sort, page=page)
    except SearchError as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        click.echo(json.dumps({**result, "page": page}))
        return
    click.echo(f"{result['total']} hits" + (f"; did you mean: {result['suggestion']}" if result["suggestion"] else ""))
    for h in result["hits"]:
        snippet = _re.sub(r"</?mark>", "*", h["snippet"]).replace("\n", " ")[:160]
        click.echo(f"{h['kind']:<9} #{h['id']:<6} {(h['date'] or '')[:10]}  {h['title'][:70]}\n          {snippet}")
