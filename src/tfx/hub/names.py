"""What a model name and a revision may be. Both are checked before a cache path is built from them or a
request is made, so the CLI, the server and Ray all refuse the same inputs with the same message."""

from __future__ import annotations

import re
import unicodedata

from tfx import errors

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.\-]+)?$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
MAX_REVISION = 255
# Characters git never allows in a ref name (git check-ref-format), besides control characters and spaces.
_REF_FORBIDDEN = set("~^:?*[\\")


def check_name(name: str) -> None:
    """A Hub id (`owner/name` or `name`) as huggingface_hub would accept it; ModelNotFound otherwise."""
    ok = bool(REPO_ID.match(name)) and len(name) <= 200
    if ok:
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id  # no "--", "..", leading or trailing "." or "-"

        try:
            validate_repo_id(name)
        except HFValidationError:
            ok = False
    if not ok:
        from tfx.explain import close_hint

        raise errors.ModelNotFound(f"'{name}' is not a model name or a model directory.", close_hint(name))


def validate_revision(revision: str | None) -> str | None:
    """A revision is a branch, tag or commit name (`main`, `v1.0`, `refs/pr/3`, a commit hash), by git's
    rules for ref names: no `..`, no leading or trailing `/`, no `//`, no part starting with `.` or ending
    in `.lock`, no `@{`, no control characters, spaces or ~^:?*[\\, and at most 255 characters. Anything
    else is a UsageError before it can become a path under refs/ or a URL. None (the default branch) passes."""
    if revision is None:
        return None
    if not isinstance(revision, str) or not _is_ref_name(revision):
        raise errors.UsageError(
            f"--revision {_shown(revision)} is not a branch, tag or commit name.",
            "Use a branch (main), a tag (v1.0) or a commit hash of the model's repository, or drop --revision.",
        )
    return revision


def _is_ref_name(revision: str) -> bool:
    if not revision or len(revision) > MAX_REVISION or revision == "@":
        return False
    if revision.startswith("/") or revision.endswith(("/", ".")) or any(s in revision for s in ("..", "//", "@{")):
        return False
    for char in revision:
        if char in _REF_FORBIDDEN or unicodedata.category(char)[0] in "CZ":  # control, format, unassigned, spaces
            return False
    return all(part and not part.startswith(".") and not part.endswith(".lock") for part in revision.split("/"))


def _shown(value: object) -> str:
    text = repr(value)  # control characters come out escaped, never raw on the terminal
    return text if len(text) <= 60 else text[:57] + "..."
