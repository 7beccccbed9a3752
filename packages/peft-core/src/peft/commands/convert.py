"""``peft convert``: LoRA adapters between the PEFT format and other tools' formats, and Bone -> MiSS.

- ``peft``: an adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``). A LoRA for several pipeline
  components (UNet and text encoders) is one folder per component, named after it (``unet/``, ``text_encoder/``).
- the formats host packages register (peft-diffusers: ``kohya``, ``a1111``, ``diffusers``): one ``.safetensors``
  file. The conversions themselves live in the host package (:mod:`peft_diffusers.convert`); this command reads and
  writes the files.
- ``miss``: a Bone adapter folder becomes the equivalent MiSS adapter (:mod:`peft.tuners.bone.convert`).

Conversions are lossless: the tensors are copied unchanged, and each module's scale (``alpha / rank``) is carried by
the PEFT config (``lora_alpha``, ``alpha_pattern``, ``rank_pattern``) or by the other format's alphas. The one
exception is the ``diffusers`` format, which has no alpha: the scale is multiplied into the up weights there.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from peft.commands import CommandError, add_verb
from peft.utils.files import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME

EXAMPLES = """\
examples:
  peft convert style.safetensors ./style-peft --to peft                # kohya/A1111/diffusers file -> PEFT folder
  peft convert ./style-peft style-kohya.safetensors --to kohya         # PEFT folder -> kohya file
  peft convert ./style-peft style-a1111.safetensors --to a1111 --base ./sd15   # A1111 names need the UNet
  peft convert sdxl_lora.safetensors ./out --to peft --base ./sdxl     # resolve kohya names against the pipeline
  peft convert ./bone-adapter ./miss-adapter --to miss                 # Bone -> MiSS
"""


def _formats() -> dict[str, Any]:
    from peft.hosts import get_host_registry

    return dict(get_host_registry().lora_formats)


def add_parser(commands: Any) -> None:
    parser = add_verb(
        commands,
        "convert",
        "convert LoRA adapters between the PEFT format and kohya/A1111/diffusers files; Bone -> MiSS",
        (
            "Convert INPUT to OUTPUT in the format --to. Formats: 'peft' (adapter folder), 'miss' (from a Bone "
            "adapter folder), and the LoRA file formats of the installed host packages (peft-diffusers: 'kohya', "
            "'a1111', 'diffusers'; see `peft convert --list`). The input format is detected unless --from says it."
        ),
        EXAMPLES,
    )
    parser.add_argument("input", metavar="INPUT", nargs="?", help="adapter folder or LoRA .safetensors file")
    parser.add_argument("output", metavar="OUTPUT", nargs="?", help="folder (peft, miss) or .safetensors file")
    parser.add_argument("--to", dest="to_format", help="output format: peft, miss, or a host format (--list)")
    parser.add_argument("--from", dest="from_format", default=None, help="input format (default: detected)")
    parser.add_argument("--base", default=None, help="base model or pipeline folder, for names that need it")
    parser.add_argument(
        "--component",
        default="unet",
        help="the pipeline component of a PEFT adapter whose keys name none (default: unet)",
    )
    parser.add_argument("--list", action="store_true", help="list the formats and exit")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.list:
        print("peft       adapter folder (adapter_config.json + adapter_model.safetensors)")
        print("miss       MiSS adapter folder, converted from a Bone adapter")
        for name, lora_format in sorted(_formats().items()):
            print(f"{name:<10} {lora_format.description}")
        return 0
    if not args.input or not args.output or not args.to_format:
        raise CommandError("give INPUT, OUTPUT and --to FORMAT (see `peft convert --help`).")
    written = convert(
        args.input,
        args.output,
        to_format=args.to_format,
        from_format=args.from_format,
        base=args.base,
        component=args.component,
        overwrite=args.overwrite,
    )
    print(f"peft convert: wrote {', '.join(str(p) for p in written)}")
    return 0


# ------------------------------------------------------------------------------------------------ reading
def _read_file(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.suffix != ".safetensors":
        raise CommandError(f"{str(path)!r}: expected a .safetensors LoRA file or an adapter folder.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CommandError(f"{str(path)!r} is not a readable safetensors file: {exc}") from exc


def _read_peft_folder(folder: Path, component: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state_dict with component-prefixed keys, {component: LoraConfig})`` of a PEFT LoRA folder."""
    from peft import LoraConfig, PeftConfig
    from peft.commands import adapter_folders
    from peft.utils.files import load_peft_weights

    state_dict, configs = {}, {}
    for adapter in adapter_folders(folder):
        name = component if adapter == folder else adapter.name
        try:
            config = PeftConfig.from_pretrained(str(adapter))
        except Exception as exc:
            raise CommandError(f"{str(adapter / CONFIG_NAME)!r} could not be read: {exc}") from exc
        if not isinstance(config, LoraConfig):
            raise CommandError(
                f"{str(adapter)!r} is a {config.peft_type!s} adapter; only LoRA adapters convert to LoRA formats."
            )
        configs[name] = config
        for key, tensor in load_peft_weights(str(adapter)).items():
            state_dict[f"{name}.{key.removeprefix('base_model.model.')}"] = tensor
    return state_dict, configs


def _detect(state_dict: dict[str, Any], path: Path) -> str:
    matches = [name for name, lora_format in sorted(_formats().items()) if lora_format.detect(state_dict)]
    if not matches:
        keys = sorted(state_dict)[:3]
        raise CommandError(
            f"{str(path)!r} is in no known LoRA format (first keys: {keys}); known: {sorted(_formats())}. "
            "Pass --from FORMAT if the keys are unusual."
        )
    return matches[0]


# ------------------------------------------------------------------------------------------------ writing
def _write_peft_folder(state_dict: dict, configs: dict, output: Path) -> list[Path]:
    """One adapter folder per component (the folder itself when there is one component)."""
    from safetensors.torch import save_file

    from peft import LoraConfig
    from peft.utils.files import atomic_write

    by_component: dict[str, dict[str, Any]] = {}
    for key, tensor in state_dict.items():
        component, rest = key.split(".", 1)
        by_component.setdefault(component, {})[f"base_model.model.{rest}"] = tensor.contiguous()
    written = []
    single = len(by_component) == 1
    for component, tensors in sorted(by_component.items()):
        folder = output if single else output / component
        config = configs[component]
        if not isinstance(config, LoraConfig):
            config = LoraConfig(**config)
        config.save_pretrained(str(folder))
        atomic_write(
            str(folder / SAFETENSORS_WEIGHTS_NAME),
            lambda path, tensors=tensors: save_file(tensors, path, metadata={"format": "pt"}),
        )
        written.append(folder)
    return written


def _write_file(state_dict: dict, output: Path) -> list[Path]:
    from safetensors.torch import save_file

    from peft.utils.files import atomic_write

    if output.suffix != ".safetensors":
        raise CommandError(f"output {str(output)!r}: this format is written as a .safetensors file.")
    tensors = {k: v.contiguous() for k, v in sorted(state_dict.items())}
    atomic_write(str(output), lambda path: save_file(tensors, path, metadata={"format": "pt"}))
    return [output]


# ------------------------------------------------------------------------------------------------ converting
def convert(
    input_path: str | Path,
    output: str | Path,
    to_format: str,
    from_format: str | None = None,
    base: str | None = None,
    component: str = "unet",
    overwrite: bool = False,
) -> list[Path]:
    """Convert the adapter at ``input_path`` into ``to_format`` at ``output`` (see the module docstring).

    Returns:
        The files or folders written.

    Raises:
        CommandError: for a missing input, an existing output, an unknown format or a conversion that does not apply
            (e.g. ``miss`` from a LoRA), or an input the conversion cannot read.
    """
    source, output = Path(input_path), Path(output)
    formats = _formats()
    known = ["peft", "miss", *sorted(formats)]
    if to_format not in known:
        raise CommandError(f"unknown output format {to_format!r}; known: {', '.join(known)}.")
    if from_format is not None and from_format not in known:
        raise CommandError(f"unknown input format {from_format!r}; known: {', '.join(known)}.")
    if not source.exists():
        raise CommandError(f"{str(source)!r} does not exist.")
    if output.exists() and not overwrite:
        raise CommandError(f"output {str(output)!r} exists; choose a new path or pass --overwrite.")

    if to_format == "miss":
        return _bone_to_miss(source, output)

    if source.is_dir():
        from_format = from_format or "peft"
        if from_format != "peft":
            raise CommandError(f"{str(source)!r} is a folder: only the 'peft' format is read from a folder.")
        state_dict, configs = _read_peft_folder(source, component)
    else:
        raw = _read_file(source)
        from_format = from_format or _detect(raw, source)
        if from_format == "peft":
            state_dict, configs = _peft_file(raw, source, component)
        else:
            state_dict, configs = _call(formats[from_format].to_peft, raw, base)
    if from_format == to_format:
        raise CommandError(f"the input is already in the {to_format!r} format.")
    if to_format == "peft":
        return _write_peft_folder(state_dict, configs, output)
    return _write_file(_call(formats[to_format].from_peft, state_dict, configs, base), output)


def _peft_file(raw: dict, source: Path, component: str) -> tuple[dict, dict]:
    """A lone PEFT-format weight file: its scale is unknown (no config), so alpha is taken to equal the rank."""
    folder = source.parent
    if (folder / CONFIG_NAME).is_file():
        return _read_peft_folder(folder, component)
    raise CommandError(
        f"{str(source)!r} holds PEFT-format keys but has no {CONFIG_NAME} beside it, so its scale is unknown; convert "
        "the adapter folder instead."
    )


def _call(function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except (ValueError, KeyError) as exc:
        raise CommandError(str(exc).strip("'\"")) from exc


def _bone_to_miss(source: Path, output: Path) -> list[Path]:
    from peft.tuners.bone.convert import convert_bone_to_miss

    if not source.is_dir():
        raise CommandError(f"{str(source)!r} is a file; Bone -> MiSS converts a Bone adapter folder.")
    try:
        relative = convert_bone_to_miss(source, output)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return [output / r if r != "." else output for r in relative]
