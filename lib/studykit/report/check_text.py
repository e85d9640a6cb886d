"""What a reader sees of a check, in zh and en, keyed by its id (`<stage>.<what>`, studykit.checks).

A stage records a check with an English `name` and `detail`; the report does not show those words in the zh
report. Each id here has a zh and an en name, and detail templates: a regex that fully matches a detail of a fixed
shape (as the stage writes it) and the zh text built from its named groups. The en report shows the recorded
detail. A detail no template matches is shown in zh after a lead-in (原文:), so nothing is lost and nothing is
guessed. An id missing here is shown with a visible marker in both languages; tests/test_report.py lists every id
the stages can produce and fails on one missing here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from studykit.schema.base import Check


@dataclass(frozen=True)
class CheckText:
    zh: str
    en: str
    details: tuple[tuple[str, str], ...] = ()  # (regex over the recorded detail, zh template of its groups)


# Words a detail template captures that are themselves English (a value the stage writes as a word).
VALUE_WORDS = {"none": "无", "not measured": "未测得", "completed": "已完成", "did not complete": "未完成",
               "failed": "失败", "did not start": "未能启动"}

# Subjects the generic helpers write as words (the others are run, point, command or task names).
SUBJECT_WORDS = {"vLLM JSON": "vLLM JSON 结果", "vLLM printed": "vLLM 打印输出", "published table": "已发布的表格"}

# Reasons several checks share (the real-weight server did not come up, so nothing that runs on it ran).
COMMON = (
    (r"real_gate is false in the study \(the chat and the model list run on the real-weight server\)",
     "测评配置中 real_gate 为 false(对话与模型列表在真实权重服务上运行)"),
    (r"the real-weight gate did not pass \(deploy\.real_gate says why\)",
     "真实权重启动验证未通过(原因见 deploy.real_gate)"),
    (r"the real-weight gate passed but the result records no smoke chat",
     "真实权重启动验证已通过,但结果中没有功能验证对话的记录"),
)

_TOKENS = ((r"(?P<n>\d+) prompts x (?P<len>\d+) tokens = (?P<want>\d+); result says (?P<got>\S+)",
            "{n} 条 × {len} token = {want},结果为 {got}"),
           (r"vLLM printed no 'Total num \.\.\. tokens' line", "vLLM 未打印 'Total num ... tokens' 行"))
_COMMAND = ((r"all flags as requested", "全部参数与配置一致"), (r"differs: (?P<what>.*)", "不一致:{what}"))
_RATE = ((r"(?P<rps>\S+) req/s x (?P<tpr>\S+) tok/req = (?P<implied>\S+) tok/s; result says (?P<got>\S+) "
          r"\((?P<per>\S+) tok/req\)", "{rps} req/s × 每请求 {tpr} token = {implied} tokens/s,结果为 {got}"
                                      "(相当于每请求 {per} token)"),
         (r"requests/s is 0", "请求吞吐为 0"))
_PARSE_MEAN = ((r"(?P<n>\d+) requests: (?P<mine>\S+) ms recomputed; vLLM says (?P<theirs>\S+) ms",
                "{n} 个请求:重新计算为 {mine} ms,vLLM 给出 {theirs} ms"),
               (r"no per-request .+ values or no mean in vLLM's JSON", "vLLM 的 JSON 中没有逐请求数值或平均值"),
               (r"no successful request", "没有成功的请求"))
_GATE = ((r"(?P<label>\S+) ready in (?P<s>[\d.]+) s", "{label} 就绪,耗时 {s} s"),
         (r"(?P<label>\S+) ready in a time not measured", "{label} 就绪(耗时未测得)"),
         (r"(?P<label>\S+) (?P<what>failed|did not start): (?P<err>.*)", "{label} {what}:{err}"),
         (r"(?P<key>\w+) is false in the study", "测评配置中 {key} 为 false"),
         (r"(?P<key>\w+) was asked for but the result records no gate", "测评配置要求 {key},但结果中没有其记录"))
_SCORE = ((r"per-item mean (?P<mine>\S+), lm-eval (?P<theirs>\S+)", "逐题得分均值 {mine},lm-eval 给出 {theirs}"),
          (r"lm-eval reported no aggregate for this metric \(a group, or a metric it does not aggregate\)",
           "lm-eval 未给出该指标的汇总值(任务组,或它不汇总的指标)"),
          (r"some items are unpaired, so the paired score covers fewer items than lm-eval's",
           "部分题目未配对,配对得分覆盖的题目少于 lm-eval 的"))


# Why a window has no energy (studykit.energy), and the energy check of every stage that measures one
# (studykit.checks.energy_per_token).
ENERGY_NOT_RUN = (
    (r"this host exposes no RAPL power: (?P<p>\S+) does not exist", "本机未提供 RAPL 功率:{p} 不存在"),
    (r"this host exposes no RAPL power: (?P<p>\S+) has no intel-rapl domain",
     "本机未提供 RAPL 功率:{p} 下没有 intel-rapl 域"),
    (r"RAPL (?P<d>\S+)/energy_uj is not readable \((?P<e>.*)\); it is root-only on kernels since 5\.10 "
     r"\(CVE-2020-8694\)", "RAPL {d}/energy_uj 不可读({e});自 5.10 内核起仅 root 可读(CVE-2020-8694)"),
    (r"fewer than two power samples of any chip inside the window \[(?P<a>\S+), (?P<b>\S+)\] s "
     r"\((?P<n>\d+) samples in all\): no energy", "窗口 [{a}, {b}] s 内任一芯片的功率采样都少于两个(共 {n} 个采样):无能耗"),
    (r"fewer than two RAPL counter reads of any domain inside the window \[(?P<a>\S+), (?P<b>\S+)\] s "
     r"\((?P<n>\d+) samples in all\): no energy",
     "窗口 [{a}, {b}] s 内任一 RAPL 域的计数器读数都少于两个(共 {n} 个采样):无能耗"),
    (r"no npu<N>_<chip>_power_w in the samples: .*", "采样中没有 npu<N>_<chip>_power_w(npu-smi 未报告功率)"),
    (r"no npu<N>_<chip>_power_w nor rapl_<domain>_uj in the samples: .*",
     "采样中既没有 npu<N>_<chip>_power_w 也没有 rapl_<domain>_uj(npu-smi 未报告功率,或本机未提供 RAPL 计数器)"),
    (r"the RAPL counter went down \((?P<a>\d+) -> (?P<b>\d+)\) and max_energy_range_uj is (?P<m>\S+): cannot unwrap",
     "RAPL 计数器下降({a} -> {b})而 max_energy_range_uj 为 {m}:无法还原回绕"),
    (r"the measured window is not known \(window_s missing: its start or end was not found\)",
     "测量窗口未知(缺少 window_s:未找到其起点或终点)"),
    (r"not measured: the runner measures it before any engine starts, and this stage ran without it "
     r"\(results/idle_power\.json does not exist\)",
     "未测量:空闲功率由 runner 在任何引擎启动前测量,而本阶段未经 runner 运行(results/idle_power.json 不存在)"),
    (r"the result records no energy for this window", "结果中没有该窗口的能耗记录"),
    (r"not measured", "未测量"),
)
_ENERGY_CHECK = CheckText(
    "该窗口的单 token 能耗(能耗 > 0、token 数与本阶段一致、采样覆盖充分)",
    "energy per output token of the window (joules > 0, the stage's token count, enough of the window sampled)",
    ((r"(?P<j>\S+) J over (?P<n>\S+) tokens = (?P<jpt>\S+) J/token, (?P<cov>\S+) % of the window sampled "
      r"\((?P<src>.*)\); the stage counted (?P<want>\S+) tokens, at least (?P<min>\d+) % sampled wanted",
      "{j} J / {n} token = {jpt} J/token,窗口采样覆盖 {cov} %({src});本阶段计数 {want} token,采样覆盖至少需 {min} %"),
     *ENERGY_NOT_RUN))


def _per_stage(stages: tuple[str, ...], what: str, text: CheckText) -> dict[str, CheckText]:
    """A generic helper's check (studykit.checks) under the id of each stage that runs it."""
    return {f"{stage}.{what}": text for stage in stages}


CHECKS: dict[str, CheckText] = {
    # studykit.checks, the generic helpers
    **_per_stage(("throughput", "serve"), "prompt_tokens_match_shape", CheckText(
        "prompt token 总数 = 请求数 × 输入长度", "prompt tokens = num_prompts x input_len", _TOKENS)),
    **_per_stage(("throughput", "serve"), "output_tokens_match_shape", CheckText(
        "输出 token 总数 = 请求数 × 输出长度", "output tokens = num_prompts x output_len", _TOKENS)),
    "throughput.total_tokens_match_shape": CheckText(
        "token 总数 = 请求数 × (输入长度 + 输出长度)", "total tokens = num_prompts x (input_len + output_len)",
        _TOKENS),
    "throughput.total_rate_agreement": CheckText(
        "请求吞吐 × 每请求 token 数 = token 吞吐", "requests/s x tokens per request = total tokens/s", _RATE),
    "throughput.output_rate_agreement": CheckText(
        "请求吞吐 × 每请求输出 token 数 = 输出 token 吞吐", "requests/s x output tokens per request = output tokens/s",
        _RATE),
    "latency.parse_percentiles": CheckText(
        "百分位时延 = 逐次迭代时延的百分位数(解析核对)", "percentiles = percentiles of the per-iteration latencies",
        ((r"(?P<n>\d+) latencies; all percentiles agree", "{n} 次时延,全部百分位数一致"),
         (r"(?P<n>\d+) latencies; differ: (?P<what>.*)", "{n} 次时延,不一致:{what}"),
         (r"no per-iteration latencies or percentiles in vLLM's JSON", "vLLM 的 JSON 中没有逐次迭代时延或百分位数"))),
    "serve.parse_mean_ttft": CheckText(
        "平均首 token 时延 (TTFT) = 逐请求值的平均(解析核对)", "mean TTFT = mean of the per-request values",
        _PARSE_MEAN),
    "serve.parse_mean_end_to_end_latency": CheckText(
        "平均端到端时延 (E2EL) = 逐请求值的平均(解析核对)", "mean end-to-end latency = mean of the per-request values",
        _PARSE_MEAN),
    "serve.completed_all": CheckText(
        "请求全部完成且无失败", "completed = num_prompts and failed = 0",
        ((r"completed (?P<c>\d+) of (?P<n>\d+), failed (?P<f>\S+)", "完成 {c}/{n},失败 {f}"),)),
    **_per_stage(("latency", "throughput", "serve"), "command_matches_params", CheckText(
        "命令参数与配置一致", "command matches params", _COMMAND)),
    **_per_stage(("latency", "throughput", "serve", "profile"), "energy_per_token", _ENERGY_CHECK),
    # deploy
    "deploy.dummy_gate": CheckText("启动验证(dummy 权重)就绪", "dummy-weight gate gets to ready", _GATE),
    "deploy.real_gate": CheckText("启动验证(真实权重)就绪并响应首批请求",
                                  "real-weight gate gets to ready and answers its first requests", _GATE),
    "deploy.gate_load_format": CheckText(
        "启动命令加载的权重与验证项一致(--load-format)", "the gate's command loads the weights it claims",
        ((r"the command's --load-format is (?P<f>\S+)", "命令的 --load-format 为 {f}"),)),
    "deploy.smoke_request_matches_params": CheckText(
        "功能验证请求与配置一致(smoke_prompt、max_completion_tokens、服务模型名)",
        "smoke request = smoke_prompt, max_completion_tokens, served name",
        ((r"as requested", "与配置一致"), (r"differs: (?P<what>.*)", "不一致:{what}"))),
    "deploy.smoke_chat": CheckText(
        "功能验证对话返回文本", "smoke chat replies with text",
        ((r"reply (?P<reply>.*), finish_reason (?P<finish>\S+)", "回复 {reply},finish_reason 为 {finish}"),
         (r"the reply is empty", "回复为空"))),
    "deploy.smoke_chat_within_max_tokens": CheckText(
        "功能验证对话的输出 token 数 ≤ max_completion_tokens", "smoke chat completion tokens <= max_completion_tokens",
        ((r"usage\.completion_tokens (?P<t>\d+), max_completion_tokens (?P<m>\d+)",
          "usage.completion_tokens 为 {t},max_completion_tokens 为 {m}"),
         (r"the reply carries no usage\.completion_tokens", "回复中没有 usage.completion_tokens"))),
    "deploy.models_lists_served_name": CheckText(
        "/v1/models 列出服务模型名", "/v1/models lists the served model name",
        ((r"/v1/models lists (?P<ids>.*)", "/v1/models 列出 {ids}"),
         (r"the result records no served model name", "结果中没有记录服务模型名"))),
    # latency
    "latency.iterations_measured": CheckText(
        "测得的迭代次数 = num_iters", "iterations measured = num_iters",
        ((r"(?P<n>\d+) latencies for num_iters (?P<want>\d+)", "num_iters 为 {want},测得 {n} 次时延"),)),
    "latency.decode_positive": CheckText(
        "latency(N) > latency(1),即 Decode 单 token 时延 > 0", "latency(N) > latency(1), so decode time per token > 0",
        ((r"\(latency\(N\) - latency\(1\)\) / \(N - 1\) = (?P<d>\S+) ms", "(latency(N) − latency(1)) / (N − 1) = {d} ms"),
         (r"the output_len 1 run did not complete", "output_len 为 1 的运行未完成"))),
    # throughput
    "throughput.output_rate_matches_printed": CheckText(
        "推导的输出 token 吞吐 = vLLM 打印的输出 token 吞吐", "derived output tokens/s = vLLM's printed output tokens/s",
        ((r"num_requests x output_len / elapsed_time = (?P<d>\S+); vLLM printed (?P<p>\S+)",
          "num_requests × output_len / elapsed_time = {d},vLLM 打印 {p}"),
         (r"vLLM printed no 'Throughput: \.\.\. output tokens/s' line",
          "vLLM 未打印 'Throughput: ... output tokens/s' 行"))),
    "throughput.num_requests_match": CheckText(
        "请求数 = num_prompts", "num_requests = num_prompts",
        ((r"(?P<n>\d+) requests for num_prompts (?P<want>\d+)", "num_prompts 为 {want},完成 {n} 个请求"),)),
    # serve
    "serve.point_planned": CheckText(
        "测试点属于配置的扫描计划", "the point is one the params ask for",
        ((r"run (?P<run>\S+): rate (?P<rate>\S+), max_concurrency (?P<conc>\S+); the params plan (?P<plan>.*)",
          "运行 {run}:请求速率 {rate},max_concurrency {conc};配置计划为 {plan}"),)),
    # accuracy
    "accuracy.min_top1_agreement": CheckText(
        "Teacher Forcing Top-1 一致率 ≥ 阈值", "teacher-forced top-1 agreement >= threshold",
        ((r"over (?P<n>\d+) positions", "共 {n} 个位置"),
         (r"over (?P<n>\d+) positions; threshold (?P<th>\S+) \((?P<how>.*)\)", "共 {n} 个位置;阈值 {th}({how})"),
         (r"no teacher-forced position was compared", "没有比对任何 Teacher Forcing 位置"))),
    "accuracy.max_mean_kl": CheckText(
        "Teacher Forcing 平均 KL 散度 ≤ 阈值", "teacher-forced mean KL <= threshold",
        ((r"over (?P<n>\d+) positions; threshold (?P<th>\S+) \((?P<how>.*)\)", "共 {n} 个位置;阈值 {th}({how})"),
         (r"KL\(reference \|\| vLLM\) over vLLM's top-k plus a remaining-mass bucket",
          "KL(参考 || vLLM),在 vLLM 的 top-k 与其余概率合并的一项上计算"),
         (r"no teacher-forced position was compared", "没有比对任何 Teacher Forcing 位置"))),
    "accuracy.determinism": CheckText(
        "两次贪心解码输出完全一致", "greedy output identical in two passes",
        ((r"mismatched prompts: (?P<m>.*)", "输出不一致的 prompt:{m}"),
         (r"the two free-running passes were not recorded", "两次自由生成的结果未记录"))),
    "accuracy.real_divergences": CheckText(
        "真实分歧数 ≤ 允许值(每个位置在参考模型上下文中判定,阈值来自 bf16 对 fp32 校准)",
        "real divergences <= allowed (every position judged on the reference's context, thresholds calibrated)",
        ((r"(?P<n>\d+) positions judged on the reference's context in (?P<r>\d+) requests: (?P<a>\d+) agree, "
          r"(?P<t>\d+) near ties \((?P<how>.*)\), (?P<k>\d+) real: (?P<real>.*); raw agreement of the plain free run "
          r"(?P<eq>\d+)/(?P<tot>\d+) \(not gating\)",
          "{n} 个位置在参考模型上下文中判定,共 {r} 次请求:{a} 个一致,{t} 个近似平局({how}),{k} 个真实分歧:{real};"
          "普通自由生成的原始一致 {eq}/{tot}(不计入门槛)"),)),
    # tasks
    "tasks.paired_delta_within_tolerance": CheckText(
        "配对差值的 95% 置信区间落在 ±max_abs_delta 之内(等效性判定)",
        "the paired difference's 95 % interval lies within ±max_abs_delta (equivalence)",
        ((r"(?P<lead>(?:inconclusive[^:]*: )?)vLLM (?P<c>\S+) - reference (?P<r>\S+) = (?P<d>\S+) on (?P<n>\d+) items, "
          r"95 % interval (?P<lo>\S+) \.\. (?P<hi>\S+) \((?P<how>.*?)\) vs \+-(?P<tol>\S+) \((?P<src>.*?)\); "
          r"(?P<ro>\d+) only the reference right, (?P<co>\d+) only vLLM; McNemar exact p = (?P<p>[^;]+)(?P<rest>.*)",
          "{lead}vLLM {c} − 参考 {r} = {d}({n} 道题),95% 置信区间 {lo} .. {hi}({how}),容差 ±{tol}({src});"
          "仅参考答对 {ro} 道,仅 vLLM 答对 {co} 道;McNemar 精确检验 p = {p}{rest}"),)),
    "tasks.reference_log_parse": CheckText(
        "参考端逐题日志解析核对(均值 = lm-eval 汇总得分)", "reference per-item log parse check (mean = lm-eval's score)",
        ((r"mean over the (?P<n>\d+) logged items (?P<a>\S+), lm-eval (?P<b>\S+) \(ties and repeats included, as lm-eval "
          r"scores them\)", "{n} 道已记录题目的均值 {a},lm-eval 为 {b}(含平局与重复题目,与 lm-eval 计分一致)"),)),
    "tasks.vllm_log_parse": CheckText(
        "vLLM 端逐题日志解析核对(均值 = lm-eval 汇总得分)", "vLLM per-item log parse check (mean = lm-eval's score)",
        ((r"mean over the (?P<n>\d+) logged items (?P<a>\S+), lm-eval (?P<b>\S+) \(ties and repeats included, as lm-eval "
          r"scores them\)", "{n} 道已记录题目的均值 {a},lm-eval 为 {b}(含平局与重复题目,与 lm-eval 计分一致)"),)),
    "tasks.task_compared": CheckText(
        "任务已在两端完成比对", "compared on both backends",
        ((r"paired", "已配对"),
         (r"the result has no comparison of (?P<task>.*); it has (?P<has>.*)", "结果中没有 {task} 的比对;已有 {has}"))),
    "tasks.items_paired": CheckText(
        "两端评测的题目相同", "both backends scored the same items",
        ((r"(?P<n>\d+) items paired", "{n} 道题已配对"),
         (r"(?P<n>\d+) items paired; (?P<u>\d+) not: (?P<which>.*)", "{n} 道题已配对;{u} 道未配对:{which}"))),
    "tasks.baseline_within_rtol": CheckText(
        "vLLM 得分与记录的基线之差在 rtol 之内", "vLLM score within rtol of the recorded baseline",
        ((r"\|(?P<c>\S+) - (?P<b>\S+)\| = (?P<d>\S+) vs rtol (?P<rtol>\S+) x baseline = (?P<lim>\S+) "
          r"\(vllm-ascend's convention\)", "|{c} − {b}| = {d},限值 rtol {rtol} × 基线 = {lim}(vllm-ascend 的约定)"),
         (r"no recorded baseline for (?P<task>.*) \(tasks\.baselines\)", "tasks.baselines 中没有 {task} 的基线"))),
    # functional
    "functional.engine_args_match_command": CheckText(
        "vLLM 日志中的非默认参数 = 启动命令的参数", "vLLM's logged non-default args = the command's flags",
        ((r"(?:differ \(command, vLLM\): (?P<d>.*?); )?(?:vLLM lists args the command did not set: (?P<e>.*?); )?"
          r"(?P<n>\d+) flags as logged(?:; taken at vLLM's default: (?P<t>.*))?",
          "不一致(命令, vLLM):{d};vLLM 列出但命令未设置:{e};{n} 个参数与日志一致;按 vLLM 默认值:{t}"),)),
    "functional.chunked_prefill": CheckText(
        "长 prompt 分多个引擎步完成预填充(分块预填充 (Chunked Prefill),依据 vLLM 自身计数)",
        "long prompt prefilled in several engine steps (vLLM's counters)",
        ((r"(?P<p>\d+) prompt tokens, budget (?P<b>\d+) per step: (?P<s>\d+) prefill steps counted \(at least "
          r"(?P<need>\d+) if chunked\), (?P<t>\d+) tokens computed by vLLM's count \((?P<w>\d+) expected\); vLLM "
          r"counts the whole prompt in the step that emits the first token, so its counters cannot show the chunks",
          "prompt {p} token,单步预算 {b}:计得 {s} 个预填充步(若分块至少 {need} 个),vLLM 计得 {t} 个 token(应为 {w});"
          "vLLM 把整个 prompt 计入产生第一个 token 的那一步,因此其计数无法显示分块"),
         (r"(?P<p>\d+) prompt tokens, budget (?P<b>\d+) per step: (?P<s>\d+) prefill steps counted \(at least "
          r"(?P<need>\d+) if chunked\), (?P<t>\d+) tokens computed by vLLM's count \((?P<w>\d+) expected\)"
          r"(?P<rest>(?:; did not complete)?)",
          "prompt {p} token,单步预算 {b}:计得 {s} 个预填充步(若分块至少 {need} 个),vLLM 计得 {t} 个 token(应为 {w})"
          "{rest}"),
         (r"(?P<p>\d+) prompt tokens, budget (?P<b>\d+) per step; (?P<done>completed|did not complete)",
          "prompt {p} token,分块预填充 (Chunked Prefill) 单步 token 预算 {b};{done}"),
         (r"the long prompt was not sent", "长 prompt 未发送"))),
    "functional.prefix_caching": CheckText(
        "前缀缓存 (Prefix Caching) 命中 token 数 = 共享整块数 × 后续请求数",
        "prefix cache hits = whole shared blocks x later requests",
        ((r"(?P<r>\d+) requests x (?P<b>\d+) blocks x (?P<bs>\d+) tokens", "{r} 个请求 × {b} 块 × {bs} token"),
         (r"prefix caching is disabled in the server's cache config", "服务的缓存配置中前缀缓存已关闭"),
         (r"the shared prefix \((?P<p>\d+) tokens\) is shorter than one KV block \((?P<b>\d+) tokens\); vLLM caches "
          r"whole blocks only", "共享前缀({p} token)短于一个 KV 块({b} token);vLLM 只缓存整块"),
         (r"no hits although the prefix spans whole blocks", "前缀覆盖整块,但没有命中"),
         (r"the prefix-cache requests were not sent", "前缀缓存请求未发送"),
         (r"prefix caching is off in the server's cache config \(enabled=(?P<e>.*)\)",
          "服务的缓存配置中前缀缓存未开启(enabled={e})"),
         (r"the server's cache config reports no block size", "服务的缓存配置未给出 block size"))),
    "functional.graph_vs_eager": CheckText(
        "图模式 (ACL Graph) 与 Eager 模式的贪心输出一致", "graph and eager give the same greedy tokens",
        ((r"(?P<n>\d+) greedy tokens", "{n} 个贪心 token"),
         (r"not measured", "未测量"),
         (r"graph compilation on CPU takes minutes; set functional\.graph_vs_eager: true to compare",
          "CPU 上图编译需要数分钟;设置 functional.graph_vs_eager: true 才进行比对"))),
    # profile
    "profile.profiler_enabled": CheckText(
        "服务以 vLLM 的 torch profiler 运行,trace 写入 raw/profile/",
        "the server ran vLLM's torch profiler writing under raw/profile/",
        ((r"--profiler-config profiler (?P<p>\S+), torch_profiler_dir (?P<d>.*)",
          "--profiler-config 的 profiler 为 {p},torch_profiler_dir 为 {d}"),
         (r"the command has no --profiler-config JSON", "命令中没有 --profiler-config JSON"),
         (r"the result records no server command", "结果中没有记录服务命令"))),
    "profile.tokens_as_requested": CheckText(
        "每个请求都生成了 output_len 个 token", "every request produced output_len tokens",
        ((r"(?P<c>\d+) requests x (?P<n>\d+) tokens in (?P<w>\d+) windows", "{c} 个请求 × {n} token,共 {w} 个窗口"),
         (r"(?P<c>\d+) requests x (?P<n>\d+) tokens asked; got (?P<got>.*)", "要求 {c} 个请求 × {n} token;实际 {got}"))),
    "profile.trace_parsed": CheckText(
        "该窗口的 trace 已找到并解析为引擎步", "the window's trace was found and parsed into steps",
        ((r"(?P<f>\S+): (?P<n>\d+) steps", "{f}:{n} 个引擎步"),
         (r"the profiler wrote nothing for this window within (?P<s>\d+) s", "profiler 在 {s} s 内没有为该窗口写出任何输出"),
         (r"no split recorded", "没有记录拆分结果"))),
    "profile.enough_decode_steps": CheckText(
        "trace 中的 Decode 步数 ≥ min_decode_steps", "decode steps in the trace >= min_decode_steps",
        ((r"(?P<n>\d+) decode steps, at least (?P<m>\d+) wanted", "{n} 个 Decode 步,至少需要 {m} 个"),
         (r"the profiler output does not say which steps decode \(all (?P<n>\d+) steps \(the profiler output does "
          r"not say which steps decode\)\): the split is over them all",
          "profiler 输出没有标明哪些步是 Decode:拆分是全部 {n} 个步的平均"),
         (r"no split \(profile\.trace_parsed says why\)", "没有拆分结果(原因见 profile.trace_parsed)"))),
    "profile.split_adds_up": CheckText(
        "模型前向内 + 前向外 = 单步周期", "in the model + outside it = the step's period",
        ((r"(?P<n>\d+) steps and the means add up", "{n} 个引擎步及其均值均相加一致"),
         (r"steps (?P<s>\[.*\]) do not add up(?P<m>(?:; nor do the means)?)", "引擎步 {s} 相加不一致{m}"),
         (r"no split \(profile\.trace_parsed says why\)", "没有拆分结果(原因见 profile.trace_parsed)"))),
    "profile.overhead_measured": CheckText(
        "profiler 开销 = 开启窗口平均 / 未开启窗口平均的单 token 时延 − 1",
        "profiler overhead = mean profiled / mean unprofiled ms per token - 1",
        ((r"unprofiled (?P<a>\S+) ms, profiled (?P<b>\S+) ms per token \((?P<na>\d+) \+ (?P<nb>\d+) windows\); "
          r"overhead (?P<o>.+)", "未开启 profiler {a} ms,开启 {b} ms(单 token,{na} + {nb} 个窗口);开销 {o}"),
         (r"a window did not complete", "有窗口未完成"))),
    "profile.overhead_small": CheckText(
        "|profiler 开销| ≤ max_overhead(超出部分不大于主机自身的波动)",
        "|profiler overhead| <= max_overhead, beyond what the host moves by itself",
        ((r"overhead (?P<o>\S+ %), at most ±(?P<m>\S+ %) beyond the host's own spread (?P<s>\S+ %) \(the larger of "
          r"the two kinds of window\)", "开销 {o},上限 ±{m} 加上主机自身的波动 {s}(两类窗口中较大者)"),
         (r"no overhead measured", "未测得开销"))),
    # report
    "report.files_written": CheckText(
        "请求的报告文件均已写出且非空", "every report file requested is written",
        ((r"missing or empty: (?P<m>.*)", "缺失或为空:{m}"), (r"(?P<n>\d+) files", "{n} 个文件"))),
    "report.reference_read": CheckText(
        "对比参考已读取", "the reference was read",
        ((r"no report\.reference in the study", "测评配置中没有 report.reference"),
         (r"(?P<ref>[^\s]+\.(?:ya?ml|json))", "{ref}"))),
}

_COMPILED: dict[str, list[tuple[re.Pattern, str]]] = {}


def _templates(cid: str) -> list[tuple[re.Pattern, str]]:
    if cid not in _COMPILED:
        text = CHECKS.get(cid)
        _COMPILED[cid] = [(re.compile(rx, re.S), zh) for rx, zh in (text.details if text else ()) + COMMON]
    return _COMPILED[cid]


def zh_detail(cid: str, detail: str) -> str | None:
    """The zh text of a recorded detail when a template of the id fits it whole; None when none does."""
    for rx, zh in _templates(cid):
        m = rx.fullmatch(detail)
        if m:
            return zh.format(**{k: VALUE_WORDS.get(v, v) for k, v in m.groupdict().items()})
    return None


def check_name(c: Check, lang: str) -> str:
    text = CHECKS.get(c.id)
    if text is not None:
        return text.zh if lang == "zh" else text.en
    # visible, so a missing entry is noticed: the id, and (en) the name the stage recorded
    return f"⚠ 未登记的检查项 {c.id}" if lang == "zh" else f"⚠ {c.name} (unregistered check id {c.id})"


def check_subject(c: Check, lang: str) -> str:
    if not c.subject:
        return ""
    return SUBJECT_WORDS.get(c.subject, c.subject) if lang == "zh" else c.subject


def check_label(c: Check, lang: str) -> str:
    """Name and, when the stage ran the check on several, which one: how a check is named in running text."""
    subject = check_subject(c, lang)
    return check_name(c, lang) + (f" ({subject})" if subject else "")


def check_detail(c: Check, lang: str) -> str:
    if not c.detail or lang != "zh":
        return c.detail
    zh = zh_detail(c.id, c.detail)
    if zh is not None:
        return zh
    recorded = c.detail if c.id in CHECKS else f"{c.name}: {c.detail}"
    return f"原文:{recorded}"
