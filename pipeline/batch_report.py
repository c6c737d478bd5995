"""``report.html`` of a batch grading: the page the course staff open first.

One self-contained file (styles inline, the histogram an inline SVG drawn by matplotlib's
Agg backend; nothing is fetched): the totals, the submissions that need a look (a time
limit, an internal error, a grading that died), the score distribution, every check's
failure rate (worst first), the most common failure messages of each graded function
(numbers normalised out, so that the same mistake groups), and every submission, with
links to its ``results.json`` and ``grading.log`` beside the report.

``rows`` are the batch's: ``{"record": batch.json's fields, "doc": results.json or None,
"status", "detail"}``.
"""
from __future__ import annotations

import html
import io
import os
import re
import statistics
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from pipeline.grade_batch import GRADED, private_file, totals

#: A number in a message (not part of a name such as float32 or x2): replaced by "#".
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w])")
MESSAGES_SHOWN = 5
EXAMPLES_SHOWN = 4

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       max-width: 1150px; margin: 2em auto; padding: 0 1.2em; }
h1 { margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 2px solid #e3e6ee; padding-bottom: .2em; }
h3 { margin: 1.4em 0 .4em; font-size: 1.05em; }
.meta { color: #5b6478; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: .7em; margin: 1.2em 0; }
.card { border: 1px solid #e3e6ee; border-radius: 8px; padding: .55em .9em; min-width: 7.5em; background: #fafbfd; }
.card b { display: block; font-size: 1.55em; } .card span { color: #5b6478; font-size: .9em; }
.card.warn { border-color: #e8b339; background: #fff8e6; } .card.bad { border-color: #d9534f; background: #fdeeee; }
table { border-collapse: collapse; width: 100%; margin: .4em 0 1em; }
th, td { text-align: left; padding: .3em .55em; border-bottom: 1px solid #eceef3; vertical-align: top; }
th { background: #f3f5f9; font-weight: 600; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:hover td { background: #f8f9fc; }
.bar { background: #eceef3; border-radius: 3px; width: 160px; height: .8em; display: inline-block; vertical-align: middle; }
.bar i { display: block; height: 100%; border-radius: 3px; background: #d9534f; }
.status { padding: .05em .45em; border-radius: 4px; font-size: .88em; white-space: nowrap; }
.s-graded { background: #e7f5ea; color: #22672f; } .s-time-limit { background: #fff1cc; color: #7a5500; }
.s-internal-error, .s-failed { background: #fbe0df; color: #8f1f1b; }
code, .msg { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .86em; }
.msg { white-space: pre-wrap; word-break: break-word; }
.muted { color: #5b6478; } a { color: #2456b3; }
.unsafe { border: 3px solid #d9534f; background: #fdeeee; color: #8f1f1b; padding: .7em 1em; border-radius: 8px; }
svg { max-width: 100%; height: auto; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def normalise(message: str) -> str:
    """The message's gist for grouping: its first paragraph, numbers replaced by ``#``,
    whitespace collapsed, at most 300 characters."""
    first = str(message).strip().split("\n\n", 1)[0]
    first = first.split(" [stochastic check:", 1)[0]
    return re.sub(r"\s+", " ", NUMBER.sub("#", first)).strip()[:300]


def function_of(check_name: str) -> str:
    """``Q2(a) sample_gaussian: gradient w.r.t. v`` -> ``Q2(a) sample_gaussian``."""
    return check_name.split(":", 1)[0].strip()


def _link(row, name: str) -> str:
    student = row["record"]["student"]
    return f'<a href="{quote(student)}/{name}">{_e(name)}</a>'


def _links(row) -> str:
    parts = [_link(row, "results.json")] if row["doc"] is not None else []
    return " · ".join(parts + [_link(row, "grading.log")])


def _status(status: str) -> str:
    return f'<span class="status s-{_e(status.replace(" ", "-"))}">{_e(status)}</span>'


def _who(row) -> str:
    rec = row["record"]
    names = "; ".join(s.get("name", "") for s in rec.get("submitters") or [] if s.get("name"))
    shown = _e(rec["student"])
    return shown + (f' <span class="muted">({_e(names)})</span>' if names and names != rec["student"] else "")


# ---------------------------------------------------------------- sections

def totals_section(rows) -> str:
    """The cards at the top: how many, the mean and median, full marks and zeros, problems."""
    scored = [totals(r["doc"]) for r in rows if r["doc"] is not None and r["doc"].get("tests")]
    scores = [s for s, _ in scored]
    possible = max((m for _, m in scored), default=0.0)
    count = Counter(r["status"] for r in rows)
    cards = [("submissions", len(rows), ""),
             ("mean", f"{statistics.mean(scores):.1f}" if scores else "–", ""),
             ("median", f"{statistics.median(scores):g}" if scores else "–", ""),
             ("full marks", sum(s >= m > 0 for s, m in scored), ""),
             ("zero", sum(s == 0 for s in scores), ""),
             ("time limits", count.get("time limit", 0), "warn" if count.get("time limit") else ""),
             ("internal errors", count.get("internal error", 0), "bad" if count.get("internal error") else ""),
             ("gradings died", count.get("failed", 0), "bad" if count.get("failed") else "")]
    body = "".join(f'<div class="card {cls}"><b>{_e(value)}</b><span>{_e(label)}</span></div>'
                   for label, value, cls in cards)
    out_of = f" Scores are out of {possible:g} autograded points." if possible else ""
    return f'<div class="cards">{body}</div><p class="muted">{len(scores)} submissions have scores.{out_of}</p>'


def attention_section(rows) -> str:
    """The submissions that hit a time limit or an internal error, or whose grading died."""
    flagged = [r for r in rows if r["status"] != GRADED]
    if not flagged:
        return "<p>None: every grading finished without a time limit or an internal error.</p>"
    order = {"failed": 0, "internal error": 1, "time limit": 2}
    flagged.sort(key=lambda r: (order.get(r["status"], 3), r["record"]["student"]))
    body = "".join(f"<tr><td>{_who(r)}</td><td>{_status(r['status'])}</td>"
                   f"<td class=msg>{_e(r['detail'])}</td><td>{_links(r)}</td></tr>" for r in flagged)
    return ("<table><tr><th>student</th><th>status</th><th>what happened</th><th>files</th></tr>"
            f"{body}</table>")


def histogram_svg(scores: list, possible: float) -> str:
    """The score histogram as an inline SVG (matplotlib, Agg backend, text kept as text)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max(possible, max(scores, default=0.0), 1.0)
    width = 1.0 if top <= 60 else top / 40
    edges = [i * width for i in range(int(top // width) + 2)]
    with plt.rc_context({"svg.fonttype": "none", "font.size": 10, "svg.hashsalt": "hw10"}):
        fig, ax = plt.subplots(figsize=(9, 3.2))
        ax.hist(scores, bins=edges, color="#4a78c2", edgecolor="white", align="left")
        ax.set_xlabel("autograded score")
        ax.set_ylabel("submissions")
        ax.set_xlim(-width, top + width)
        ax.yaxis.get_major_locator().set_params(integer=True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def distribution_section(rows) -> str:
    scored = [totals(r["doc"]) for r in rows if r["doc"] is not None and r["doc"].get("tests")]
    if not scored:
        return "<p>No submission has a score yet.</p>"
    return histogram_svg([s for s, _ in scored], max(m for _, m in scored))


def failure_rates(rows, columns) -> list:
    """(check, failed, graded) for every check, the highest failure rate first."""
    failed, seen = Counter(), Counter()
    for r in rows:
        for t in (r["doc"] or {}).get("tests", []):
            seen[t["name"]] += 1
            failed[t["name"]] += t.get("status") != "passed"
    order = {name: i for i, name in enumerate(columns)}
    rates = [(name, failed[name], seen[name]) for name in seen]
    return sorted(rates, key=lambda x: (-x[1] / x[2], order.get(x[0], len(order))))


def rates_section(rows, columns) -> str:
    rates = failure_rates(rows, columns)
    if not rates:
        return "<p>No checks were graded.</p>"
    body = "".join(
        f"<tr><td>{_e(name)}</td><td class=num>{bad} / {n}</td><td class=num>{bad / n:.0%}</td>"
        f'<td><span class="bar"><i style="width:{100 * bad / n:.1f}%"></i></span></td></tr>'
        for name, bad, n in rates)
    return ('<table><tr><th>check</th><th class=num>failed</th><th class=num>rate</th><th></th></tr>'
            f"{body}</table>")


def common_failures(rows) -> dict:
    """function -> (students who lost a check of it, [(message gist, students, example
    raw message)] most common first)."""
    by_function = defaultdict(lambda: defaultdict(list))  # function -> gist -> [(student, raw)]
    for r in rows:
        for t in (r["doc"] or {}).get("tests", []):
            if t.get("status") == "passed":
                continue
            student = r["record"]["student"]
            entries = by_function[function_of(t["name"])][normalise(t.get("output", ""))]
            if all(s != student for s, _ in entries):  # a student counts once per message
                entries.append((student, t.get("output", "")))
    out = {}
    for function, gists in by_function.items():
        students = {s for entries in gists.values() for s, _ in entries}
        ranked = sorted(gists.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        out[function] = (students, [(gist, [s for s, _ in e], e[0][1]) for gist, e in ranked])
    return dict(sorted(out.items(), key=lambda kv: (-len(kv[1][0]), kv[0])))


def messages_section(rows) -> str:
    groups = common_failures(rows)
    if not groups:
        return "<p>No check failed.</p>"
    total = sum(1 for r in rows if r["doc"] is not None and r["doc"].get("tests"))
    parts = []
    for function, (students, messages) in groups.items():
        body = "".join(
            f"<tr><td class=num>{len(who)}</td><td class=msg>{_e(gist)}</td>"
            f"<td>{', '.join(_example(s) for s in who[:EXAMPLES_SHOWN])}"
            f"{' …' if len(who) > EXAMPLES_SHOWN else ''}</td></tr>"
            for gist, who, _ in messages[:MESSAGES_SHOWN])
        more = len(messages) - MESSAGES_SHOWN
        tail = f'<p class="muted">and {more} other message(s).</p>' if more > 0 else ""
        parts.append(f"<h3>{_e(function)} <span class=muted>: {len(students)} of {total} submissions lost "
                     "points</span></h3><table><tr><th class=num>students</th><th>message (numbers as #)</th>"
                     f"<th>for example</th></tr>{body}</table>{tail}")
    return "".join(parts)


def _example(student: str) -> str:
    return f'<a href="{quote(student)}/results.json">{_e(student)}</a>'


def submissions_section(rows) -> str:
    body = []
    for r in sorted(rows, key=lambda r: r["record"]["student"].lower()):
        score = ""
        if r["doc"] is not None and r["doc"].get("tests"):
            got, possible = totals(r["doc"])
            score = f"{got:g} / {possible:g}"
        seconds = r["record"].get("seconds", "")
        body.append(f"<tr><td>{_who(r)}</td><td>{_status(r['status'])}</td><td class=num>{_e(score)}</td>"
                    f"<td class=num>{_e(seconds)}</td><td>{_links(r)}</td></tr>")
    return ("<table><tr><th>student</th><th>status</th><th class=num>score</th><th class=num>seconds</th>"
            f"<th>files</th></tr>{''.join(body)}</table>")


def unsafe_section(rows, no_isolation: str | None = None) -> str:
    """The warning at the top when student code ran without pool-user isolation (this run's
    ``--unsafe-no-isolation``, or an earlier run's, recorded in its students' batch.json)."""
    unsafe = [r for r in rows if r["record"].get("no_isolation")]
    if not unsafe and not no_isolation:
        return ""
    why = no_isolation or unsafe[0]["record"]["no_isolation"]
    return ('<div class="unsafe" id="no-isolation"><b>Graded WITHOUT ISOLATION '
            f"(--unsafe-no-isolation): {_e(why)}.</b> {len(unsafe)} of {len(rows)} submissions ran "
            "their code as the batch's own user, one at a time: any of them could have changed the "
            "other students' results, this gradebook and this report. Trust these scores only as "
            "far as you trust every submission; otherwise grade them again as root with a venv the "
            "pool users can reach (README, \"A whole class\").</div>")


def render(rows, columns, source: str = "", no_isolation: str | None = None) -> str:
    """The whole page."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [("Needs a look", attention_section(rows)),
                ("Score distribution", distribution_section(rows)),
                ("Checks by failure rate, worst first", rates_section(rows, columns)),
                ("Most common failure messages, by graded function", messages_section(rows)),
                ("Every submission", submissions_section(rows))]
    body = "".join(f'<h2 id="{_e(title.split(",")[0].lower().replace(" ", "-"))}">{_e(title)}</h2>{html_}'
                   for title, html_ in sections)
    origin = f" from <code>{_e(source)}</code>" if source else ""
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>HW10 autograder: batch report</title><style>{STYLE}</style></head><body>"
            f"<h1>HW10 autograder: batch report</h1><p class=meta>Graded{origin}; written {when}. "
            "Each student's folder beside this page holds their results.json (what Gradescope would "
            "show) and grading.log.</p>"
            f"{unsafe_section(rows, no_isolation)}{totals_section(rows)}{body}</body></html>\n")


def write(path: Path, rows, columns, source: str = "", no_isolation: str | None = None) -> Path:
    """Write the report to ``path`` (atomically, readable by its owner only: it names every
    student); returns it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with private_file(tmp) as fh:
        fh.write(render(rows, columns, source, no_isolation))
    os.replace(tmp, path)
    return path
