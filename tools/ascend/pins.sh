# The Ascend stack's versions, said once: install.sh installs them, resolve.sh asks pip about them, and
# tests/test_ascend_env.py holds them against the Requires-Dist of the published wheels
# (tests/data/ascend/wheels/). vllm-ascend 0.18.0's wheel requires torch==2.9.0, torchvision==0.24.0,
# torchaudio==2.9.0 and torch-npu==2.9.0; torch-npu 2.9.0 requires torch==2.9.0 (aarch64) or torch==2.9.0+cpu
# (x86_64); torch 2.9.0+cpu, from PyTorch's CPU index, meets both. torchvision and torchaudio come from that index
# too (install.sh asks only it for the three), so they are CPU builds whatever their local tag.
TORCH_VERSION=2.9.0+cpu
TORCHVISION_VERSION=0.24.0
TORCHAUDIO_VERSION=2.9.0
TORCH_NPU_VERSION=2.9.0
VLLM_TAG=v0.18.0
VLLM_ASCEND_VERSION=0.18.0
TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
