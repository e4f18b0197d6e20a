"""Showing samples in a notebook: a FIM sample (file or repository level) as coloured HTML."""

from __future__ import annotations

import html

from qcoder_lib.fim import fim_token_ids
from qcoder_lib.tokenizer import decode
from qcoder_lib.tokenizer.special import (ENDOFTEXT, FILE_SEP, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX,
                                          REPO_NAME)


# Colours of the pieces in :func:`render_html`.
COLOURS = {
    "prefix": "#cfe8ff",
    "suffix": "#ffe4c4",
    "middle": "#c8f7c5",
    "special": "#444444",
    "repo": "#eeeeee",
}


def _span(text: str, kind: str) -> str:
    esc = html.escape(text)
    if kind == "special":
        return (f'<span style="background:{COLOURS["special"]};color:white;'
                f'border-radius:3px;padding:0 2px">{esc}</span>')
    return f'<span style="background:{COLOURS[kind]}">{esc}</span>'


def render_html(ids, tokenizer, max_chars: int = 400) -> str:
    """HTML for a file- or repo-level sample: special tokens as dark chips, prefix blue, suffix
    orange, middle green, repository context grey; each piece shortened to ``max_chars``."""
    sp = fim_token_ids(tokenizer)
    by_id = {v: k for k, v in sp.items()}
    ids = [int(t) for t in ids]
    parts, run, kind = [], [], "repo" if ids and ids[0] == sp[REPO_NAME] else "prefix"
    after = {FIM_PREFIX: "prefix", FIM_SUFFIX: "suffix", FIM_MIDDLE: "middle",
             REPO_NAME: "repo", FILE_SEP: "repo", ENDOFTEXT: "repo"}

    def flush():
        if run:
            text = decode(tokenizer, run)
            if len(text) > max_chars:
                half = max_chars // 2
                text = text[:half] + f" … [{len(text) - max_chars} chars] … " + text[-half:]
            parts.append(_span(text, kind))
            run.clear()

    for t in ids:
        if t in by_id:
            flush()
            parts.append(_span(by_id[t], "special"))
            kind = after.get(by_id[t], kind)
        else:
            run.append(t)
    flush()
    return ('<pre style="white-space:pre-wrap;font-size:12px;line-height:1.5">'
            + "".join(parts) + "</pre>")
