"""The class roster: one row per student with the identities each LMS knows them by (a CSV file the instructor
exports or writes: id, name, email, section, and any of canvas_id, sis_user_id, sis_login_id, username,
id_number, github). Submissions found in an LMS download are matched to a roster row by those identities."""
from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

FIELDS = ("id", "name", "email", "section", "canvas_id", "sis_user_id", "sis_login_id", "username", "id_number",
          "github")
# Column names as LMS exports spell them, mapped to ours (compared after normalize_header).
ALIASES = {
    "student": "name", "fullname": "name", "studentname": "name", "email": "email", "emailaddress": "email",
    "sisuserid": "sis_user_id", "sisloginid": "sis_login_id", "canvasid": "canvas_id", "canvasuserid": "canvas_id",
    "userid": "canvas_id", "idnumber": "id_number", "githubusername": "github", "githublogin": "github",
    "login": "username", "studentid": "id", "sid": "id",
}


class RosterError(ValueError):
    """A roster that cannot be read, said in one line."""


@dataclass(frozen=True)
class Person:
    """One student of the roster."""

    id: str
    name: str = ""
    email: str = ""
    section: str = ""
    canvas_id: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    username: str = ""
    id_number: str = ""
    github: str = ""

    def to_dict(self) -> dict[str, str]:
        """Plain data (only the identities that are known)."""
        return {k: v for k, v in asdict(self).items() if v}


def normalize_header(text: str) -> str:
    """A column name compared loosely: 'SIS User ID', 'sis_user_id' and 'sisuserid' are one column."""
    return re.sub(r"[^a-z0-9]", "", text.strip().lower())


def plain(text: str) -> str:
    """A name compared loosely: accents, case, punctuation and spacing dropped ('Müller, Jo' ~ 'muller jo')."""
    decomposed = unicodedata.normalize("NFKD", text)
    return re.sub(r"[^a-z0-9]", "", "".join(c for c in decomposed if not unicodedata.combining(c)).casefold())


def sortable(name: str) -> str:
    """Canvas's file prefix for a name: the last name then the first names, letters and digits only
    ('John Smith' -> 'smithjohn'; 'Smith, John' -> 'smithjohn')."""
    if "," in name:
        last, _, first = name.partition(",")
    else:
        first, _, last = name.strip().rpartition(" ")
    return plain(last + first)


def load_roster(path: Path) -> list[Person]:
    """The roster's students; a RosterError says why a file cannot be one."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RosterError(f"roster {path}: cannot be read ({exc})") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise RosterError(f"roster {path}: empty")
    known = {normalize_header(f): f for f in FIELDS}
    headers = [normalize_header(h) for h in rows[0]]
    canvas_export = "sisuserid" in headers and "canvasid" not in headers  # Canvas's own export: "ID" is its user id
    columns = [("canvas_id" if canvas_export and h == "id" else None) or known.get(h) or ALIASES.get(h)
               for h in headers]
    identities = {"id", "email", "sis_user_id", "sis_login_id", "canvas_id"} if canvas_export else {"id", "email"}
    if not identities & set(columns):
        raise RosterError(f"roster {path}: needs an 'id' or an 'email' column (it has {', '.join(rows[0])})")
    people = []
    for number, row in enumerate(rows[1:], 2):
        values = {c: v.strip() for c, v in zip(columns, row) if c and v.strip()}
        if not values or (values.get("name", "").lower() == "points possible"):
            continue
        values.setdefault("id", values.get("sis_user_id") or values.get("sis_login_id") or values.get("canvas_id")
                          or values.get("email", ""))
        if not values["id"]:
            raise RosterError(f"roster {path}, line {number}: no id and no email")
        people.append(Person(**values))
    ids = [p.id for p in people]
    doubles = sorted({i for i in ids if ids.count(i) > 1})
    if doubles:
        raise RosterError(f"roster {path}: the id {doubles[0]} is there twice")
    return people


@dataclass
class Roster:
    """The students, and the lookups that match a submission's identities to one of them."""

    people: list[Person]

    def match(self, **known: str) -> Person | None:
        """The one student whose identity equals one of `known` (canvas_id, email, github, name...), or None."""
        for key in ("id", "canvas_id", "sis_user_id", "sis_login_id", "username", "id_number", "email", "github"):
            value = known.get(key, "").strip()
            if value:
                found = [p for p in self.people if getattr(p, key).casefold() == value.casefold()]
                if len(found) == 1:
                    return found[0]
        for key in ("name", "sortable"):
            value = known.get(key, "")
            if not value:
                continue
            if key == "name":
                found = [p for p in self.people if p.name and plain(p.name) == plain(value)]
            else:
                found = [p for p in self.people if p.name and sortable(p.name) == plain(value)]
            if len(found) == 1:
                return found[0]
        return None
