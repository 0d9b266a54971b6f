"""``/ui``: a questionnaire for people, generated from the prod model's input schema.

One input per field: the time (now by default), numbers with the training range as a hint,
categories as a list of the values seen in training (a free entry with suggestions when the
stored list is not the whole vocabulary), text as a text area. The page posts the answers to
``/predict`` as a program would, and shows the answer, the variant that gave it and the model's
confidence. Every name and category comes from the data, so each is HTML-escaped and the field
list reaches the script as JSON with ``<`` escaped (a category cannot close the script tag).
"""

from __future__ import annotations

import html
import json
from typing import Any

from router.validation import STORED_CATEGORIES, expected_fields

_KIND_HINT = {"time": "date and time", "numeric": "a number", "categorical": "one of the known values",
              "text": "free text", "id": "an identifier (optional)"}


def _field(index: int, name: str, kind: str, schema: dict) -> str:
    """The label and input of one field (``index``: its position, for a unique element id)."""
    ident = f"field-{index}"
    label = f'<label for="{ident}">{html.escape(name)}</label>'
    hint = _KIND_HINT.get(kind, kind)
    attrs = f'id="{ident}" name="{html.escape(name, quote=True)}" data-kind="{kind}"'
    if kind == "time":
        control = f'<input type="datetime-local" step="1" required {attrs}>'
    elif kind == "numeric":
        low, high = schema.get("numeric_ranges", {}).get(name, (None, None))
        if low is not None:
            hint = f"a number; in training {low:.6g} to {high:.6g}"
        control = f'<input type="number" step="any" {attrs} placeholder="{html.escape(hint, quote=True)}">'
    elif kind == "categorical":
        known = schema.get("categories", {}).get(name) or []
        options = "".join(f'<option value="{html.escape(str(c), quote=True)}">{html.escape(str(c))}</option>'
                          for c in known)
        if len(known) < STORED_CATEGORIES:  # the whole vocabulary: a choice
            control = f'<select {attrs}><option value="">(unknown)</option>{options}</select>'
            hint = f"one of {len(known)} values seen in training"
        else:  # the most frequent ones only: suggestions, any value allowed
            control = (f'<input list="{ident}-known" {attrs} placeholder="type or pick">'
                       f'<datalist id="{ident}-known">{options}</datalist>')
            hint = f"the {len(known)} most frequent values are suggested; others are accepted"
    elif kind == "text":
        control = f'<textarea rows="3" {attrs}></textarea>'
    else:
        control = f'<input type="text" {attrs}>'
    return f'<div class="field">{label}{control}<small>{html.escape(hint)}</small></div>'


def _script_json(value: Any) -> str:
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def questionnaire_page(title: str, version: int, schema: dict, classes: list | None) -> str:
    """The HTML page for the prod model ``version`` with input schema ``schema`` (``classes``: the
    model's classes for classification, None for regression)."""
    fields = expected_fields(schema)
    inputs = "\n".join(_field(i, name, kind, schema) for i, (name, kind) in enumerate(fields.items())
                       if kind != "id")
    kinds = {name: kind for name, kind in fields.items() if kind != "id"}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }}
.field {{ display: grid; grid-template-columns: 12rem 1fr; gap: .25rem 1rem; margin: .6rem 0; }}
.field small {{ grid-column: 2; color: #555; }}
#answer {{ margin-top: 1.5rem; padding: 1rem; border: 1px solid #ccc; border-radius: .4rem; }}
#answer.error {{ border-color: #b00; color: #b00; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Answer what you know; leave the rest empty. The prod model (version {version}) answers, or the
staging model when this visitor is in the A/B test's B group.</p>
<form id="questionnaire">
{inputs}
<label for="user-id">your name or id (optional: the same id always gets the same model)</label>
<input id="user-id" name="user_id" type="text">
<p><button type="submit">Predict</button></p>
</form>
<div id="answer" hidden></div>
<script>
const KINDS = {_script_json(kinds)};
const CLASSES = {_script_json(classes)};
const form = document.getElementById("questionnaire");
const answer = document.getElementById("answer");
const now = new Date(Date.now() - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 19);
form.querySelectorAll('[data-kind="time"]').forEach(el => {{ el.value = now; }});
form.addEventListener("submit", async event => {{
  event.preventDefault();
  const features = {{}};
  for (const el of form.querySelectorAll("[data-kind]")) {{
    const kind = KINDS[el.name];
    const raw = el.value.trim();
    if (raw === "") {{ features[el.name] = null; continue; }}
    features[el.name] = kind === "numeric" ? Number(raw)
      : kind === "time" ? new Date(raw).toISOString() : raw;
  }}
  const body = {{features}};
  const user = document.getElementById("user-id").value.trim();
  if (user) body.user_id = user;
  const response = await fetch("/predict", {{method: "POST", headers: {{"Content-Type": "application/json"}},
                                            body: JSON.stringify(body)}});
  const data = await response.json();
  answer.hidden = false;
  answer.replaceChildren();
  const line = text => {{ const p = document.createElement("p"); p.textContent = text; answer.append(p); }};
  if (!response.ok) {{
    answer.className = "error";
    line(`Not answered (${{response.status}}): ${{data.error}}`);
    (data.errors || []).forEach(e => line(`${{e.field}}: ${{e.problem}}`));
    return;
  }}
  answer.className = "";
  line(`Prediction: ${{data.prediction}}`);
  if (data.probability !== null && data.probability !== undefined) {{
    // two classes: /predict's probability is the positive (second) class's, whichever was predicted
    const sure = CLASSES && CLASSES.length === 2 && String(data.prediction) === String(CLASSES[0])
      ? 1 - data.probability : data.probability;
    line(`Confidence: ${{(100 * sure).toFixed(1)}}%`);
  }}
  line(`Answered by variant ${{data.variant}} (model version ${{data.model_version}}, ${{data.model_used}})`);
}});
</script>
</body></html>
"""
