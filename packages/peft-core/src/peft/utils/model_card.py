"""The ``README.md`` model card written next to saved adapters.

Only the YAML front matter is managed (``library_name``, ``base_model``, ``tags``, ``pipeline_tag``); a card the
user edited keeps its body, and saving again never duplicates anything.
"""

from __future__ import annotations

import json
import os

from peft.utils.files import atomic_write_text

_PIPELINE_TAGS = {"CAUSAL_LM": "text-generation"}
_DETAILS = "This adapter was saved with [peft](https://pypi.org/project/peft/)."


def _read_front_matter(text: str) -> tuple[dict[str, object], str]:
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        return {}, text
    header, body = text[4:].split("\n---", 1)
    fields: dict[str, object] = {}
    current_list: list[str] | None = None
    for line in header.splitlines():
        if line.startswith("- ") and current_list is not None:
            current_list.append(line[2:].strip())
        elif ":" in line:
            key, value = (part.strip() for part in line.split(":", 1))
            current_list = [] if not value else None
            fields[key] = current_list if current_list is not None else value
    return fields, body.lstrip("\n")


def _write_front_matter(fields: dict[str, object]) -> str:
    lines = ["---"]
    for key in sorted(fields):
        value = fields[key]
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines.extend(f"- {item}" for item in value)
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n---\n"


def update_model_card(
    save_directory: str, base_model: str | None, peft_types: list[str], task_type: str | None, extra_tags: list[str]
) -> None:
    """Create or update ``save_directory/README.md``."""
    path = os.path.join(save_directory, "README.md")
    text = open(path, encoding="utf-8").read() if os.path.isfile(path) else ""
    fields, body = _read_front_matter(text)
    fields["library_name"] = "peft"
    if base_model:
        fields["base_model"] = json.dumps(base_model) if ":" in base_model else base_model
    tags = fields.get("tags") if isinstance(fields.get("tags"), list) else []
    for tag in [*extra_tags, *(t.lower() for t in peft_types)]:
        if tag not in tags:
            tags.append(tag)
    fields["tags"] = tags
    if task_type in _PIPELINE_TAGS:
        fields["pipeline_tag"] = _PIPELINE_TAGS[task_type]
    if _DETAILS not in body:
        body = (body.rstrip("\n") + "\n\n" if body.strip() else "") + _DETAILS + "\n"
    atomic_write_text(path, _write_front_matter(fields) + "\n" + body)
