#!/usr/bin/env bash
# Train the model card's recipes side by side on a lent GPU machine, then keep the two best models.
#
#   bash scripts/train_recipes_on_device.sh PACKED.tar.xz WHEELS_DIR OUT_DIR BUDGET_S
#
# The machine has PyTorch but no MONAI stack and no network: WHEELS_DIR holds the wheels of what is missing
# (monai, pytorch-ignite, nibabel, fire, termcolor, pydicom, pynrrd); libraries that training imports but never
# calls (SimpleITK, the JPEG plugins, jsonschema) get import-only stand-ins in /tmp/shim that raise when used.
# PYTHON (default python3) and DEVICE (default cuda) can be overridden for a dry run on a CPU machine. PACKED.tar.xz is a folder written by
# `python pipelines/pack_dataset.py DIR --also-fully-contoured`. Every recipe runs the bundle's own training command
# (benchmarks/recipes.py) for BUDGET_S seconds, all at once. OUT_DIR receives summary.{json,md}, a tarball of every
# run's metrics.csv / train.log / run_config.json, and the two best runs' model_best.pt (split in 15 MB parts:
# `cat model_best.pt.part-* > model_best.pt` joins them).
set -uo pipefail
packed="$1"; wheels="$2"; out="$3"; budget="$4"
py="${PYTHON:-python3}"; device="${DEVICE:-cuda}"
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$wheels"/*.whl || exit 3
for module in SimpleITK pylibjpeg openjpeg jpeg_ls jsonschema; do
  mkdir -p "/tmp/shim/$module"
  cat > "/tmp/shim/$module/__init__.py" <<PYSHIM
class _Missing:
    def __init__(self, name):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._name}: $module is not installed on this machine")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Missing(f"{self._name}.{name}")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Missing(f"$module.{name}")
PYSHIM
done
export PYTHONPATH="/tmp/site:/tmp/shim:$PWD" MEDSEG_CACHE=/tmp/medseg-cache MEDSEG_DATA=/tmp/no-data
mkdir -p /tmp/data && tar xJf "$packed" -C /tmp/data || exit 4
data=/tmp/data/packed
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || lscpu | grep "Model name"
"$py" -c "import torch, monai, ignite, nibabel; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available())" || exit 5
# smoke: one tiny epoch with the random transforms on the GPU; fall back to CPU workers when that fails
on_device="--augment_on_device"
if ! timeout 120 "$py" -m benchmarks.recipes "$data" --budget_s 1 --out /tmp/smoke --device "$device" --augment_on_device \
     --recipes medseg_partial_3d --set max_cases=2 --set max_epochs=1 --set val_interval=1 > /tmp/smoke.log 2>&1; then
  echo "GPU augmentation smoke failed; training with CPU workers"; tail -20 /tmp/smoke/*.log; on_device=""
fi
timeout $((budget + 150)) "$py" -m benchmarks.recipes "$data" --budget_s "$budget" --out /tmp/recipes --device "$device" \
  $on_device --set num_workers=4 ${EXTRA:-}
echo "recipes exit $?"
mkdir -p "$out"
cp /tmp/recipes/summary.json /tmp/recipes/summary.md "$out"/ 2>/dev/null
tar czf "$out/runs.tar.gz" -C /tmp/recipes --exclude='*.pt' --exclude='tensorboard' . 2>/dev/null
"$py" - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1]); runs = pathlib.Path("/tmp/recipes")
table = json.loads((runs / "summary.json").read_text())["recipes"]
ranked = sorted((v["best_val_mean_dice"] or 0, k) for k, v in table.items())[::-1][:2]
for _, name in ranked:
    model = runs / name / "checkpoints" / "model_best.pt"
    if not model.is_file():
        continue
    data = model.read_bytes()
    for i in range(0, len(data), 15_000_000):
        (out / f"{name}.model_best.pt.part-{i // 15_000_000}").write_bytes(data[i : i + 15_000_000])
    print("kept", name, len(data))
PY
ls -la "$out"
