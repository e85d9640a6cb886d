"""Ascend host facts (npu-smi, CANN). Filled in by the Ascend profile work."""


def capture_ascend() -> dict:
    return {}
