"""``push_to_hub`` and loading from the Hub, against a local fake of the Hub API (issue 11, item 7; SAVE-21).

``FakeHub`` stands in for the methods of ``huggingface_hub.HfApi`` that pushing uses and for
``huggingface_hub.hf_hub_download`` that loading uses, storing repositories as folders under ``tmp_path``; the
network is never used (``HF_HUB_OFFLINE=1`` makes any call that slipped through fail).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub.errors import EntryNotFoundError
from torch import nn

from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model


class FakeHub:
    """Repositories as folders ``<root>/<repo_id>/<branch>``; records every call with its arguments."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, dict]] = []
        self.private: dict[str, bool | None] = {}
        self.pull_requests = 0

    def folder(self, repo_id: str, revision: str | None = None) -> Path:
        return self.root / repo_id / (revision or "main")

    # HfApi methods (installed on the class, so ``self`` of the api comes first)
    def create_repo(self, api, repo_id, *, token=None, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, "token": token, "private": private}))
        full_id = repo_id if "/" in repo_id else f"fake-user/{repo_id}"
        if full_id in self.private and not exist_ok:
            raise AssertionError("the repository exists")
        self.private.setdefault(full_id, private)
        self.folder(full_id).mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(repo_id=full_id)

    def create_branch(self, api, repo_id, *, branch, token=None, exist_ok=False, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, "branch": branch, "token": token}))
        if not self.folder(repo_id, branch).exists():
            shutil.copytree(self.folder(repo_id), self.folder(repo_id, branch))

    def hf_hub_download(self, api, repo_id, filename, *, revision=None, token=None, subfolder=None, **kwargs):
        self.calls.append(("hf_hub_download", {"repo_id": repo_id, "filename": filename, "token": token}))
        return self.download(repo_id, filename, revision=revision, subfolder=subfolder)

    def upload_folder(self, api, *, repo_id, folder_path, commit_message=None, commit_description=None, token=None,
                      revision=None, create_pr=None, **kwargs):  # fmt: skip
        self.calls.append(("upload_folder", {"repo_id": repo_id, "token": token, "create_pr": create_pr}))
        if create_pr:
            self.pull_requests += 1
            revision = f"refs/pr/{self.pull_requests}"
        shutil.copytree(folder_path, self.folder(repo_id, revision), dirs_exist_ok=True)
        pr_url = f"https://fake-hub/{repo_id}/discussions/{self.pull_requests}" if create_pr else None
        return SimpleNamespace(commit_message=commit_message, commit_description=commit_description, pr_url=pr_url)

    # the module-level download that loading (from_pretrained) uses
    def download(self, repo_id, filename, revision=None, subfolder=None, **kwargs):
        path = self.folder(repo_id, revision) / (subfolder or "") / filename
        if not path.is_file():
            raise EntryNotFoundError(f"{filename} not found in {repo_id}")
        return str(path)


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    fake = FakeHub(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("create_repo", "create_branch", "hf_hub_download", "upload_folder"):
        method = getattr(fake, name)
        monkeypatch.setattr(huggingface_hub.HfApi, name, lambda api, *a, _m=method, **kw: _m(api, *a, **kw))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.download)
    return fake


class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(8, 8)
        self.lin1 = nn.Linear(8, 2)

    def forward(self, x):
        return self.lin1(torch.relu(self.lin0(x)))


def _base() -> nn.Module:
    torch.manual_seed(0)
    return _MLP().eval()


def _model() -> PeftModel:
    model = get_peft_model(_base(), LoraConfig(r=2, target_modules=["lin0"], init_lora_weights=False))
    model.add_adapter("other", LoraConfig(r=2, target_modules=["lin1"], init_lora_weights=False))
    return model.eval()


def _x() -> torch.Tensor:
    return torch.randn(3, 8, generator=torch.Generator().manual_seed(1))


def _front_matter(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")[4:].split("\n---", 1)[0])


def test_push_to_hub_uploads_every_adapter_and_loads_back(hub):
    model = _model()
    commit = model.push_to_hub("tiny-lora", private=True, token="secret")
    assert commit.commit_message == "Upload model" and commit.pr_url is None
    repo = hub.folder("fake-user/tiny-lora")
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "other/adapter_config.json",
        "other/adapter_model.safetensors",
    ]
    assert hub.private == {"fake-user/tiny-lora": True}
    assert {call["token"] for _, call in hub.calls} == {"secret"}
    assert _front_matter(repo / "README.md")["library_name"] == "peft"

    loaded = PeftModel.from_pretrained(_base(), "fake-user/tiny-lora")
    loaded.load_adapter("fake-user/tiny-lora", "other", subfolder="other")
    with torch.no_grad():
        torch.testing.assert_close(loaded(_x()), model(_x()))
        model.set_adapter("other")
        loaded.set_adapter("other")
        torch.testing.assert_close(loaded(_x()), model(_x()))


def test_push_to_hub_to_a_branch_leaves_the_default_branch_alone(hub):
    model = _model()
    model.push_to_hub("org/tiny-lora", commit_message="first")
    model.base_model.model.lin0.lora_B["default"].weight.data += 1.0
    commit = model.push_to_hub("org/tiny-lora", revision="dev", commit_message="second", commit_description="why")
    assert (commit.commit_message, commit.commit_description) == ("second", "why")
    assert ("create_branch", {"repo_id": "org/tiny-lora", "branch": "dev", "token": None}) in hub.calls
    on_main = PeftModel.from_pretrained(_base(), "org/tiny-lora")
    on_dev = PeftModel.from_pretrained(_base(), "org/tiny-lora", revision="dev")
    with torch.no_grad():
        torch.testing.assert_close(on_dev(_x()), model(_x()))
        assert not torch.allclose(on_main(_x()), model(_x()))


def test_push_to_hub_with_create_pr_opens_a_pull_request(hub):
    _model().push_to_hub("org/tiny-lora")
    before = (hub.folder("org/tiny-lora") / "adapter_model.safetensors").read_bytes()
    model = _model()
    model.base_model.model.lin0.lora_B["default"].weight.data += 1.0
    commit = model.push_to_hub("org/tiny-lora", create_pr=True)
    assert commit.pr_url == "https://fake-hub/org/tiny-lora/discussions/1"
    assert (hub.folder("org/tiny-lora") / "adapter_model.safetensors").read_bytes() == before
    assert (hub.folder("org/tiny-lora", "refs/pr/1") / "adapter_model.safetensors").read_bytes() != before


def test_push_to_hub_keeps_the_repositorys_model_card_and_adds_tags(hub):
    repo = hub.folder("org/tiny-lora")
    repo.mkdir(parents=True)
    hub.private["org/tiny-lora"] = False
    (repo / "README.md").write_text("---\nlicense: mit\ntags:\n- mine\n---\n# My adapter\n\nTrained on my data.\n")
    _model().push_to_hub("org/tiny-lora", private=True, tags=["extra"])
    card = (repo / "README.md").read_text(encoding="utf-8")
    front = _front_matter(repo / "README.md")
    assert front["license"] == "mit" and front["library_name"] == "peft"
    assert {"mine", "lora", "extra"} <= set(front["tags"])
    assert "# My adapter" in card and "Trained on my data." in card
    assert hub.private["org/tiny-lora"] is False  # an existing repository keeps its visibility


def test_config_push_to_hub_uploads_the_config(hub):
    config = LoraConfig(r=4, target_modules=["lin0"])
    commit = config.push_to_hub("org/config-only")
    assert commit.commit_message == "Upload config"
    repo = hub.folder("org/config-only")
    assert sorted(os.listdir(repo)) == ["adapter_config.json"]
    loaded = PeftConfig.from_pretrained("org/config-only")
    assert isinstance(loaded, LoraConfig) and loaded.r == 4 and loaded.target_modules == {"lin0"}
