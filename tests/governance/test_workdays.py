"""Working days: weekends, holidays, make-up days (调休), year ends, and the calendar file."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from sandbox.errors import InvalidInput, NotFound
from sandbox.workdays import add_working_days, load_calendar, working_days_between

CAL = load_calendar()  # the shipped policies/calendar.yaml


def test_weekends_only():
    fri = date(2025, 3, 7)
    assert add_working_days(fri, 1, set()) == date(2025, 3, 10)  # Monday
    assert add_working_days(fri, 10, set()) == date(2025, 3, 21)
    assert add_working_days(date(2025, 3, 8), 1, set()) == date(2025, 3, 10)  # from a Saturday
    assert add_working_days(fri, 0, set()) == fri
    assert working_days_between(fri, date(2025, 3, 21), set()) == 10
    assert working_days_between(date(2025, 3, 21), fri, set()) == -10
    assert working_days_between(fri, fri, set()) == 0


def test_holidays_and_make_up_days_2026():
    # National Day: 1-7 October off, Saturday 10 October worked
    assert add_working_days(date(2026, 9, 30), 10, CAL.holidays, CAL.working_weekends) == date(2026, 10, 20)
    assert CAL.add(date(2026, 9, 30), 3) == date(2026, 10, 10)  # the make-up Saturday counts
    assert not CAL.is_working_day(date(2026, 10, 5)) and CAL.is_working_day(date(2026, 10, 10))
    # Spring Festival: 15-23 February off; Saturdays 14 and 28 February worked
    assert CAL.add(date(2026, 2, 13), 1) == date(2026, 2, 14)
    assert CAL.add(date(2026, 2, 14), 1) == date(2026, 2, 24)
    assert CAL.between(date(2026, 2, 13), date(2026, 2, 28)) == 6  # 14th, 24-27th, 28th
    # plain holidays on weekdays are skipped without a calendar object too
    assert add_working_days(date(2026, 4, 3), 1, {date(2026, 4, 6)}) == date(2026, 4, 7)


def test_across_a_year_end():
    # 2025-12-31 (Wed) -> New Year 1-3 Jan off, Sunday 4 Jan worked
    assert CAL.add(date(2025, 12, 31), 1) == date(2026, 1, 4)
    assert CAL.add(date(2025, 12, 31), 10) == date(2026, 1, 15)
    assert CAL.between(date(2025, 12, 31), date(2026, 1, 15)) == 10
    # into 2027: 1 January 2027 is a statutory holiday; weekends only after that
    assert CAL.add(date(2026, 12, 31), 1) == date(2027, 1, 4)
    assert not CAL.covers(date(2027, 1, 4)) and CAL.covers(date(2026, 6, 1))


def test_counting_agrees_with_day_by_day():
    start = date(2025, 12, 1)
    for k in range(0, 430, 7):
        a = start + timedelta(days=k)
        for n in (0, 1, 5, 10, 23):
            assert CAL.between(a, CAL.add(a, n)) == n
        b = a + timedelta(days=45)
        slow = sum(CAL.is_working_day(a + timedelta(days=i)) for i in range(1, 46))
        assert CAL.between(a, b) == slow


def test_local_date_is_beijing_time():
    late_sunday_utc = datetime(2026, 3, 1, 17, 0, tzinfo=timezone.utc)  # Monday 01:00 in Beijing
    assert CAL.local_date(late_sunday_utc) == date(2026, 3, 2)
    assert CAL.response_working_days == 10


@pytest.mark.parametrize("text, message", [
    ("holidays: [2026-13-01]", "is not a date"),
    ("holidays: 2026-01-01", "must be a list"),
    ("holidays:\n  - {from: 2026-02-10, to: 2026-02-01}", "ends"),
    ("working_weekends: [2026-03-02]", "not a weekend day"),
    ("holidays: [2026-01-03]\nworking_weekends: [2026-01-03]", "both"),
    ("response_working_days: 0", "response_working_days"),
    ("response_working_days: ten", "response_working_days"),
    ("timezone: Mars/Olympus", "time zone"),
    ("holiday: [2026-01-01]", "unknown key"),
    ("holidays: [{date: 2026-01-01, when: x}]", "unknown key"),
    ("holidays: [\n", "not valid YAML"),
    ("- just a list", "must be a mapping"),
])
def test_bad_calendar_files(tmp_path, text, message):
    path = tmp_path / "calendar.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message) as e:
        load_calendar(path)
    assert str(path) in e.value.message and e.value.hint


def test_missing_calendar_file(tmp_path):
    with pytest.raises(NotFound):
        load_calendar(tmp_path / "nope.yaml")


def test_custom_calendar(tmp_path):
    path = tmp_path / "calendar.yaml"
    path.write_text("response_working_days: 3\nholidays: ['2030-01-02']\nworking_weekends: [{date: 2030-01-05}]\n"
                    "years: [2030]\n", encoding="utf-8")
    cal = load_calendar(path)
    assert cal.response_working_days == 3
    assert cal.add(date(2030, 1, 1), 3) == date(2030, 1, 5)  # 3rd, 4th, Saturday 5th
