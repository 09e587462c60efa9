"""Jobs: submit (paste or upload), the script check's refusals by line, mock first, live status,
results with intervals and charts, files, and the queries with the epsilon each spent.

Analysts see and submit only their own jobs (another analyst's is a 404, as in the API);
reviewers and operators read any job's full record and change nothing.
"""
from __future__ import annotations

import re
from pathlib import Path

from flask import abort, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _

from sandbox.broker.answers import StoredAnswer
from sandbox.broker.query import parse_query
from sandbox.errors import InvalidInput, SandboxError
from sandbox.jobs.models import Job
from sandbox.web.pages import bp, charts, fmt_number, require_own, roles, services, who
from sandbox.web.pages.catalog import example_script
from sandbox.web.pages.grants import visible_grant

READERS = ("analyst", "reviewer", "operator")
_SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.py$")
PNG = b"\x89PNG\r\n\x1a\n"


def visible_job(job_id: str) -> Job:
    job = services().jobs.get(job_id)
    require_own("job", job_id, job.owner)
    return job


def _active_grants() -> list[dict]:
    return [g for g in services().grants.list(who().name) if g["status"] == "active"]


@bp.get("/jobs")
@roles(*READERS)
def jobs():  # type: ignore[no-untyped-def]
    actor = who()
    rows = services().jobs.list(actor.name if actor.role == "analyst" else None, limit=200)
    return render_template("pages/jobs.html", jobs=rows)


@bp.get("/jobs/new")
@roles("analyst")
def new_job():  # type: ignore[no-untyped-def]
    script, name, grant_id = "", "script.py", request.args.get("grant") or ""
    source = request.args.get("from")
    if source:
        job = visible_job(source)
        script, name, grant_id = job.script, job.script_name, grant_id or (job.grant_id or "")
    elif request.args.get("dataset"):
        script = example_script(services().catalog.describe(request.args["dataset"]))
    return _form(script, name, grant_id)


def _form(script: str, name: str, grant_id: str, error: str | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    return render_template("pages/job_new.html", script=script, name=name, grant_id=grant_id,
                           grants=_active_grants(), datasets=services().catalog.names(),
                           error=error, max_kib=services().runtime.max_script_bytes // 1024), status


@bp.post("/jobs/new")
@roles("analyst")
def submit_job():  # type: ignore[no-untyped-def]
    svc = services()
    script = request.form.get("script") or ""
    name = (request.form.get("name") or "script.py").strip() or "script.py"
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        raw = upload.read(svc.runtime.max_script_bytes + 1)
        try:
            script = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _form("", name, "", _("The uploaded file is not UTF-8 text."), 422)
        name = Path(upload.filename.replace("\\", "/")).name or name
    grant_id = request.form.get("grant_id") or ""
    mock = request.form.get("mode") != "real"
    try:
        if not script.strip():
            raise InvalidInput(_("Paste a script or choose a file to upload."), "")
        if not _SCRIPT_NAME.match(name):
            raise InvalidInput(_("A script's name is letters, digits, '.', '_' or '-', ending in .py."), "")
        if mock:
            chosen = [d for d in request.form.getlist("datasets") if d]
            if not chosen and grant_id:
                chosen = visible_grant(grant_id)["datasets"]
            job = svc.jobs.submit(who(), name, script, mock_datasets=chosen or None)
        else:
            if not grant_id:
                raise InvalidInput(_("Choose one of your grants to run on the real data."), "")
            visible_grant(grant_id)
            job = svc.jobs.submit(who(), name, script, grant_id=grant_id)
    except SandboxError as err:
        if err.code == "not_found" and "grant" in err.message:
            raise
        return _form(script, name, grant_id, err.message + (f" — {err.hint}" if err.hint else ""), 422)
    if job["state"] == "refused":
        flash(_("The script check refused the script: see the marked lines."), "error")
    return redirect(url_for("pages.job", job_id=job["id"]))


@bp.post("/jobs/<job_id>/real")
@roles("analyst")
def run_for_real(job_id: str):  # type: ignore[no-untyped-def]
    """One click from a mock run: the same script on the real data under a grant."""
    job = visible_job(job_id)
    grant_id = request.form.get("grant_id") or ""
    if not grant_id:
        flash(_("Choose one of your grants to run on the real data."), "error")
        return redirect(url_for("pages.job", job_id=job_id))
    visible_grant(grant_id)
    try:
        new = services().jobs.submit(who(), job.script_name, job.script, grant_id=grant_id)
    except SandboxError as err:
        flash(err.message, "error")
        return redirect(url_for("pages.job", job_id=job_id))
    return redirect(url_for("pages.job", job_id=new["id"]))


@bp.post("/jobs/<job_id>/cancel")
@roles("analyst")
def cancel_job(job_id: str):  # type: ignore[no-untyped-def]
    visible_job(job_id)
    try:
        services().jobs.cancel(who(), job_id)
        flash(_("Cancellation requested."), "ok")
    except SandboxError as err:
        flash(err.message, "error")
    return redirect(url_for("pages.job", job_id=job_id))


@bp.get("/jobs/<job_id>/status.json")
@roles(*READERS)
def job_status(job_id: str):  # type: ignore[no-untyped-def]
    job = visible_job(job_id)
    return jsonify({"id": job.id, "state": job.state, "final": job.final})


def _answers(job: Job) -> list[dict]:
    """Each query of the job with its answer: stored answers for a real job (what was released)."""
    svc = services()
    out = []
    for i, q in enumerate(job.queries or []):
        item = {"n": i + 1, "dataset": q.get("dataset"), "query": q.get("query"),
                "epsilon": q.get("epsilon", 0.0), "cached": q.get("cached", False), "answer": q.get("answer")}
        if item["answer"] is None and not job.mock and job.grant_id:
            digest = q.get("digest")
            if digest is None and isinstance(q.get("query"), dict):
                try:
                    digest = parse_query(q["query"], svc.catalog.policy(q["dataset"])).digest()
                except SandboxError:
                    digest = None
            if digest:
                with svc.db.transaction() as session:
                    stored = session.get(StoredAnswer, (job.grant_id, digest))
                    if stored is not None and stored.status == "released":
                        item["answer"] = stored.answer
        if item["answer"]:
            item["table"] = charts.table(item["answer"])
            item["charts"] = charts.answer_charts(
                item["answer"], lambda v: fmt_number(v, 2),
                _("bars: DP estimates; whiskers: %(level)s intervals", level="95%") + (" · MOCK" if job.mock else ""))
        out.append(item)
    return out


def _script_lines(job: Job) -> list[dict]:
    marks: dict[int, list[dict]] = {}
    for v in job.violations or []:
        marks.setdefault(int(v.get("line") or 0), []).append(v)
    lines = [{"n": i + 1, "text": text, "violations": marks.pop(i + 1, [])}
             for i, text in enumerate(job.script.splitlines() or [""])]
    if marks:  # a violation on no line of the text (e.g. line 0 for the whole file)
        lines[0]["violations"] = [v for vs in marks.values() for v in vs] + lines[0]["violations"]
    return lines


@bp.get("/jobs/<job_id>")
@roles(*READERS)
def job(job_id: str):  # type: ignore[no-untyped-def]
    job = visible_job(job_id)
    grant = None
    if job.grant_id:
        try:
            grant = services().grants.get(job.grant_id)
        except SandboxError:
            grant = None
    images = [o for o in job.outputs if o["name"].lower().endswith(".png")]
    return render_template("pages/job.html", job=job, info=job.to_dict(), lines=_script_lines(job),
                           answers=_answers(job) if job.final else [], images=images, grant=grant,
                           grants=_active_grants() if who().role == "analyst" else [])


@bp.get("/jobs/<job_id>/files/<name>")
@roles(*READERS)
def job_file(job_id: str, name: str):  # type: ignore[no-untyped-def]
    job = visible_job(job_id)
    if name not in {o["name"] for o in job.outputs} or "/" in name or "\\" in name or name in (".", ".."):
        abort(404)
    folder = (services().home.jobs / job.id / "out").resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        abort(404)
    inline = request.args.get("inline") == "1" and name.lower().endswith(".png")
    if inline:
        with path.open("rb") as fh:
            if fh.read(8) != PNG:
                abort(404)
        resp = send_file(path, mimetype="image/png")
    else:
        resp = send_file(path, mimetype="application/octet-stream", as_attachment=True, download_name=name)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "default-src 'none'"
    return resp
