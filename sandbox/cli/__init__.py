"""The one CLI, ``sandbox``, for every role's everyday work; one module per command group."""
from sandbox.cli.audit import audit
from sandbox.cli.data import budget, dataset, grant, query
from sandbox.cli.governance import application, apply, disclosure, token, user
from sandbox.cli.jobs import demo, job, run, submit, worker
from sandbox.cli.root import main
from sandbox.cli.serve import serve

for _command in (dataset, grant, query, budget, audit, run, submit, job, worker, demo):
    main.add_command(_command)
for _command in (user, token, apply, application, disclosure, serve):
    main.add_command(_command)

__all__ = ["main"]
