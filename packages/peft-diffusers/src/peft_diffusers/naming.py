"""Module names in the naming schemes LoRA files use for Stable Diffusion models.

Three schemes name the same module:

- diffusers paths, as ``named_modules()`` of a diffusers/transformers model gives them:
  ``down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q``;
- kohya names: a diffusers path with ``.`` replaced by ``_`` (``down_blocks_0_attentions_0_..._attn1_to_q``), which
  loses the segment boundaries, so turning them back into paths needs the model's module names or a vocabulary of
  the multi-word segments diffusers and CLIP use;
- LDM names, the original Stable Diffusion UNet's (``input_blocks.1.1.transformer_blocks.0.attn1.to_q``), which
  AUTOMATIC1111 and kohya's SDXL files use (with ``_`` as separator); the mapping depends on the UNet's block layout,
  so :class:`LdmUNetNames` is built from the module names of the UNet at hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# multi-word module-name segments of diffusers UNets/DiTs, CLIP text encoders and the LDM UNet, longest first within
# a greedy match; a kohya name is split at "_" and adjacent pieces are joined when they form one of these
_COMPOUND_SEGMENTS = frozenset(
    {
        # diffusers UNet / attention
        "down_blocks",
        "up_blocks",
        "mid_block",
        "transformer_blocks",
        "single_transformer_blocks",
        "to_q",
        "to_k",
        "to_v",
        "to_out",
        "add_q_proj",
        "add_k_proj",
        "add_v_proj",
        "to_add_out",
        "proj_in",
        "proj_out",
        "proj_attn",
        "proj_mlp",
        "time_emb_proj",
        "conv_shortcut",
        "conv_in",
        "conv_out",
        "conv_norm_out",
        "time_embedding",
        "add_embedding",
        "linear_1",
        "linear_2",
        "ff_context",
        "norm1_context",
        "norm_out",
        "norm_q",
        "norm_k",
        "norm_added_q",
        "norm_added_k",
        "time_text_embed",
        "timestep_embedder",
        "text_embedder",
        "guidance_embedder",
        "context_embedder",
        "x_embedder",
        "pos_embed",
        # CLIP text encoders
        "text_model",
        "self_attn",
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "final_layer_norm",
        "layer_norm1",
        "layer_norm2",
        "token_embedding",
        "position_embedding",
        "text_projection",
        # LDM / SGM UNet
        "input_blocks",
        "middle_block",
        "output_blocks",
        "in_layers",
        "out_layers",
        "emb_layers",
        "skip_connection",
        "time_embed",
        "label_emb",
    }
)
_LONGEST_COMPOUND = max(segment.count("_") + 1 for segment in _COMPOUND_SEGMENTS)
LDM_BLOCK_NAMES = ("input_blocks", "middle_block", "output_blocks")


def flatten_name(path: str) -> str:
    """The kohya spelling of a module path: ``a.b_c.0`` -> ``a_b_c_0``."""
    return path.replace(".", "_")


def guess_path(flat_name: str) -> str:
    """Turn a kohya name back into a module path without the model, using the segment vocabulary.

    ``down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0`` ->
    ``down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0``. Exact for the modules of diffusers UNets/DiTs
    and CLIP text encoders; pass the model's module names to the converters for anything else.
    """
    pieces = flat_name.split("_")
    segments, i = [], 0
    while i < len(pieces):
        for width in range(min(_LONGEST_COMPOUND, len(pieces) - i), 0, -1):
            candidate = "_".join(pieces[i : i + width])
            if width == 1 or candidate in _COMPOUND_SEGMENTS:
                segments.append(candidate)
                i += width
                break
    return ".".join(segments)


class FlatNameResolver:
    """Resolves kohya names exactly against the module names of one model.

    Args:
        module_names: every module path of the model (``[n for n, _ in model.named_modules()]``).
        aliases: extra ``{flat name: path}`` entries (e.g. LDM spellings), consulted after the model's own names.
    """

    def __init__(self, module_names: Iterable[str], aliases: dict[str, str] | None = None) -> None:
        self._paths: dict[str, str] = {}
        self._ambiguous: set[str] = set()
        for path in sorted(set(module_names)):
            if not path:
                continue
            flat = flatten_name(path)
            if flat in self._paths and self._paths[flat] != path:
                self._ambiguous.add(flat)
            self._paths[flat] = path
        for flat, path in sorted((aliases or {}).items()):
            self._paths.setdefault(flat, path)

    def resolve(self, flat_name: str) -> str:
        """The module path spelled ``flat_name``.

        Raises:
            KeyError: if no module (or several) of the model is spelled that way.
        """
        if flat_name in self._ambiguous:
            raise KeyError(f"kohya name {flat_name!r} fits several modules of the model; it cannot be resolved.")
        if flat_name not in self._paths:
            raise KeyError(flat_name)
        return self._paths[flat_name]


_RESNET_TO_LDM = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_TOP_LEVEL_TO_LDM = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_BLOCK_RE = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)(?=\.|$)")
_MID_RE = re.compile(r"^mid_block\.(resnets|attentions)\.(\d+)(?=\.|$)")


class LdmUNetNames:
    """Two-way map between the module paths of a diffusers ``UNet2DConditionModel`` and the original LDM UNet's.

    The LDM UNet numbers its blocks consecutively (``input_blocks.N``, ``middle_block.N``, ``output_blocks.N``), so
    where a diffusers block lands depends on ``layers_per_block`` and on which up blocks have attentions; both are
    read from the module names.

    Args:
        module_names: every module path of the diffusers UNet.

    Raises:
        ValueError: if the names do not look like a ``UNet2DConditionModel``.
    """

    def __init__(self, module_names: Iterable[str]) -> None:
        names = sorted({n for n in module_names if n})
        down_layers = _count_children(names, "down_blocks.0.resnets.")
        up_layers = _count_children(names, "up_blocks.0.resnets.")
        if not down_layers or not up_layers:
            raise ValueError("LDM (A1111) names need the module names of a diffusers UNet2DConditionModel.")
        self._down_width = down_layers + 1  # resnets of a down block plus its downsampler
        self._up_width = up_layers
        self._up_with_attention = {
            int(n.split(".")[1]) for n in names if n.startswith("up_blocks.") and ".attentions." in n
        }
        self.to_ldm: dict[str, str] = {}
        for name in names:
            ldm = self._ldm_name(name)
            if ldm is not None:
                self.to_ldm[name] = ldm
        self.from_ldm = {ldm: name for name, ldm in self.to_ldm.items()}

    def _ldm_name(self, name: str) -> str | None:
        for path, ldm in _TOP_LEVEL_TO_LDM.items():
            if name == path or name.startswith(path + "."):
                return ldm + name[len(path) :]
        match = _BLOCK_RE.match(name)
        if match:
            kind, block, part, index = match.group(1), int(match.group(2)), match.group(3), int(match.group(4))
            rest = name[match.end() :]
            return self._block_name(kind, block, part, index) + _inner_name(part, rest)
        match = _MID_RE.match(name)
        if match:
            part, index = match.group(1), int(match.group(2))
            position = 1 if part == "attentions" else 2 * index
            return f"middle_block.{position}" + _inner_name(part, name[match.end() :])
        return None

    def _block_name(self, kind: str, block: int, part: str, index: int) -> str:
        if kind == "down_blocks":
            if part == "downsamplers":
                return f"input_blocks.{(block + 1) * self._down_width}.0"
            return f"input_blocks.{1 + block * self._down_width + index}.{1 if part == 'attentions' else 0}"
        position = block * self._up_width
        if part == "upsamplers":
            return f"output_blocks.{position + self._up_width - 1}.{2 if block in self._up_with_attention else 1}"
        return f"output_blocks.{position + index}.{1 if part == 'attentions' else 0}"


def _count_children(names: list[str], prefix: str) -> int:
    indices = {n[len(prefix) :].split(".")[0] for n in names if n.startswith(prefix)}
    return len([i for i in indices if i.isdigit()])


def _inner_name(part: str, rest: str) -> str:
    """The LDM spelling of the path inside a block (``rest`` starts with "." or is empty)."""
    if not rest:
        return ""
    head, _, tail = rest[1:].partition(".")
    if part == "resnets" and head in _RESNET_TO_LDM:
        return "." + _RESNET_TO_LDM[head] + ("." + tail if tail else "")
    if part == "downsamplers" and head == "conv":
        return ".op" + ("." + tail if tail else "")
    return rest
