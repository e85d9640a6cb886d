#!/usr/bin/env bash
# Asks pip whether the Ascend stack of install.sh resolves from what PyPI holds, without installing anything:
# `pip install --dry-run --ignore-installed --report` for Python 3.11 on linux aarch64 and x86_64, binary wheels
# only. Three sets per architecture, the way install.sh installs them (one pip call per step):
#   vllm         vLLM v0.18.0's requirements (vllm-v0.18.0-requirements.txt) with torch 2.9.0
#   vllm-ascend  torch 2.9.0 + torch-npu + vllm-ascend
#   vllm-ascend-wheels  the same with the kit's libraries (environment.yml), but vllm-ascend's own Requires-Dist
#                (tests/data/ascend/wheels/) stated one by one without arctic-inference, which PyPI holds only as an
#                sdist (a binary-only resolution cannot take it)
#   all          vllm, vllm-ascend and the kit's libraries (environment.yml) in one resolution
# PyTorch's CPU index is not asked (the x86_64 torch-npu wants torch==2.9.0+cpu, which only that index has); set
# EXTRA_INDEX_URL to ask it too. Usage: tools/ascend/resolve.sh [PIP] [OUT_DIR]   (PIP >= 23 for --report)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pip=${1:-pip}
out=${2:-${TMPDIR:-/tmp}/studykit-ascend-resolve}
mkdir -p "$out"
# shellcheck source=pins.sh
source "$here/pins.sh"
torch_pins=("torch==${TORCH_VERSION%+cpu}" "torchvision==$TORCHVISION_VERSION" "torchaudio==$TORCHAUDIO_VERSION")
ascend_pins=("torch-npu==$TORCH_NPU_VERSION" "vllm-ascend==$VLLM_ASCEND_VERSION")
# the pip section of environment.yml, less its pip options and the kit itself
mapfile -t kit_libs < <(sed -n 's/^ *- \([A-Za-z][A-Za-z0-9_.-]*==[^ ]*\).*/\1/p' "$here/../../environment.yml")
extra=()
[ -n "${EXTRA_INDEX_URL:-}" ] && extra=(--extra-index-url "$EXTRA_INDEX_URL")
status=0
for arch in aarch64 x86_64; do
    plats=()
    for tag in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014; do
        plats+=(--platform "${tag}_$arch")
    done
    metadata=$(ls "$here"/../../tests/data/ascend/wheels/vllm_ascend-"$VLLM_ASCEND_VERSION"-cp311-*"$arch".METADATA.txt)
    sed -n 's/^Requires-Dist: //p' "$metadata" | grep -v -i '^arctic[-_]inference' >"$out/$arch-vllm-ascend-requires.txt"
    for set in vllm vllm-ascend vllm-ascend-wheels all; do
        case $set in
            vllm) reqs=("${torch_pins[@]}" -r "$here/vllm-v0.18.0-requirements.txt") ;;
            vllm-ascend) reqs=("${torch_pins[@]}" "${ascend_pins[@]}") ;;
            vllm-ascend-wheels) reqs=("${torch_pins[@]}" "torch-npu==$TORCH_NPU_VERSION" -r "$out/$arch-vllm-ascend-requires.txt" "${kit_libs[@]}") ;;
            all) reqs=("${torch_pins[@]}" "${ascend_pins[@]}" -r "$here/vllm-v0.18.0-requirements.txt" "${kit_libs[@]}") ;;
        esac
        log="$out/$arch-$set.log"
        "$pip" install --dry-run --ignore-installed --quiet --report "$out/$arch-$set.json" --python-version 3.11 \
            "${plats[@]}" --only-binary=:all: "${extra[@]}" "${reqs[@]}" >"$log" 2>&1
        rc=$?
        if [ $rc -eq 0 ]; then
            echo "$arch $set: resolves ($(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['install']))" "$out/$arch-$set.json") distributions; report $out/$arch-$set.json)"
        else
            status=1
            echo "$arch $set: does not resolve (pip exit $rc):"
            grep -E "^ERROR:" "$log" | grep -v -E "Ignored the following|ResolutionImpossible" | head -8 | sed 's/^/    /'
        fi
    done
done
exit $status
