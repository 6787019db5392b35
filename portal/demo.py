"""Deterministic generator of realistic operator and developer list traffic, used by
`flask demo load` and by the benchmarks. No Flask, no database: it writes mbox/Maildir files."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

LISTS = {
    "openstack-operators": "lists.openstack.org",
    "openstack-dev": "lists.openstack.org",
    "cloudstack-users": "cloudstack.apache.org",
    "cloudstack-dev": "cloudstack.apache.org",
}
OPERATORS = [("Marta Kowalska", "marta@cern.example"), ("Joe Topjian", "joe@cybera.example"),
             ("Tim Bell", "tim@cern.example"), ("Subbu Allamaraju", "subbu@ebay.example"),
             ("Ana Reyes", "ana@telco.example"), ("Kenji Sato", "kenji@hoster.example"),
             ("Priya Nair", "priya@univ.example"), ("Lars Nilsson", "lars@isp.example")]
DEVELOPERS = [("Sean Dague", "sean@dague.example"), ("Matt Riedemann", "mriedem@nova.example"),
              ("Remi Bergsma", "remi@cloudstack.example"), ("Sylvain Bauza", "sbauza@nova.example"),
              ("Kevin Benton", "kevin@neutron.example"), ("Rohit Yadav", "rohit@cloudstack.example")]
TOPICS = [
    ("quotas", "[nova] Quota usage drifts after instance resize",
     "After resizing instances the quota usage in nova is higher than the real usage. "
     "We run Juno on 400 hypervisors and every week we have to run a script to reset the counters."),
    ("scheduling", "[nova] Scheduler places instances on full hosts",
     "The filter scheduler keeps placing instances on hosts that are already full, and the builds "
     "fail with NoValidHost after retries. It started after we enabled the AggregateCoreFilter."),
    ("cells", "[nova] Cells v1 regression after upgrade",
     "After upgrading to Kilo the cells v1 setup stopped syncing instance state to the API cell. "
     "Instances stay in BUILD forever."),
    ("networking", "Virtual router change broke default routes in VPC",
     "Since the virtual router refactor, VMs in VPC tiers get no default route, so there is no "
     "public internet access and VPNs do not work."),
    ("storage", "[cinder] Volumes stuck in detaching with Ceph",
     "Volumes get stuck in detaching state when the Ceph cluster is slow; we reset them by hand "
     "in the database."),
    ("upgrades", "Upgrade from Icehouse to Juno broke the l3-agent",
     "The l3-agent stopped spawning routers after the upgrade; the namespaces exist but iptables "
     "rules are missing."),
    ("ci-testing", "[infra] Gate is flaky on the grenade job",
     "The grenade job fails one run in five with a timeout while waiting for the API. It blocks "
     "every merge in our project."),
    ("identity", "[keystone] Token validation is slow with LDAP",
     "Token validation takes several seconds when the identity backend is LDAP with 20k users."),
    ("performance", "nova-compute uses 100% CPU with many instances",
     "With more than 200 instances per host nova-compute spins at 100% CPU in the periodic tasks."),
]
# The same topics in other operators' words: problems nobody has ticketed yet are written this way.
OTHER_WORDING = [
    ("Instance counts in nova limits are wrong", "nova limits shows more cores and RAM in use than our tenants "
     "really have; they cannot boot anything although their projects are half empty."),
    ("NoValidHost although capacity is free", "Boots fail with NoValidHost while the hypervisor statistics show "
     "plenty of free RAM and cores; placement seems to count deleted instances."),
    ("API cell shows stale instance state", "Instances deleted in the child cell still show ACTIVE in the API "
     "cell days later, and users open tickets with us every morning."),
    ("VPC tier VMs lose their gateway", "After restarting the VPC virtual router, VMs in the tiers lose their "
     "gateway and can only reach each other, not the outside."),
    ("Ceph-backed volumes never finish detaching", "Detaching an RBD volume hangs; the attachment stays in the "
     "database and the volume cannot be attached anywhere else until we edit the row."),
    ("Routers missing after the l3-agent restarts", "When the l3-agent restarts, a third of the routers never "
     "come back and floating IPs stop answering until we reschedule them."),
    ("Grenade times out waiting for the API", "Our patches wait days in the gate because grenade hits the "
     "timeout while the API comes up; rechecks pass half of the time."),
    ("Keystone logins take seconds against Active Directory", "Every login takes four to eight seconds since "
     "we moved users to Active Directory; the dashboard times out at peak hours."),
    ("Periodic tasks pin a CPU core on busy hypervisors", "On hypervisors with a few hundred guests one core "
     "stays at 100% from the compute service's periodic tasks and reboots queue up."),
]
TICKETS = ["https://bugs.launchpad.net/nova/+bug/{n}", "LP: #{n}", "CLOUDSTACK-{c}",
           "https://review.openstack.org/#/c/{g}/"]
REPLIES = [
    "We see the same on our deployment, {n} nodes on {release}. It hurts every week.",
    "This looks like bug {ticket}; there is a patch up for review but it has no test yet.",
    "Could you paste the logs from the compute node? Which release are you running?",
    "A fix merged on master last week ({ticket}), but it is not backported to {release} yet.",
    "Same here. Our workaround is a cron job that restarts the service every hour.",
    "I proposed a test for this in the functional suite, see {ticket}.",
]
RELEASES = ["Icehouse", "Juno", "Kilo", "Liberty", "4.5", "4.6"]
# The same problem comes back in new threads, from other operators and on other lists; each
# problem has its ticket (or none yet) and its own wording of the topic's subject.
VARIANTS = ["", " again", " in production", " under load", " since last week"]


def _ticket(rng: random.Random) -> str:
    return rng.choice(TICKETS).format(n=rng.randint(1200000, 1500000), c=rng.randint(8000, 9200),
                                      g=rng.randint(60000, 200000))


def generate_messages(count: int, seed: int = 7, start: datetime | None = None) -> Iterator[bytes]:
    """`count` RFC 5322 messages in threads across operator and developer lists."""
    rng = random.Random(seed)
    when = start or datetime(2014, 4, 17, 8, 0, tzinfo=UTC)
    # Spread any number of messages over about ten years, so every date stays a real past date.
    max_gap = max(2, min(1440, int(2 * 10 * 365 * 24 * 60 / max(count, 1))))
    open_threads: list[tuple[str, str, str, str]] = []  # (list, subject, root id, last id)
    problems: list[tuple[int, str, str | None]] = []  # (topic, subject, its ticket)
    ticket_of: dict[str, str | None] = {}
    for i in range(count):
        when += timedelta(minutes=rng.randint(1, max_gap))
        reply = open_threads and rng.random() < 0.65
        if reply:
            lst, subject, root, last = rng.choice(open_threads)
        else:
            if problems and rng.random() < 0.6:
                topic, subject, problem_ticket = rng.choice(problems[-15:])
            else:
                topic = rng.randrange(len(TOPICS))
                problem_ticket = _ticket(rng) if rng.random() < 0.75 else None
                subject = (TOPICS[topic][1] if problem_ticket else OTHER_WORDING[topic][0]) + rng.choice(VARIANTS)
                problems.append((topic, subject, problem_ticket))
            lst = rng.choice(list(LISTS))
            root = last = ""
        operator_list = "operators" in lst or "users" in lst
        name, addr = rng.choice(OPERATORS if operator_list or rng.random() < 0.3 else DEVELOPERS)
        mid = f"<demo-{seed}-{i}@{LISTS[lst]}>"
        if reply:
            known = ticket_of.get(root)  # a problem nobody ticketed yet gets replies that name none
            body = rng.choice([r for r in REPLIES if known or "{ticket}" not in r]).format(
                n=rng.randint(20, 2000), release=rng.choice(RELEASES), ticket=known)
            body += "\n\n> " + "\n> ".join(["Earlier text of the thread,", "quoted by the mail client."])
            headers = [f"Subject: Re: [{lst}] {subject}", f"In-Reply-To: {last}", f"References: {root} {last}"]
        else:
            text = TOPICS[topic][2] if problem_ticket else OTHER_WORDING[topic][1]
            body = f"{text}\n\nRelease: {rng.choice(RELEASES)}." + (f" Related: {problem_ticket}" if problem_ticket
                                                                    else "")
            ticket_of[mid] = problem_ticket
            headers = [f"Subject: [{lst}] {subject}"]
        msg = "\n".join([
            f"From: {name} <{addr}>",
            f"To: {lst}@{LISTS[lst]}",
            f"Date: {format_datetime(when)}",
            f"Message-ID: {mid}",
            f"List-Id: {lst.title()} <{lst}.lists.{LISTS[lst]}>",
            *headers,
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "",
            body,
            "",
            "_______________________________________________",
            f"{lst} mailing list",
            "",
        ])
        if reply:
            open_threads = [t for t in open_threads if t[2] != root] + [(lst, subject, root, mid)]
        else:
            open_threads.append((lst, subject, mid, mid))
        open_threads = open_threads[-40:]
        yield msg.encode("utf-8")


def write_mbox(path: Path, count: int, seed: int = 7) -> Path:
    """Write the generated messages as an mboxrd file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for raw in generate_messages(count, seed):
            fh.write(b"From demo@earshot.invalid Mon Jan  1 00:00:00 2024\n")
            for line in raw.split(b"\n"):
                if line.lstrip(b">").startswith(b"From "):
                    line = b">" + line
                fh.write(line + b"\n")
            fh.write(b"\n")
    return path


def write_maildir(folder: Path, count: int, seed: int = 7) -> Path:
    """Write the same messages as a Maildir (cur/new/tmp)."""
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(generate_messages(count, seed)):
        (folder / "cur" / f"{1400000000 + i}.{i}.earshot:2,S").write_bytes(raw)
    return folder


def write_demo_archives(folder: Path, messages: int = 1500, seed: int = 7) -> list[Path]:
    """The demo data set for `make run`."""
    return [write_mbox(folder / "demo.mbox", messages, seed)]


def write_demo_gitlog(path: Path, refs: dict[str, tuple[datetime, datetime]], seed: int = 7) -> Path:
    """A `git log --format=fuller --numstat` history that fixes some of the given Launchpad and Jira
    references (each with the first and last time it was written about): some with a test, some
    without, some only partly; the rest stay unfixed. Most fixes land after the last report; some
    land between, so the problem comes back after its fix (a regression)."""
    rng = random.Random(seed)
    blocks = []
    for i, ref in enumerate(sorted(refs)):
        roll = rng.random()
        if roll > 0.7:
            continue  # never fixed
        kind, _, ident = ref.partition(":")
        first, last = (d.replace(tzinfo=UTC) if d.tzinfo is None else d for d in refs[ref])
        if rng.random() < 0.15 and last - first > timedelta(days=2):
            when = first + (last - first) / 2
        else:
            when = last + timedelta(days=rng.randint(2, 30), hours=rng.randint(0, 23))
        tested = roll < 0.35
        if kind == "lp":
            trailer = f"{'Partial' if 0.6 < roll <= 0.7 else 'Closes'}-Bug: #{ident}"
            subject = f"Fix the problem reported in bug {ident}"
        elif kind == "jira":
            trailer = ""
            subject = f"{ident}: fix the reported regression"
        else:
            continue
        files = ["nova/compute/manager.py"] + (["nova/tests/unit/compute/test_manager.py"] if tested else [])
        date = format_datetime(when)
        blocks.append("\n".join([
            f"commit {random.Random(f'{seed}-{i}').getrandbits(160):040x}",
            "Author:     Demo Developer <dev@earshot.invalid>",
            f"AuthorDate: {date}",
            "Commit:     Demo Developer <dev@earshot.invalid>",
            f"CommitDate: {date}",
            "",
            f"    {subject}",
            "",
            *([f"    {trailer}"] if trailer else []),
            "",
            *[f"{rng.randint(1, 40)}\t{rng.randint(0, 10)}\t{f}" for f in files],
            "",
        ]))
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks.sort(key=lambda b: b.split("CommitDate: ", 1)[1].split("\n", 1)[0] and
                parsedate_to_datetime(b.split("CommitDate: ", 1)[1].split("\n", 1)[0]))
    path.write_text("\n".join(reversed(blocks)), encoding="utf-8")  # git prints newest first
    return path


def demo_reports(seed: int = 7, count: int = 12, start: datetime | None = None) -> Iterator[dict]:
    """Field reports as operators file them on the portal: a topic (some in other words), a
    release, a scale, a severity, sometimes a workaround and a ticket."""
    rng = random.Random(seed * 31 + 5)
    start = start or datetime(2015, 3, 1, 9, 0, tzinfo=UTC)
    for i in range(count):
        component, subject, text = TOPICS[i % len(TOPICS)]
        if rng.random() < 0.4:
            subject, text = OTHER_WORDING[i % len(OTHER_WORDING)]
        name, email = OPERATORS[rng.randrange(len(OPERATORS))]
        fields = {
            "title": subject.split("] ", 1)[-1], "component": component,
            "severity": rng.choice(["critical", "high", "normal", "normal", "low"]),
            "release": rng.choice(RELEASES), "distro": rng.choice(["Ubuntu 14.04", "CentOS 7", "RHEL 7"]),
            "nodes": rng.choice([12, 40, 120, 400, 1200]), "instances": rng.choice([300, 2000, 9000, 40000]),
            "what_happened": text,
            "steps": "1. Run the workload as usual\n2. Watch the symptom above within a day",
            "expected": "It keeps working as before the change.", "actual": "See what happened.",
        }
        if rng.random() < 0.5:
            fields["workaround"] = "Restart the service nightly from cron; it buys a day."
        if rng.random() < 0.4:
            fields["refs"] = [rng.choice(["https://bugs.launchpad.net/nova/+bug/{n}", "CLOUDSTACK-{c}"]).format(
                n=rng.randint(1200000, 1500000), c=rng.randint(8000, 9200))]
        yield {"fields": fields, "author_name": name, "author_email": email,
               "created": start + timedelta(days=7 * i, hours=rng.randrange(48))}
