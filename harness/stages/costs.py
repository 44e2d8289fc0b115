"""What a run will cost, before it runs (``--dry-run``): teacher calls, tokens, money or GPU-hours; probe, training
and evaluation tokens and GPU-hours. Each figure has an expected value and a cap (every generation at its full
budget, every example at ``train.max_length``) and says what it rests on.

Typed and composable: ``CostEstimate`` holds ``Figure`` rows grouped by section; other estimates (a GPU schedule,
a memory estimate) add their own sections with ``add`` and print beside these. It is also a read-only mapping of
flat keys (``teacher_calls``, ``train_gpu_hours``, ...: the expected value, or the cap for ``*_max`` keys) for
tables and tests.

The assumptions are stated in ``ASSUMPTIONS`` and printed with every estimate. Lengths come from the pool where it
is local (measured on a sample of its questions and reference solutions, 4 characters a token), else from the
stated guesses below; generated lengths are guesses capped by their budgets.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from harness.common.stages import TEACHER_STAGES
from harness.config import RunConfig

#: Training: one H100-class GPU at 989 dense bf16 TFLOP/s, 40% model FLOP utilisation, 6 FLOPs per parameter per
#: trained token for full fine-tuning (4 for LoRA: no weight gradients). Prefill (prompt tokens) of generation:
#: 2 FLOPs per parameter per token at the same utilisation.
PEAK_TFLOPS = 989
MFU = 0.40
#: Generation (vLLM, continuous batching, bf16, H100-class): decode is memory-bound, so output tokens per second
#: per GPU fall with model size. Stated as DECODE_TOK_S_PER_GPU_B / billions of parameters: 70,000 gives ~1,000
#: tok/s per GPU for a 70B model (tensor-parallel over 4 GPUs, ~4,000 tok/s in all), ~8,750 for 8B, ~2,200 for
#: 32B, the order of published vLLM throughput benchmarks at high concurrency. Not measured here (no GPU).
DECODE_TOK_S_PER_GPU_B = 70_000
#: Stated guesses where nothing is measured (tokens): a pool question and reference solution (WebInstruct-like),
#: and the expected length of each generation by a plain (non-reasoning) model: critique, refinement, direct
#: answer, the student's draft and a benchmark answer. A reasoning teacher (teacher.strip_thinking set) writes its
#: thinking too: REASONING_FACTOR times as many output tokens. Every expected length is capped by its budget.
GUESS = {"question": 120, "solution": 400, "critique": 450, "refine": 600, "direct": 550, "probe": 500,
         "eval": 600}
REASONING_FACTOR = 6
CHARS_PER_TOKEN = 4

ASSUMPTIONS = (
    f"training: {PEAK_TFLOPS} TFLOP/s per GPU at {MFU:.0%} utilisation, 6 FLOPs/param/token (LoRA 4)",
    f"generation: {DECODE_TOK_S_PER_GPU_B:,} / params_B output tok/s per GPU (vLLM, H100-class, not measured here); "
    f"prompts at 2 FLOPs/param/token",
    f"lengths: measured on the pool where local ({CHARS_PER_TOKEN} chars/token), else guessed "
    + ", ".join(f"{k} {v}" for k, v in GUESS.items())
    + f" tokens; reasoning teachers x{REASONING_FACTOR}; each capped by its budget",
)


@dataclass(frozen=True)
class Figure:
    """One estimated quantity. ``expected`` None = unknown (printed as "unknown", never 0)."""

    key: str
    expected: float | None
    cap: float | None = None
    unit: str = ""
    basis: str = ""

    def text(self) -> str:
        def fmt(v: float | None) -> str:
            if v is None:
                return "unknown"
            return f"{v:,.2f}" if isinstance(v, float) and not float(v).is_integer() else f"{int(v):,}"

        cap = f" (cap {fmt(self.cap)})" if self.cap is not None and self.cap != self.expected else ""
        basis = f"  [{self.basis}]" if self.basis else ""
        return f"{self.key}={fmt(self.expected)}{' ' + self.unit if self.unit else ''}{cap}{basis}"


@dataclass
class CostEstimate(Mapping):
    """Sections of figures (teacher, probe, train, eval, and whatever others add) and the assumptions."""

    sections: dict[str, list[Figure]] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=lambda: list(ASSUMPTIONS))

    def add(self, section: str, *figures: Figure) -> None:
        self.sections.setdefault(section, []).extend(figures)

    def figure(self, key: str) -> Figure | None:
        return next((f for fs in self.sections.values() for f in fs if f.key == key), None)

    def flat(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        for fs in self.sections.values():
            for f in fs:
                out[f.key] = "unknown" if f.expected is None else f.expected
                if f.cap is not None:
                    out[f"{f.key}_max"] = f.cap
        return out

    def __getitem__(self, key: str) -> float | str:
        return self.flat()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.flat())

    def __len__(self) -> int:
        return len(self.flat())

    def lines(self) -> list[str]:
        out = []
        for name, fs in self.sections.items():
            out.append(f"  {name}: " + "; ".join(f.text() for f in fs))
        out.append("  assumptions: " + "; ".join(self.assumptions))
        return out


# ---- sizes ------------------------------------------------------------------------------------------------
def params_b_from_name(name: str) -> float | None:
    """Billions of parameters read from a model name ('Llama-3.1-8B-Instruct' -> 8); None when it names none."""
    found = re.findall(r"(?<![\d.])(\d+(?:\.\d+)?)[bB](?![a-zA-Z])", str(name).rsplit("/", 1)[-1])
    return float(found[-1]) if found else None


def params_b_of(model: str | Path) -> float | None:
    """From the name, else from a local folder's config.json (embeddings + layers of a decoder), else None."""
    by_name = params_b_from_name(str(model))
    if by_name is not None:
        return by_name
    cfg_path = Path(str(model)).expanduser() / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        c = json.loads(cfg_path.read_text())
        h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
        inter = c.get("intermediate_size", 4 * h)
        heads, kv = c.get("num_attention_heads", 1), c.get("num_key_value_heads", c.get("num_attention_heads", 1))
        head_dim = c.get("head_dim") or h // heads
        attn = h * head_dim * heads * 2 + h * head_dim * kv * 2
        per_layer = attn + 3 * h * inter
        emb = vocab * h * (1 if c.get("tie_word_embeddings", True) else 2)
        return (emb + layers * per_layer) / 1e9
    except (KeyError, TypeError, ValueError):
        return None


def gen_gpu_hours(params_b: float | None, tokens_in: float, tokens_out: float) -> float | None:
    """GPU-hours to generate tokens_out after reading tokens_in with a model of params_b billion parameters."""
    if params_b is None:
        return None
    prefill_s = tokens_in * 2 * params_b * 1e9 / (PEAK_TFLOPS * 1e12 * MFU)
    decode_s = tokens_out / (DECODE_TOK_S_PER_GPU_B / params_b)
    return round((prefill_s + decode_s) / 3600, 4)


def train_tokens_per_gpu_s(params_b: float, lora: bool) -> float:
    return PEAK_TFLOPS * 1e12 * MFU / ((4 if lora else 6) * params_b * 1e9)


@dataclass(frozen=True)
class PoolLengths:
    """Mean token lengths of pool questions and reference solutions, and where they come from."""

    question: float
    solution: float
    basis: str


def pool_lengths(cfg: RunConfig, sample: int = 400) -> PoolLengths:
    """Measured on up to ``sample`` questions where the pool is local, else the stated guesses."""
    from harness.distill.pools import PoolError, load_pool_spec
    from harness.tasks.data import DataMissing

    src = cfg.pool.source
    target = src[3:] if src.startswith("hf:") else src
    local = src in ("synthetic", "math_train", "gsm8k_train") or Path(target).expanduser().exists()
    if local:
        try:
            items, _ = load_pool_spec(cfg.pool.model_copy(update={"n": min(sample, cfg.pool.n)}))
        except (PoolError, DataMissing, OSError):
            items = []
        if items:
            q = sum(len(it.question) for it in items) / len(items) / CHARS_PER_TOKEN
            s = sum(len(it.gold_solution) for it in items) / len(items) / CHARS_PER_TOKEN
            return PoolLengths(round(q, 1), round(s, 1), f"measured on {len(items)} pool items")
    return PoolLengths(GUESS["question"], GUESS["solution"], "guessed (pool not local)")


# ---- the estimate ---------------------------------------------------------------------------------------------
def self_hosted(cfg: RunConfig) -> bool:
    """True when the LLM teacher runs on the user's GPUs (in-process hf/vllm, or an OpenAI-compatible server that
    is not a provider's API): its cost is GPU time, not a price."""
    from harness.distill.teachers.api_models import on_provider

    e = cfg.teacher.engine
    if e.backend in ("hf", "vllm"):
        return True
    return not on_provider(e.backend, e.options.get("base_url"))


def estimate(plan, budget_of: Callable[[object], int]) -> CostEstimate:
    """The dry run's estimate for one planned run (see the module docstring); ``budget_of(task)`` is the task's
    generation budget in this run (passed down by the plan, which owns the rule)."""
    cfg = plan.config
    est = CostEstimate()
    n_pool = cfg.pool.n - cfg.pool.validation_n
    lengths = pool_lengths(cfg)
    q = lengths.question
    t = cfg.teacher
    reasoning = REASONING_FACTOR if t.strip_thinking else 1
    probe_budget = cfg.probe.max_new_tokens
    probe_exp = min(probe_budget, GUESS["probe"])
    student_b = params_b_of(cfg.student.model) if cfg.student.model != "tiny" else None

    # teacher
    stages = [s for s in TEACHER_STAGES if s in plan.stages]
    out_exp = {s: min(t.max_new_tokens, GUESS[s] * reasoning) for s in TEACHER_STAGES}
    # what the student trains on after stripping: a reasoning teacher's kept part is the plain length
    kept = {s: min(t.max_new_tokens, GUESS[s]) for s in TEACHER_STAGES}
    tmpl = {s: _template_tokens(cfg, f"{s}_request") for s in TEACHER_STAGES}
    per_in_exp = {"critique": tmpl["critique"] + q + probe_exp,
                  "refine": tmpl["refine"] + q + probe_exp + kept["critique"],
                  "direct": tmpl["direct"] + q}
    per_in_cap = {"critique": tmpl["critique"] + q + probe_budget,
                  "refine": tmpl["refine"] + q + probe_budget + t.max_new_tokens,
                  "direct": tmpl["direct"] + q}
    calls = n_pool * len(stages) if t.kind == "llm" else 0
    if t.kind != "llm":
        est.add("teacher", Figure("teacher_calls", 0, basis=f"{t.kind} teacher: computed, no model calls"),
                Figure("teacher_tokens", 0))
    else:
        t_in = sum(n_pool * per_in_exp[s] for s in stages)
        t_in_cap = sum(n_pool * per_in_cap[s] for s in stages)
        t_out = sum(n_pool * out_exp[s] for s in stages)
        t_out_cap = n_pool * len(stages) * t.max_new_tokens
        est.add("teacher",
                Figure("teacher_calls", calls, basis=f"{n_pool:,} questions x {', '.join(stages)}; "
                                                     "verdict retries not counted"),
                Figure("teacher_tokens_in", round(t_in), round(t_in_cap)),
                Figure("teacher_tokens_out", round(t_out), t_out_cap,
                       basis="reasoning teacher: thinking included" if reasoning > 1 else ""),
                Figure("teacher_tokens", round(t_in + t_out), round(t_in_cap + t_out_cap)))
        prices = t.known_prices()
        if self_hosted(cfg):
            tb = params_b_of(t.model or "")
            est.add("teacher", Figure("teacher_gpu_hours", gen_gpu_hours(tb, t_in, t_out),
                                      gen_gpu_hours(tb, t_in_cap, t_out_cap),
                                      basis=(f"self-hosted {tb:g}B teacher" if tb else
                                             "self-hosted teacher of unknown size: name its size (e.g. ...-70B)")))
        if prices is not None:
            pin, pout = prices
            est.add("teacher", Figure("teacher_cost_usd", round((t_in * pin + t_out * pout) / 1e6, 2),
                                      round((t_in_cap * pin + t_out_cap * pout) / 1e6, 2),
                                      basis=f"${pin:g}/${pout:g} per Mtok in/out"))
        else:
            est.add("teacher", Figure("teacher_cost_usd", None, basis=(
                "self-hosted: GPU time above; set teacher.price_per_mtok_in/out to price it" if self_hosted(cfg)
                else "no price known for this model: set teacher.price_per_mtok_in/out")))

    # probe
    if "probe" in plan.stages:
        p_in, p_exp, p_cap = n_pool * (q + 40), n_pool * probe_exp, n_pool * probe_budget
        est.add("probe", Figure("probe_tokens", round(p_in + p_exp), round(p_in + p_cap)),
                Figure("probe_gpu_hours", gen_gpu_hours(student_b, p_in, p_exp),
                       gen_gpu_hours(student_b, p_in, p_cap),
                       basis="" if student_b else "student size unknown"))
    else:
        est.add("probe", Figure("probe_tokens", 0, basis="no method needs a draft"))

    # training: one example per pool item and method, each capped at train.max_length
    tc = cfg.train
    c, r, d = kept["critique"], kept["refine"], kept["direct"]
    example = {"sft": q + lengths.solution, "distilled_sft": q + d, "cft": q + probe_exp + c,
               "cgd": q + probe_exp + c + r, "refine_only": q + probe_exp + r, "cft_star": q + probe_exp + c}
    exp_tokens = cap_tokens = 0.0
    epochs = tc.num_epochs
    for m in plan.methods:
        per = min(tc.max_length, example.get(m, q + d) + 60)  # + chat template and instructions
        exp_tokens += n_pool * epochs * per
        cap_tokens += n_pool * epochs * tc.max_length
    if tc.max_steps:
        cap_tokens = exp_tokens = len(plan.methods) * tc.max_steps * tc.per_device_batch_size \
            * tc.gradient_accumulation_steps * tc.max_length
    est.add("train", Figure("train_tokens", round(exp_tokens), round(cap_tokens),
                            basis=f"{lengths.basis}; {len(plan.methods)} methods x {epochs:g} epoch(s)"))
    if student_b is not None:
        tps = train_tokens_per_gpu_s(student_b, tc.use_lora)
        est.add("train", Figure("student_params_b", round(student_b, 4)),
                Figure("assumed_train_tokens_per_gpu_s", round(tps)),
                Figure("train_gpu_hours", round(exp_tokens / tps / 3600, 2), round(cap_tokens / tps / 3600, 2)))

    # evaluation
    n_models = 1 + len(plan.methods)
    e_in = e_exp = e_cap = 0.0
    for name, items in plan.eval_counts.items():  # the held-out task (pool_validation) too: every model is scored on it
        task = plan.task_spec(name)
        if task.output_type.generates:
            budget = budget_of(task)
            e_in += n_models * items * q
            e_exp += n_models * items * min(budget, GUESS["eval"]) * task.generation.n
            e_cap += n_models * items * budget * task.generation.n
        else:
            e_in += n_models * items * (q + 20)
    est.add("eval", Figure("eval_tokens", round(e_in + e_exp), round(e_in + e_cap)),
            Figure("eval_gpu_hours", gen_gpu_hours(student_b, e_in, e_exp), gen_gpu_hours(student_b, e_in, e_cap),
                   basis="" if student_b else "student size unknown"),
            Figure("models_to_evaluate", n_models))
    return est


def _template_tokens(cfg: RunConfig, kind: str) -> float:
    t = cfg.prompts
    return (len(getattr(t, kind) or "") + len(t.system_for(kind))) / CHARS_PER_TOKEN
