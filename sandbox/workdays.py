"""Working-day arithmetic for response deadlines.

A working day is Monday to Friday, except public holidays, plus make-up working days on
weekends (调休). The holidays and make-up days are configured in ``policies/calendar.yaml``
(see the comments there: they must be checked against the State Council notice each year).

Counting convention: ``add_working_days(start, n)`` is the ``n``-th working day *after*
``start`` (``start`` itself is never counted, whatever it is), and
``working_days_between(a, b)`` counts the working days ``d`` with ``a < d <= b`` (negative,
counted the same way, when ``b`` is before ``a``). So
``working_days_between(a, add_working_days(a, n)) == n``.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from sandbox.errors import InvalidInput, NotFound

#: The calendar shipped with the sandbox.
DEFAULT_CALENDAR = Path(__file__).resolve().parents[1] / "policies" / "calendar.yaml"
DEFAULT_RESPONSE_DAYS = 10
DEFAULT_TIMEZONE = "Asia/Shanghai"
_MAX_SPAN = 366  # days in one holiday range: a guard against typos like 2026 -> 2062


def is_working_day(day: date, holidays: Iterable[date] | set[date] = frozenset(),
                   working_weekends: Iterable[date] | set[date] = frozenset()) -> bool:
    if day in working_weekends:
        return True
    return day.weekday() < 5 and day not in holidays


def add_working_days(start: date, n: int, holidays: set[date] | frozenset[date] = frozenset(),
                     working_weekends: set[date] | frozenset[date] = frozenset()) -> date:
    """The ``n``-th working day after ``start`` (before it when ``n`` is negative); ``start`` for 0."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("n must be a whole number of working days")
    step = 1 if n >= 0 else -1
    day, left = start, abs(n)
    while left:
        day += timedelta(days=step)
        if is_working_day(day, holidays, working_weekends):
            left -= 1
    return day


def working_days_between(a: date, b: date, holidays: set[date] | frozenset[date] = frozenset(),
                         working_weekends: set[date] | frozenset[date] = frozenset()) -> int:
    """Working days ``d`` with ``a < d <= b``; minus those with ``b < d <= a`` when ``b < a``."""
    if b < a:
        return -working_days_between(b, a, holidays, working_weekends)
    days = (b - a).days
    full_weeks, rest = divmod(days, 7)
    count = full_weeks * 5
    day = a + timedelta(days=full_weeks * 7)
    for _ in range(rest):
        day += timedelta(days=1)
        if day.weekday() < 5:
            count += 1
    # correct for the configured exceptions inside (a, b]
    count -= sum(1 for h in holidays if a < h <= b and h.weekday() < 5 and h not in working_weekends)
    count += sum(1 for w in working_weekends if a < w <= b and w.weekday() >= 5)
    return count


@dataclass(frozen=True)
class Calendar:
    """Holidays and make-up days, with the response term and time zone they go with."""

    holidays: frozenset[date] = frozenset()
    working_weekends: frozenset[date] = frozenset()
    response_working_days: int = DEFAULT_RESPONSE_DAYS
    timezone: str = DEFAULT_TIMEZONE
    years: frozenset[int] = frozenset()
    source: str | None = None
    names: dict[date, str] = field(default_factory=dict, compare=False, hash=False)

    def is_working_day(self, day: date) -> bool:
        return is_working_day(day, self.holidays, self.working_weekends)

    def add(self, start: date, n: int) -> date:
        return add_working_days(start, n, self.holidays, self.working_weekends)

    def between(self, a: date, b: date) -> int:
        return working_days_between(a, b, self.holidays, self.working_weekends)

    def covers(self, day: date) -> bool:
        """Whether the official arrangement of ``day``'s year is entered."""
        return day.year in self.years

    def local_date(self, moment: dt.datetime) -> date:
        """The calendar date of a moment in the calendar's time zone (naive means UTC)."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        return moment.astimezone(ZoneInfo(self.timezone)).date()


def _bad(path: Path, what: str, hint: str = "see the comments at the top of policies/calendar.yaml") -> InvalidInput:
    return InvalidInput(f"calendar file {path}: {what}", hint)


def _as_date(path: Path, where: str, value: Any) -> date:
    if isinstance(value, dt.datetime):
        raise _bad(path, f"{where}: give a date (YYYY-MM-DD), not a date and time")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _bad(path, f"{where}: {str(value)[:40]!r} is not a date", "write dates as YYYY-MM-DD, e.g. 2026-10-01")


def _entries(path: Path, key: str, raw: Any) -> dict[date, str]:
    """A list of ``2026-10-01``, ``{date: ..., name: ...}`` or ``{from: ..., to: ..., name: ...}``."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise _bad(path, f"{key} must be a list of dates or ranges")
    out: dict[date, str] = {}
    for i, item in enumerate(raw, 1):
        where = f"{key}, item {i}"
        name = ""
        if isinstance(item, dict):
            unknown = set(item) - {"date", "from", "to", "name"}
            if unknown:
                raise _bad(path, f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}",
                           "use date, or from and to, and optionally name")
            name = str(item.get("name") or "")
            if "date" in item and ("from" in item or "to" in item):
                raise _bad(path, f"{where}: give either date, or from and to, not both")
            if "date" in item:
                days = [_as_date(path, where, item["date"])]
            elif "from" in item and "to" in item:
                first, last = _as_date(path, where, item["from"]), _as_date(path, where, item["to"])
                if last < first:
                    raise _bad(path, f"{where}: the range ends ({last}) before it starts ({first})")
                if (last - first).days >= _MAX_SPAN:
                    raise _bad(path, f"{where}: a range of more than a year is surely a typo")
                days = [first + timedelta(days=k) for k in range((last - first).days + 1)]
            else:
                raise _bad(path, f"{where}: give date, or both from and to")
        else:
            days = [_as_date(path, where, item)]
        for day in days:
            out[day] = name
    return out


def load_calendar(path: Path | str | None = None) -> Calendar:
    """Read a calendar file (the shipped one by default); clear errors naming the entry."""
    path = Path(path) if path is not None else DEFAULT_CALENDAR
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"no calendar file at {path}", "give the path of a calendar YAML file "
                       "(policies/calendar.yaml is the example)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _bad(path, f"cannot be read ({type(e).__name__})", "check that it is a UTF-8 text file") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise _bad(path, f"is not valid YAML{line}", "fix the syntax (indentation, dashes, colons)") from None
    except ValueError:  # YAML reads 2026-13-01 as a date and fails
        raise _bad(path, "holds something that is not a date (e.g. month 13)",
                   "write dates as YYYY-MM-DD, e.g. 2026-10-01") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise _bad(path, "must be a mapping with holidays, working_weekends and response_working_days")
    known = {"holidays", "working_weekends", "response_working_days", "timezone", "years"}
    unknown = set(doc) - known
    if unknown:
        raise _bad(path, f"unknown key(s): {', '.join(sorted(map(str, unknown)))}",
                   f"the keys are: {', '.join(sorted(known))}")
    days = doc.get("response_working_days", DEFAULT_RESPONSE_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
        raise _bad(path, "response_working_days must be a whole number from 1 to 365", "e.g. 10")
    tz = doc.get("timezone", DEFAULT_TIMEZONE)
    try:
        if not isinstance(tz, str):
            raise ZoneInfoNotFoundError
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(path, f"unknown time zone {str(tz)[:40]!r}", "use an IANA name such as Asia/Shanghai") from None
    years = doc.get("years") or []
    if not isinstance(years, list) or not all(isinstance(y, int) and not isinstance(y, bool) for y in years):
        raise _bad(path, "years must be a list of years, e.g. [2026]")
    holidays = _entries(path, "holidays", doc.get("holidays"))
    weekends = _entries(path, "working_weekends", doc.get("working_weekends"))
    for day in sorted(weekends):
        if day.weekday() < 5:
            raise _bad(path, f"working_weekends: {day} is a {day:%A}, not a weekend day",
                       "list only Saturdays and Sundays that are working days")
        if day in holidays:
            raise _bad(path, f"{day} is listed both as a holiday and as a working weekend day", "keep one")
    names = {**holidays, **weekends}
    return Calendar(
        holidays=frozenset(holidays), working_weekends=frozenset(weekends), response_working_days=days,
        timezone=tz, years=frozenset(years), source=str(path), names=names,
    )
