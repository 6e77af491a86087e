"""The dataset check report and example preview as HTML for the dataset step (everything escaped)."""

from __future__ import annotations

import html


def preview_html(examples) -> str:
    """Each example as the model sees it; the trained part is highlighted. Everything is escaped."""
    blocks = []
    for example in examples:
        prompt, better = html.escape(example.prompt), html.escape(example.completion)
        if example.pieces:  # every trained span of a conversation highlighted, not only the last answer
            marked = "".join(
                f"<mark>{html.escape(text)}</mark>" if trained else html.escape(text)
                for text, trained in example.pieces
            )
            blocks.append(f"<pre class='lathe-example'>{marked}</pre>")
        elif example.label is not None:
            kind = "desirable: pushed up" if example.label else "undesirable: pushed down"
            tag = "mark" if example.label else "del"
            blocks.append(f"<pre class='lathe-example'>{prompt}<{tag}>{better}</{tag}></pre><p>({kind})</p>")
        elif example.rejected is None:
            blocks.append(f"<pre class='lathe-example'>{prompt}<mark>{better}</mark></pre>")
        else:
            worse = html.escape(example.rejected)
            blocks.append(
                f"<pre class='lathe-example'>{prompt}<mark>{better}</mark></pre>"
                f"<pre class='lathe-example lathe-rejected'>{prompt}<del>{worse}</del></pre>"
            )
    legend = "<p>Exactly what the model reads. <mark>Highlighted</mark> text is what it learns to write"
    if any(example.rejected is not None for example in examples):
        legend += "; <del>struck-through</del> text is the worse answer it learns to prefer less"
    return legend + ".</p>" + "".join(blocks)


def report_html(report) -> str:
    """The check report: what was found, every problem with its rule and place, token lengths, and the preview."""
    parts = []
    for kind, sentence in report.findings():
        if kind == "source":
            source, _, facts = sentence.partition(": ")
            parts.append(f"<p><b>{html.escape(source)}</b>: {html.escape(facts)}</p>")
        else:
            parts.append(f"<p>{html.escape(sentence[0].upper() + sentence[1:])}{'' if kind == 'lengths' else '.'}</p>")
    problems = report.all_problems
    if problems:
        rows = "".join(
            f"<tr><td>{'⛔' if p.severity == 'error' else '⚠'} {p.severity}</td><td><code>{html.escape(p.rule)}</code>"
            f"</td><td>{html.escape(source)} {html.escape(p.where)}</td><td>{html.escape(p.message)} "
            f"<i>{html.escape(p.fix)}</i></td></tr>"
            for source, p in problems[:50]
        )
        header = "<tr><th></th><th>rule</th><th>where</th><th>what to do</th></tr>"
        parts.append(f"<table class='lathe-problems'>{header}{rows}</table>")
    verdict = "Ready to train." if report.usable else "Not ready: fix the errors above before going on."
    parts.append(f"<p><b>{verdict}</b></p>")
    if report.preview:
        parts.append(preview_html(report.preview))
    return "".join(parts)
