"""Every message of the pages has a Simplified Chinese translation, with the same placeholders,
and the catalogs compile (no browser needed)."""
from __future__ import annotations

import io
import re

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from tests.web.conftest import REPO

PO = REPO / "sandbox" / "web" / "translations" / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]")


def _msgids() -> set:
    found = set()
    method_map = [("sandbox/web/pages/**.py", "python"), ("sandbox/web/templates/pages/**.html", "jinja2")]
    for _file, _line, message, _comments, _ctx in extract_from_dir(str(REPO), method_map, keywords=KEYWORDS):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


def test_every_page_message_has_a_chinese_translation() -> None:
    with PO.open("rb") as fh:
        catalog = read_po(fh)
    translated = {m.id: m for m in catalog if m.id}
    missing = []
    for msgid in sorted(_msgids(), key=str):
        message = translated.get(msgid)
        strings = [] if message is None else (list(message.string) if isinstance(message.string, tuple) else [message.string])
        if message is None or message.fuzzy or not all(strings):
            missing.append(msgid)
            continue
        source = msgid[0] if isinstance(msgid, tuple) else msgid
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(source)), (msgid, text)
    assert not missing, f"add zh translations (pybabel update, docs/web.md) for: {missing}"


def test_catalog_compiles() -> None:
    with PO.open("rb") as fh:
        catalog = read_po(fh)
    assert not list(catalog.check())
    write_mo(io.BytesIO(), catalog)
