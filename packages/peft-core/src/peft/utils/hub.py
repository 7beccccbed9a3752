"""Pushing saved adapters and configs to the Hugging Face Hub (``PushToHubMixin.push_to_hub``), with
``huggingface_hub``.

The object saves itself into a temporary folder with its own ``save_pretrained``; the folder is uploaded as one
commit. A model card already in the repository is downloaded first, so that saving updates it (PEFT's fields and
tags) instead of replacing it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from peft.utils.model_card import update_model_card

_MODEL_CARD = "README.md"


class PushToHubMixin:
    """``push_to_hub`` for objects that save themselves with ``save_pretrained(folder)`` (models, configs)."""

    # the commit message when none is given, and whether the saved folder's model card merges with the repo's
    _hub_commit_message = "Upload model"
    _hub_updates_card = True

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        tags: list[str] | None = None,
    ) -> Any:
        """Create ``repo_id`` if needed and upload what ``save_pretrained`` writes (every adapter, the model card),
        in one commit. A model card already in the repository is kept and updated.

        Args:
            repo_id: ``"name"`` or ``"organization/name"``.
            commit_message: the commit message (default: ``"Upload model"``, ``"Upload config"`` for a config).
            commit_description: the commit's description.
            private: whether a newly created repository is private (None: the account's default); an existing
                repository keeps its visibility.
            token: the Hub token (None: the one stored by ``hf auth login``).
            revision: the branch to commit to, created from the default branch if it does not exist.
            create_pr: open a pull request with the files instead of committing to the branch.
            max_shard_size: accepted for compatibility; adapter files are never sharded.
            tags: tags to add to the model card.

        Returns:
            The ``huggingface_hub.CommitInfo`` of the commit (its ``pr_url`` is set with ``create_pr``).

        Example:
            >>> peft_model.push_to_hub("my-org/my-lora", private=True)
        """
        from huggingface_hub import HfApi

        api = HfApi()
        repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        if revision is not None and not revision.startswith("refs/pr"):
            _create_branch(api, repo_id, revision, token, create_pr)
        with tempfile.TemporaryDirectory() as folder:
            if self._hub_updates_card:
                _fetch_model_card(api, repo_id, revision, token, folder)
            self.save_pretrained(folder)
            if tags:
                update_model_card(folder, base_model=None, peft_types=[], task_type=None, extra_tags=list(tags))
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=commit_message or self._hub_commit_message,
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
