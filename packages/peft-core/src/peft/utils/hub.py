"""Pushing saved adapters and configs to the Hugging Face Hub (``push_to_hub``), with ``huggingface_hub``.

The object saves itself into a temporary folder with its own ``save_pretrained``; the folder is uploaded as one
commit. A model card already in the repository is downloaded first, so that saving updates it (PEFT's fields and
tags) instead of replacing it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from peft.utils.model_card import update_model_card

_MODEL_CARD = "README.md"


def push_to_hub(
    save_pretrained: Callable[[str], None],
    repo_id: str,
    *,
    default_commit_message: str,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    tags: list[str] | None = None,
    update_card: bool = True,
) -> Any:
    """Create ``repo_id`` if needed and upload what ``save_pretrained(folder)`` writes, in one commit.

    Args:
        save_pretrained: writes the files to upload into the folder it is given.
        repo_id: ``"name"`` or ``"organization/name"``.
        default_commit_message: the commit message when ``commit_message`` is None.
        private: whether a newly created repository is private (None: the account's default); an existing
            repository keeps its visibility.
        token: the Hub token (None: the one stored by ``hf auth login``).
        revision: the branch to commit to, created from the default branch if it does not exist.
        create_pr: open a pull request with the files instead of committing to the branch.
        tags: tags to add to the model card.
        update_card: keep the repository's model card and update it (only for savers that write a card).

    Returns:
        The ``huggingface_hub.CommitInfo`` of the commit (its ``pr_url`` is set with ``create_pr``).
    """
    from huggingface_hub import HfApi

    api = HfApi()
    repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    if revision is not None and not revision.startswith("refs/pr"):
        _create_branch(api, repo_id, revision, token, create_pr)
    with tempfile.TemporaryDirectory() as folder:
        if update_card:
            _fetch_model_card(api, repo_id, revision, token, folder)
        save_pretrained(folder)
        if tags:
            update_model_card(folder, base_model=None, peft_types=[], task_type=None, extra_tags=list(tags))
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or default_commit_message,
            commit_description=commit_description,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )


def _create_branch(api: Any, repo_id: str, revision: str, token: bool | str | None, create_pr: bool) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_branch(repo_id=repo_id, branch=revision, token=token, exist_ok=True)
    except HfHubHTTPError as exc:
        # without write access a pull request can still be opened against an existing branch
        if not (create_pr and getattr(exc.response, "status_code", None) == 403):
            raise


def _fetch_model_card(api: Any, repo_id: str, revision: str | None, token: bool | str | None, folder: str) -> None:
    """Copy the repository's ``README.md`` into ``folder``, if it has one."""
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    try:
        path = api.hf_hub_download(repo_id, _MODEL_CARD, revision=revision, token=token)
    except (EntryNotFoundError, RevisionNotFoundError):
        return
    shutil.copyfile(path, os.path.join(folder, _MODEL_CARD))
