"""A DataFrame that says MOCK whenever it is printed."""
from __future__ import annotations

import pandas as pd

MOCK_LABEL = "[MOCK: not real data]"


class MockFrame(pd.DataFrame):
    """Answers over mock data: every printout starts with a MOCK line; ``attrs["mock"]`` is True."""

    @property
    def _constructor(self):  # type: ignore[override]
        return MockFrame

    def __repr__(self) -> str:
        return MOCK_LABEL + "\n" + super().__repr__()
