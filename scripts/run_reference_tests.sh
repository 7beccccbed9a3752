#!/usr/bin/env bash
# Run test files of the reference peft (0.21.2, from its PyPI sdist, which ships its tests/) against the peft
# installed in this checkout's .venv. Opt-in evidence, not part of scripts/test.sh: the reference's tests stay in a
# temporary folder, never in this repository.
#
#   bash scripts/run_reference_tests.sh                       # the LoRA-feature files (issue 17)
#   bash scripts/run_reference_tests.sh test_bdlora.py ...    # chosen files
#
# Environment:
#   PYTHON=...              interpreter whose `import peft` is tested (default: .venv/bin/python)
#   REFTESTS_DIR=...        reuse an extracted tests/ folder instead of downloading the sdist
#   REFTESTS_STANDINS=1     put tiny models built from configs in a local hub cache under the hub ids the tests load
#                           (offline there is no hub): such results only show what would happen, the tests still
#                           "need hub"
#   PYTEST_ARGS=...         extra pytest arguments (default: -q --tb=line -rfEs)
#
# The folder gets a conftest.py of ours: the hub is offline (a hub access fails at once instead of retrying), and the
# private names of the reference that some files import at module level (`_resolve_adapter_source`, VeLoRA's
# helpers...) become placeholders that raise when used, so the other tests of those files still run; the tests that
# use them fail with "reference internal".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
VERSION=0.21.2
FILES=("$@")
if [ ${#FILES[@]} -eq 0 ]; then
  FILES=(test_initialization.py test_lora_variants.py test_arrow.py test_bdlora.py test_lora_ga.py test_loraplus.py
         test_lorafa.py test_lora_conversion.py test_velora.py test_lora_intruders.py)
fi

WORK="$(mktemp -d -t peft-reftests-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
if [ -n "${REFTESTS_DIR:-}" ]; then
  mkdir -p "$WORK/tests" && cp -r "$REFTESTS_DIR"/. "$WORK/tests/"
else
  "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "peft==$VERSION" -d "$WORK/sdist"
  tar -xzf "$WORK/sdist/peft-$VERSION.tar.gz" -C "$WORK" "peft-$VERSION/tests"
  mv "$WORK/peft-$VERSION/tests" "$WORK/tests"
fi
touch "$WORK/tests/__init__.py"  # the files import their helpers relatively (`from .testing_utils import ...`)
cat > "$WORK/tests/conftest.py" <<'EOF'
import importlib
import os

os.environ["HF_HUB_OFFLINE"] = "1"

# reference internals imported at module level by the files: module -> names
_PRIVATE_IMPORTS = {
    "peft.tuners.lora.arrow": ["_resolve_adapter_source"],
    "peft.tuners.lora.velora": [
        "VeloraFunction", "_compress_activations", "_normalize_projection", "_reconstruct_activations",
        "_reshape_to_grouped_subtokens",
    ],
    "peft.optimizers.riemannian": ["_collect_lora_pairs", "_RiemannianPreconditioner"],
    # an import the reference's module makes (transformers' is_bf16_available) that a test monkeypatches
    "peft.optimizers.lorafa": ["is_bf16_available"],
}


class _ReferenceInternal:
    def __init__(self, where):
        self._where = where

    def _refuse(self, *args, **kwargs):
        raise NotImplementedError(f"reference internal {self._where}: not part of this peft")

    __call__ = _refuse

    def __getattr__(self, name):
        self._refuse()


class _AlwaysSeen(dict):
    """Makes testing_utils.hub_online_once treat every model id as seen: offline from the first access."""

    def __contains__(self, key):
        return True

    def __getitem__(self, key):
        return 0


def pytest_configure(config):
    config.addinivalue_line("markers", "regression: mark regression tests")
    for module_name, names in _PRIVATE_IMPORTS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in names:
            if not hasattr(module, name):
                setattr(module, name, _ReferenceInternal(f"{module_name}.{name}"))
    from tests import testing_utils

    testing_utils._HUB_MODEL_ACCESSES = _AlwaysSeen()
EOF

if [ "${REFTESTS_STANDINS:-0}" = 1 ]; then
  export HF_HUB_CACHE="$WORK/hub"
  "$PYTHON" - "$HF_HUB_CACHE" <<'EOF'
import os, sys
import torch
import transformers as tf

cache, revision = sys.argv[1], "0" * 40


def put(repo_id, model):
    root = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    os.makedirs(os.path.join(root, "refs"), exist_ok=True)
    with open(os.path.join(root, "refs", "main"), "w") as f:
        f.write(revision)
    model.save_pretrained(os.path.join(root, "snapshots", revision))


torch.manual_seed(0)
put("peft-internal-testing/tiny-random-OPTForCausalLM", tf.OPTForCausalLM(tf.OPTConfig(
    vocab_size=50272, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, ffn_dim=4, word_embed_proj_dim=16,
    max_position_embeddings=100)))
put("peft-internal-testing/tiny-random-gpt2", tf.GPT2LMHeadModel(tf.GPT2Config(
    vocab_size=1000, n_embd=32, n_layer=2, n_head=4, n_positions=128)))
put("trl-internal-testing/tiny-random-LlamaForCausalLM", tf.LlamaForCausalLM(tf.LlamaConfig(
    vocab_size=32000, hidden_size=8, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2)))
put("peft-internal-testing/tiny-random-ResNetForImageClassification", tf.ResNetForImageClassification(
    tf.ResNetConfig(num_channels=3, embedding_size=10, hidden_sizes=[10, 20, 30, 40], depths=[1, 1, 2, 1],
                    num_labels=3)))
EOF
fi

cd "$WORK"
read -r -a ARGS <<< "${PYTEST_ARGS:--q --tb=line -rfEs}"
status=0
for file in "${FILES[@]}"; do
  echo "== $file"
  "$PYTHON" -m pytest -p no:cacheprovider "${ARGS[@]}" "tests/$file" || status=1
done
exit $status
