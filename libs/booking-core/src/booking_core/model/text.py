"""The one rule for free text a client sends (names, items, reasons, filter text).

Shared by the API's contract and the ops console's filters, so a value one
refuses the other refuses too, with the same message.
"""

from __future__ import annotations

import re
import unicodedata

MAX_TEXT = 200
#: Characters text fields refuse, as a regex class (one source for the check and the OpenAPI
#: document's pattern): Unicode category Cc (C0 controls, DEL, C1 controls), the line and paragraph
#: separators, and the bidi embeddings, overrides and isolates, which make stored text display in
#: another order than it reads (Trojan Source) in the ops console, the email and the PDF alike. Format
#: characters such as the joiners U+200C/U+200D are real text (Persian names, emoji sequences) and stay.
REFUSED_TEXT_CHARS = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_REFUSED_TEXT = re.compile(f"[{REFUSED_TEXT_CHARS}]")
#: At least one character that is not whitespace, and none refused.
TEXT_PATTERN = f"^[^{REFUSED_TEXT_CHARS}]*[^\\s{REFUSED_TEXT_CHARS}][^{REFUSED_TEXT_CHARS}]*$"
LONE_SURROGATE = "must be valid Unicode text (it contains a lone surrogate)"


def check_text(value: str, max_length: int = MAX_TEXT) -> str:
    """`value` trimmed; ValueError with the client-facing message when the rule refuses it."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters")
    if any(unicodedata.category(c) == "Cs" for c in value):
        raise ValueError(LONE_SURROGATE)
    if _REFUSED_TEXT.search(value):
        raise ValueError("must not contain control characters")
    return value


def printable(value: str) -> str:
    """`value` with every character the text rule refuses written as its escape (`\\x1b`, `\\u202e`).

    For untrusted text printed to a terminal (a command's output): a name stored
    before the rule, or an outbox row's tenant id, must not move the cursor,
    recolour the screen or reorder what follows it.
    """
    return _REFUSED_TEXT.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), value)
