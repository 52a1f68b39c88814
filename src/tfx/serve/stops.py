"""Stop strings in generated text: the cut at the first one (`cut_at_stop`), and `StopScanner`, which holds
back streamed text that may be the start of one until the next piece shows whether it is. Linear in the
text and in each stop's length (KMP)."""

from __future__ import annotations


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """The text up to the first stop string, and whether one was found (str.find: linear in the text)."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


def _failure(stop: str) -> list[int]:
    """KMP's failure function: fail[i] is the longest proper prefix of stop[: i + 1] that is also its suffix."""
    fail, k = [0] * len(stop), 0
    for i in range(1, len(stop)):
        while k and stop[i] != stop[k]:
            k = fail[k - 1]
        if stop[i] == stop[k]:
            k += 1
        fail[i] = k
    return fail


def held_length(text: str, stop: str, fail: list[int]) -> int:
    """The longest proper prefix of stop that text ends with: what may be a stop string's start. Reads only
    text's last len(stop) - 1 characters, each once (KMP), so it is linear in the stop's length."""
    k = 0
    for ch in text[max(len(text) - len(stop) + 1, 0) :] if len(stop) > 1 else "":
        while k and (k == len(stop) or stop[k] != ch):
            k = fail[k - 1]
        if stop[k] == ch:
            k += 1
    return k if k < len(stop) else 0


class StopScanner:
    """Streamed pieces in, text safe to send out: anything that may be the start of a stop string is held
    back until the next piece shows whether it is."""

    def __init__(self, stops: list[str]):
        self.stops = [(s, _failure(s)) for s in stops if s]
        self.held = ""
        self.hit = False

    def feed(self, piece: str) -> str:
        text, self.hit = cut_at_stop(self.held + piece, [s for s, _ in self.stops])
        if self.hit:
            self.held = ""
            return text
        keep = max((held_length(text, s, fail) for s, fail in self.stops), default=0)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held
