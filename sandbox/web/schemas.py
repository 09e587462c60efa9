"""Request schemas (marshmallow): they validate each request and describe it in the spec.

Unknown fields are refused everywhere (``RAISE``), in bodies and in query strings alike.
"""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, DateTime, Dict, File, Float, Integer, List, String
from apiflask.validators import Length, OneOf, Range, Regexp
from marshmallow import RAISE

NAME = Regexp(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$", error="letters, digits, '.', '_', '@' or '-' (1-100)")
DATASET = Regexp(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", error="a dataset name: letters, digits and '_'")
#: A script's file name: a plain name ending in .py; no folders, no dots in front.
SCRIPT_NAME = Regexp(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.py$",
                     error="a plain file name ending in .py (letters, digits, '_', '-', '.'; no folders)")


class Strict(Schema):
    class Meta:
        unknown = RAISE


def body(bp: APIBlueprint, schema: type[Schema]):  # type: ignore[no-untyped-def]
    return bp.input(schema, location="json", unknown=RAISE, arg_name="data")


def query(bp: APIBlueprint, schema: type[Schema]):  # type: ignore[no-untyped-def]
    return bp.input(schema, location="query", unknown=RAISE, arg_name="args")


class Empty(Strict):
    pass


# -- catalog ---------------------------------------------------------------------------------

class RegisterDataset(Strict):
    name = String(required=True, validate=DATASET, metadata={"description": "dataset name, as in the policy"})
    data = File(required=True, metadata={"description": "the data file (.csv or .parquet)"})
    policy = File(required=True, metadata={"description": "the policy file (YAML)"})
    replace = Boolean(load_default=False, metadata={"description": "store a new version of an existing dataset"})
    drop_undeclared = Boolean(load_default=False)


class MockArgs(Strict):
    rows = Integer(load_default=1000, validate=Range(1, 100_000))
    seed = Integer(load_default=0, validate=Range(0, 2**31 - 1))


# -- grants and budgets ---------------------------------------------------------------------

class GrantListArgs(Strict):
    analyst = String(validate=NAME)


class GrantCreate(Strict):
    analyst = String(required=True, validate=NAME)
    datasets = List(String(validate=DATASET), required=True, validate=Length(1, 50))
    epsilon = Float(allow_none=True, load_default=None, validate=Range(min=0, min_inclusive=False, max=1000))
    days = Integer(load_default=90, validate=Range(1, 3650))
    purpose = String(required=True, validate=Length(1, 2000))
    user_type = String(load_default="public_welfare", validate=OneOf(["public_welfare", "commercial"]))
    columns = List(String(validate=Length(1, 100)), allow_none=True, load_default=None, validate=Length(max=500))
    operations = List(String(validate=Length(1, 50)), allow_none=True, load_default=None, validate=Length(max=50))


class GrantRevoke(Strict):
    reason = String(required=True, validate=Length(1, 2000))


class GrantExtend(Strict):
    days = Integer(required=True, validate=Range(1, 3650))


class QueryDoc(Strict):
    """A DP query as in docs/queries.md, wrapped: ``{"query": {...}}``."""

    query = Dict(required=True, metadata={"description": "the query document (docs/queries.md)"})


# -- jobs ------------------------------------------------------------------------------------

class JobSubmit(Strict):
    script = String(required=True, validate=Length(1, 256 * 1024 * 4))
    name = String(load_default="script.py", validate=SCRIPT_NAME)
    grant_id = String(allow_none=True, load_default=None, validate=Length(1, 40))
    mock = Boolean(load_default=False)
    datasets = List(String(validate=DATASET), allow_none=True, load_default=None, validate=Length(max=50))


class JobListArgs(Strict):
    owner = String(validate=NAME)
    limit = Integer(load_default=50, validate=Range(1, 500))


# -- audit -----------------------------------------------------------------------------------

class AuditArgs(Strict):
    last = Integer(validate=Range(0, 100_000))
    action = String(validate=Length(1, 100))
    actor = String(validate=Length(1, 100))
    grant = String(validate=Length(1, 40))
    dataset = String(validate=Length(1, 64))
    since = DateTime()
    until = DateTime()


class ConsistencyArgs(Strict):
    old = Integer(required=True, validate=Range(0, 2**40))
    new = Integer(required=True, validate=Range(0, 2**40))


# -- users and tokens ------------------------------------------------------------------------

class UserAdd(Strict):
    name = String(required=True, validate=NAME)
    role = String(required=True, validate=OneOf(["operator", "provider", "analyst", "reviewer"]))
    organisation = String(allow_none=True, load_default=None, validate=Length(max=200))


class TokenCreate(Strict):
    user = String(required=True, validate=NAME)
    days = Integer(load_default=90, validate=Range(1, 3650))
    label = String(load_default="", validate=Length(max=200))


class TokenListArgs(Strict):
    user = String(validate=NAME)


# -- applications ----------------------------------------------------------------------------

class ApplicationCreate(Strict):
    datasets = List(String(validate=DATASET), required=True, validate=Length(1, 50))
    purpose = String(required=True, validate=Length(1, 4000))
    scenario = String(required=True, validate=Length(1, 4000))
    epsilon = Float(allow_none=True, load_default=None, validate=Range(min=0, min_inclusive=False, max=1000))
    days = Integer(load_default=90, validate=Range(1, 3650))
    user_type = String(load_default="public_welfare", validate=OneOf(["public_welfare", "commercial"]))


class ApplicationListArgs(Strict):
    analyst = String(validate=NAME)
    state = String(validate=OneOf(["submitted", "info_requested", "approved", "refused", "withdrawn"]))
    overdue = Boolean()


class ApplicationApprove(Strict):
    epsilon = Float(allow_none=True, load_default=None, validate=Range(min=0, min_inclusive=False, max=1000))
    days = Integer(allow_none=True, load_default=None, validate=Range(1, 3650))
    note = String(load_default="", validate=Length(max=4000))


class ApplicationRefuse(Strict):
    reason = String(required=True, validate=Length(1, 4000))


class ApplicationAsk(Strict):
    question = String(required=True, validate=Length(1, 4000))


class ApplicationReply(Strict):
    text = String(required=True, validate=Length(1, 4000))


class DisclosureArgs(Strict):
    format = String(load_default="json", validate=OneOf(["json", "csv"]))
    section = String(validate=OneOf(["authorisations", "products", "usage", "applications"]))
