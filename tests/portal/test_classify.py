"""Components and references: the classifier, evaluation, corrections and their API."""

import json
from pathlib import Path

import pytest
from sqlmodel import select

from portal.classify import aggregate, load_taxonomy, parse_taxonomy
from portal.enrich import Enricher
from portal.evaluate import LabelError, evaluate
from portal.models import MessageComponent

DATA = Path(__file__).resolve().parents[1] / "data"


def test_default_taxonomy_has_the_top_level_components():
    tax = load_taxonomy()
    assert set(tax.top_level) == {"quotas", "scheduling", "cells", "networking", "storage", "upgrades",
                                  "ci-testing", "identity", "compute", "performance"}
    assert "networking/virtual-router" in tax.components
    assert all(c.owner and c.description for c in tax.components.values())


def test_taxonomy_errors_name_the_problem():
    with pytest.raises(ValueError, match="no parent"):
        parse_taxonomy('[components."a/b"]\nwords=["x"]\n')
    with pytest.raises(ValueError, match="components.toml"):
        parse_taxonomy("not toml [")


def test_judgments_carry_reasons_and_only_new_text_counts():
    tax = load_taxonomy()
    [top, *_] = tax.classify("[nova] Quota usage drifts after resize", "quota usage is wrong")
    assert top.component == "quotas" and top.confidence >= tax.threshold
    assert any("quota" in r for r in top.reasons)
    assert tax.classify("Re: lunch", "") == []


def test_judgments_are_the_same_in_every_process(shared):
    """Components, pain and their reasons do not depend on a process's string hashing (sets
    iterate in another order in each process): a parsing process judges some messages, the
    storing process the others, and a re-import must not change what was stored."""
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from portal.classify import load_taxonomy\n"
        "t = load_taxonomy()\n"
        "out = []\n"
        "for p in sorted(Path(sys.argv[1]).glob('*.txt')):\n"
        "    text = p.read_text(errors='replace')\n"
        "    subject = '[Nova][Neutron][ops][cinder] ' + text.split('\\n', 1)[0]\n"
        "    out.append([[j.component, j.confidence, j.reasons] for j in t.classify(subject, text)])\n"
        "    out.append(list(t.pain.judge(subject, text).reasons))\n"
        "print(json.dumps(out))\n")
    root = Path(__file__).resolve().parents[2]
    runs = [subprocess.run([sys.executable, "-c", script, str(shared / "corpus/labeled-ops/msgs")], cwd=root,
                           env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                           check=True).stdout for seed in ("1", "2", "3")]
    assert runs[0] == runs[1] == runs[2]
    judged = json.loads(runs[0])
    assert sum(len(reasons) > 1 for reasons in judged[1::2]) > 10  # orders that could have differed


def test_aggregate_keeps_what_the_thread_is_about():
    js = [("networking", 0.9, ["a"]), ("networking", 0.8, ["b"]), ("storage", 0.8, ["c"])]
    assert [c["name"] for c in aggregate(js, 0.5)] == ["networking"]
    assert [c["name"] for c in aggregate(js, 0.4)] == ["networking", "storage"]


def test_evaluate_on_the_seeds_labeled_here(shared):
    report = evaluate(DATA / "seeds-labels.jsonl", Enricher(load_taxonomy()))
    assert report["n"] == 5
    assert report["refs"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert report["components"]["macro_f1"] >= 0.6


def test_evaluate_on_labeled_list_messages(shared):
    """Measured on labels made outside the project (none of it was used to write the rules'
    words; thresholds were tuned on the even lines only)."""
    report = evaluate(shared / "corpus/labeled-ops/labels.jsonl", Enricher(load_taxonomy()))
    assert report["n"] == 64
    assert report["refs"]["precision"] >= 0.95 and report["refs"]["recall"] >= 0.90
    assert report["components"]["macro_f1"] >= 0.75


def test_evaluate_decoys_and_bad_label_files(tmp_path):
    report = evaluate(DATA / "refs-decoys.jsonl", Enricher(load_taxonomy()))
    assert report["refs"]["precision"] == 1.0 and report["refs"]["recall"] == 1.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\nnot json\n')
    with pytest.raises(LabelError, match="line 2"):
        evaluate(bad, Enricher(load_taxonomy()))


def test_cli_evaluate_json(runner, shared):
    out = runner.invoke(args=["evaluate", "--json", str(DATA / "seeds-labels.jsonl")])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert set(report) >= {"n", "components", "refs", "pain"}
    assert set(report["components"]) >= {"macro_f1", "per_component"}


def test_thread_json_has_components_and_refs_from_new_text_only(client, import_paths, tmp_path):
    (tmp_path / "t.mbox").write_text(
        "From a@b Mon Sep  1 10:00:00 2014\nFrom: Op <op@x.org>\nDate: Mon, 1 Sep 2014 10:00:00 +0000\n"
        "Subject: [neutron] l3-agent loses routers\nMessage-ID: <r1@x>\n\n"
        "After upgrade the l3-agent drops routers, see https://bugs.launchpad.net/neutron/+bug/1500001\n\n"
        "From a@b Mon Sep  1 10:00:00 2014\nFrom: Dev <dev@x.org>\nDate: Mon, 1 Sep 2014 11:00:00 +0000\n"
        "Subject: Re: [neutron] l3-agent loses routers\nMessage-ID: <r2@x>\nIn-Reply-To: <r1@x>\n\n"
        "Thanks, looking.\n\n> see https://bugs.launchpad.net/neutron/+bug/1500001\n\n", encoding="utf-8")
    import_paths(tmp_path / "t.mbox", list_name="openstack-operators")
    [thread] = client.get("/api/v1/threads").get_json()["items"]
    assert thread["refs"] == ["lp:1500001"]
    assert thread["components"][0]["name"] == "networking"
    assert {"name", "confidence", "reasons", "source"} <= set(thread["components"][0])
    detail = client.get(f"/api/v1/threads/{thread['id']}").get_json()
    assert detail["refs"] == ["lp:1500001"]
    assert client.get("/api/v1/threads?component=networking").get_json()["total"] == 1
    assert client.get("/api/v1/threads?component=quotas").get_json()["total"] == 0


def test_corrections_need_a_developer_and_survive_reclassification(app, client, runner, import_paths, shared,
                                                                   session):
    import_paths(shared / "seeds/004_73bcfa887d0a9a86.txt")
    [thread] = client.get("/api/v1/threads").get_json()["items"]
    url = f"/api/v1/threads/{thread['id']}/components"
    body = {"confirm": ["quotas"], "reject": ["compute"]}
    assert client.patch(url, json=body).status_code == 401
    runner.invoke(args=["users", "create", "--email", "op@x.org", "--role", "operator"])
    runner.invoke(args=["users", "create", "--email", "dev@x.org", "--role", "developer"])
    op = runner.invoke(args=["tokens", "create", "--email", "op@x.org"]).output.strip().splitlines()[-1]
    dev = runner.invoke(args=["tokens", "create", "--email", "dev@x.org"]).output.strip().splitlines()[-1]
    assert client.patch(url, json=body, headers={"Authorization": f"Bearer {op}"}).status_code == 403
    bad = client.patch(url, json={"confirm": ["nope"]}, headers={"Authorization": f"Bearer {dev}"})
    assert bad.status_code == 422 and "confirm" in bad.get_json()["errors"]
    ok = client.patch(url, json=body, headers={"Authorization": f"Bearer {dev}"})
    assert ok.status_code == 200
    names = [c["name"] for c in ok.get_json()["components"]]
    assert names[0] == "quotas" and "compute" not in names
    assert runner.invoke(args=["classify", "--all"]).exit_code == 0
    after = [c["name"] for c in client.get(f"/api/v1/threads/{thread['id']}").get_json()["components"]]
    assert after[0] == "quotas" and "compute" not in after
    assert session.exec(select(MessageComponent)).first() is not None


def test_components_page_and_api(client, import_paths, shared):
    import_paths(shared / "seeds")
    data = client.get("/api/v1/components").get_json()
    names = [c["name"] for c in data["components"]]
    assert "ci-testing" in names and 1 <= len(data["months"]) <= 24
    ci = next(c for c in data["components"] if c["name"] == "ci-testing")
    assert ci["threads"] >= 2 and sum(ci["series"]) == ci["threads"] and len(ci["series"]) == len(data["months"])
    page = client.get("/components")
    assert page.status_code == 200 and b"<polyline" in page.data and b"ci-testing" in page.data
    listing = client.get("/?component=networking").get_data(as_text=True)
    assert "Blameless post mortem" in listing and "A Hypervisor supporting containers" not in listing


def test_thread_page_shows_components_and_ticket_badges(client, import_paths, shared):
    import_paths(shared / "seeds/000_8e50db02ec839059.txt")
    [thread] = client.get("/api/v1/threads").get_json()["items"]
    html = client.get(f"/threads/{thread['id']}").get_data(as_text=True)
    assert "jira:CLOUDSTACK-8697" in html and "fix: unknown" in html
    assert 'class="badge comp"' in html


def test_a_changed_taxonomy_retags_old_items_on_the_next_import(app, import_paths, shared, client, tmp_path):
    import_paths(shared / "seeds/004_73bcfa887d0a9a86.txt")
    [thread] = client.get("/api/v1/threads").get_json()["items"]
    assert "cells" not in [c["name"] for c in thread["components"]]
    edited = tmp_path / "components.toml"
    text = (Path(app.root_path).parent / "data" / "components.toml").read_text()
    text = text.replace('version = "', 'version = "edited-', 1).replace(
        'words = ["cells:2.5"', 'words = ["devstack:40", "cells:2.5"', 1)
    edited.write_text(text)
    app.config["TAXONOMY"] = str(edited)
    summary = import_paths(shared / "seeds/001_faecf11778e9ac6e.txt")
    assert summary["rejudged"] == 2  # the two stored messages of the old thread
    after = client.get(f"/api/v1/threads/{thread['id']}").get_json()
    assert after["components"][0]["name"] == "cells"
    assert after["components"][0]["ruleset_version"].startswith("edited-")


def test_model_learns_from_developer_corrections(app, runner, client, tmp_path):
    from portal.demo import write_mbox

    runner.invoke(args=["import", str(write_mbox(tmp_path / "demo.mbox", 400, seed=3))])
    runner.invoke(args=["users", "create", "--email", "dev@x.org", "--role", "developer"])
    token = runner.invoke(args=["tokens", "create", "--email", "dev@x.org"]).output.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    threads = client.get("/api/v1/threads?limit=200").get_json()["items"]
    ldap = [t for t in threads if t["subject"].startswith("Token validation")][:4]
    other = [t for t in threads if t["subject"].startswith("Gate is flaky")][:4]
    assert len(ldap) >= 3 and len(other) >= 3
    # This team files LDAP token trouble under storage (their identity store lives there).
    for t in ldap:
        client.patch(f"/api/v1/threads/{t['id']}/components", json={"confirm": ["storage"]}, headers=auth)
    for t in other:
        client.patch(f"/api/v1/threads/{t['id']}/components", json={"confirm": ["ci-testing"]}, headers=auth)
    out = runner.invoke(args=["classify", "--learn"])
    assert out.exit_code == 0 and "learned" in out.output and "storage" in out.output
    (tmp_path / "new.mbox").write_text(
        "From a@b Mon Sep  1 10:00:00 2014\nFrom: Op <op@x.org>\nDate: Mon, 1 Sep 2014 10:00:00 +0000\n"
        "Subject: Token validation is slow with LDAP again\nMessage-ID: <new@x>\n\n"
        "Token validation takes several seconds when the identity backend is LDAP.\n\n", encoding="utf-8")
    runner.invoke(args=["import", str(tmp_path / "new.mbox")])
    window = client.get("/api/v1/threads?since=2014-09-01T09:59:00Z&until=2014-09-01T10:01:00Z").get_json()
    fresh = [t for t in window["items"] if t["participants"][0]["email"] == "op@x.org"]
    names = {c["name"]: c for c in fresh[0]["components"]}
    assert "storage" in names and "learned from" in names["storage"]["reasons"][0]


def test_learning_needs_enough_corrections(runner):
    out = runner.invoke(args=["classify", "--learn"])
    assert out.exit_code == 0 and "not enough corrections" in out.output


def test_process_talk_has_no_component():
    tax = load_taxonomy()
    assert tax.classify("[openstack-dev] [neutron] Announcing my candidacy for PTL", "neutron dvr l3-agent") == []
    assert tax.classify("[release] Feature freeze for Pike", "nova cinder neutron") == []
    assert tax.classify("[all] Zuul v3 rollout", "the gate and zuul jobs")[0].component == "ci-testing"


def test_pain_or_talk():
    pain = load_taxonomy().pain
    hurt = pain.judge("tripleo gate is blocked", "The gate queue was 25h+, jobs are failing since the regression.")
    assert hurt.is_pain and any("regression" in r for r in hurt.reasons)
    talk = pain.judge("Proposal: preview features", "I'd like to propose a spec for discussion at the summit.")
    assert not talk.is_pain and talk.score < 0


def test_evaluate_reports_pain_figures(shared):
    report = evaluate(shared / "corpus/labeled-ops/labels.jsonl", Enricher(load_taxonomy()))
    assert report["pain"]["support"] == 10
    assert report["pain"]["f1"] >= 0.6  # measured 0.706 (0.667 on the half the threshold was not set on)


def test_evaluate_names_the_line_of_a_missing_file(tmp_path, runner):
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"text": "quota", "components": []}\n{"file": "gone.txt", "components": []}\n')
    with pytest.raises(LabelError, match=r"line 2: no file .*gone\.txt"):
        evaluate(labels, Enricher(load_taxonomy()))
    out = runner.invoke(args=["evaluate", str(labels)])
    assert out.exit_code != 0 and "line 2" in out.output and "Traceback" not in out.output
