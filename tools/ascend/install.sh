#!/usr/bin/env bash
# Installs torch, vLLM, torch-npu, vllm-ascend and the kit into the active environment (conda activate
# studykit-ascend first, CANN's set_env.sh sourced), following vllm-ascend v0.18.0's docs/source/installation.md
# ("Build from source code" for vLLM) and its Dockerfile:
#   1. torch / torchvision / torchaudio CPU builds from PyTorch's CPU index (torch-npu adds the NPU);
#   2. vLLM from its v0.18.0 source with VLLM_TARGET_DEVICE=empty (no CUDA kernels, no torch pin of its own);
#   3. torch-npu and the vllm-ascend wheel from PyPI (the wheel carries vllm-ascend's compiled custom ops);
#      pip then downgrades opencv-python-headless below vLLM's own floor, as in vllm-ascend's image;
#   4. on x86_64, triton is removed (vllm-ascend's Dockerfile does the same: triton-ascend replaces it);
#   5. the kit, editable, from this checkout.
# Environment: STUDYKIT_ASCEND_SRC (where vLLM's source is cloned; default ~/.cache/studykit-ascend),
# PIP (default: python -m pip).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=pins.sh
source "$here/pins.sh"
src=${STUDYKIT_ASCEND_SRC:-$HOME/.cache/studykit-ascend}
read -r -a pip <<<"${PIP:-python -m pip}"

python_tag=$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
case $python_tag in
    3.10|3.11) ;;
    *) echo "install.sh: Python $python_tag is active; vllm-ascend $VLLM_ASCEND_VERSION supports 3.10 and 3.11" \
            "(conda activate studykit-ascend first)" >&2; exit 2 ;;
esac
arch=$(uname -m)
case $arch in
    aarch64|x86_64) ;;
    *) echo "install.sh: machine $arch; vllm-ascend publishes wheels for aarch64 and x86_64 only" >&2; exit 2 ;;
esac

echo "== 1/5 torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION, torchaudio $TORCHAUDIO_VERSION ($TORCH_INDEX_URL)"
# Only the CPU index is asked, so pip cannot pick PyPI's CUDA build of the same version.
"${pip[@]}" install --index-url "$TORCH_INDEX_URL" \
    "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "torchaudio==$TORCHAUDIO_VERSION"

echo "== 2/5 vLLM $VLLM_TAG from source, VLLM_TARGET_DEVICE=empty ($src/vllm)"
mkdir -p "$src"
if [ ! -d "$src/vllm/.git" ]; then
    git clone --depth 1 --branch "$VLLM_TAG" https://github.com/vllm-project/vllm "$src/vllm"
fi
checked_out=$(git -C "$src/vllm" describe --tags --exact-match 2>/dev/null || echo "not a tag")
if [ "$checked_out" != "$VLLM_TAG" ]; then
    echo "install.sh: $src/vllm is at $checked_out, not $VLLM_TAG; remove it or set STUDYKIT_ASCEND_SRC" >&2
    exit 2
fi
VLLM_TARGET_DEVICE=empty "${pip[@]}" install -e "$src/vllm[audio]" --extra-index-url "$TORCH_INDEX_URL"

echo "== 3/5 torch-npu $TORCH_NPU_VERSION, vllm-ascend $VLLM_ASCEND_VERSION"
"${pip[@]}" install --extra-index-url "$TORCH_INDEX_URL" \
    "torch==$TORCH_VERSION" "torch-npu==$TORCH_NPU_VERSION" "vllm-ascend==$VLLM_ASCEND_VERSION"

if [ "$arch" = x86_64 ]; then
    echo "== 4/5 removing triton (x86_64)"
    "${pip[@]}" uninstall -y triton || true
else
    echo "== 4/5 nothing to remove on $arch"
fi

echo "== 5/5 the kit (editable, $repo)"
"${pip[@]}" install -e "$repo"

echo "== installed:"
"${pip[@]}" list 2>/dev/null | grep -iE '^(torch|torch-npu|torch_npu|vllm|vllm-ascend|vllm_ascend|opencv-python-headless|numpy) '
echo "== pip check (vLLM's opencv-python-headless>=4.13.0 is expected to be reported broken, as in vllm-ascend's image):"
"${pip[@]}" check || true
echo "next: python -c 'import torch, torch_npu; print(torch.npu.is_available(), torch.npu.device_count())'"
