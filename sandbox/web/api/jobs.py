"""Jobs over HTTP: submit a script, follow it, read its logs and results, cancel it.

Analysts see and cancel only their own jobs (others' are a 404); reviewers and operators read
any job, its script, queries and outputs, and change nothing.
"""
from __future__ import annotations

from pathlib import Path

from apiflask import APIBlueprint
from apiflask.schemas import FileSchema
from flask import send_file

from sandbox.jobs.models import Job
from sandbox.web.api.grants import visible_grant
from sandbox.web.auth import actor, require_own, requires, services
from sandbox.web.errors import ApiError
from sandbox.web.schemas import JobListArgs, JobSubmit, body, query

bp = APIBlueprint("jobs", __name__, tag="jobs")

READERS = ("analyst", "reviewer", "operator")
HINT = "list your jobs with `sandbox job list`"


def visible_job(job_id: str) -> Job:
    job = services().jobs.get(job_id)
    require_own("job", job_id, job.owner, HINT)
    return job


@bp.post("/jobs")
@requires("analyst", status=202)
@body(bp, JobSubmit)
def submit_job(data: dict):  # type: ignore[no-untyped-def]
    """Check a script under the policy and queue it (202), or return the check's violations (422).

    ``mock: true`` runs it on mock data (no grant, no budget; ``datasets`` picks what the mock
    broker serves); otherwise ``grant_id`` names one of the caller's grants.
    """
    who = actor()
    jobs = services().jobs
    if data["mock"]:
        if data["grant_id"]:
            raise ApiError(422, "invalid_input", "a mock job takes no grant_id",
                           "drop grant_id, or set mock to false to run on the real data")
        job = jobs.submit(who, data["name"], data["script"], mock_datasets=data["datasets"])
    else:
        if not data["grant_id"]:
            raise ApiError(422, "invalid_input", "a job on the real data needs a grant_id",
                           "pass the id of one of your grants, or set mock to true")
        if data["datasets"]:
            raise ApiError(422, "invalid_input", "datasets is for mock jobs; a real job uses its grant's",
                           "drop datasets")
        visible_grant(data["grant_id"])
        job = jobs.submit(who, data["name"], data["script"], grant_id=data["grant_id"])
    if job["state"] == "refused":
        raise ApiError(422, "script_refused",
                       f"the script check refused the script ({len(job['violations'])} violation(s))",
                       "fix the lines listed in violations and submit again", job=job,
                       violations=job["violations"])
    return job, 202


@bp.get("/jobs")
@requires(*READERS)
@query(bp, JobListArgs)
def list_jobs(args: dict):  # type: ignore[no-untyped-def]
    """Jobs, newest first: an analyst's own, or anyone's for reviewers and operators."""
    who = actor()
    owner = args.get("owner")
    if who.role == "analyst":
        if owner not in (None, who.name):
            return []
        owner = who.name
    return services().jobs.list(owner, limit=args["limit"])


@bp.get("/jobs/<job_id>")
@requires(*READERS)
def job_status(job_id: str):  # type: ignore[no-untyped-def]
    """A job's state, times, runner, image digest, queries and output files."""
    return visible_job(job_id).to_dict()


@bp.get("/jobs/<job_id>/logs")
@requires(*READERS)
def job_logs(job_id: str):  # type: ignore[no-untyped-def]
    """The job's captured stdout and stderr (capped by its limits)."""
    job = visible_job(job_id)
    return {"id": job.id, "state": job.state, "stdout": job.stdout, "stderr": job.stderr}


@bp.get("/jobs/<job_id>/script")
@requires(*READERS)
def job_script(job_id: str):  # type: ignore[no-untyped-def]
    """Exactly what ran: the script, its SHA-256 and the image digest."""
    job = visible_job(job_id)
    return {"id": job.id, "script_name": job.script_name, "script": job.script,
            "script_sha256": job.script_sha256, "image_digest": job.image_digest}


@bp.get("/jobs/<job_id>/results")
@requires(*READERS)
def job_results(job_id: str):  # type: ignore[no-untyped-def]
    """The job with its stdout, stderr and output files (download each from outputs/<name>)."""
    job = visible_job(job_id)
    info = job.to_dict()
    return {**info, "stdout": job.stdout, "stderr": job.stderr,
            "files": [{**o, "url": f"/api/v1/jobs/{job.id}/outputs/{o['name']}"} for o in info["outputs"]]}


@bp.get("/jobs/<job_id>/outputs/<name>")
@requires(*READERS)
@bp.output(FileSchema, content_type="application/octet-stream", description="the output file")
def job_output(job_id: str, name: str):  # type: ignore[no-untyped-def]
    """Download one output file of a job, by its exact name."""
    job = visible_job(job_id)
    listed = {o["name"] for o in job.outputs}
    if name not in listed or "/" in name or "\\" in name or name in (".", ".."):
        raise ApiError(404, "not_found", f"job {job_id} has no output named like that",
                       "see the files of `GET /api/v1/jobs/<id>/results`")
    folder = (services().home.jobs / job.id / "out").resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        raise ApiError(404, "not_found", f"job {job_id} has no output named like that",
                       "see the files of `GET /api/v1/jobs/<id>/results`")
    return send_file(Path(path), mimetype="application/octet-stream", as_attachment=True, download_name=name)


@bp.post("/jobs/<job_id>/cancel")
@requires("analyst")
def cancel_job(job_id: str):  # type: ignore[no-untyped-def]
    """Cancel a queued job, or stop a running one."""
    visible_job(job_id)
    return services().jobs.cancel(actor(), job_id)
