"""Will the run fit? Per-GPU memory for training one student (weights, gradients, optimiser state, activations at
the configured length and batch; LoRA or full; bf16; FSDP/ZeRO-3 sharding) and for serving it (weights + KV
cache), from the model's shape, before any model is loaded. A run that cannot fit is refused with the options.

Model shapes: the model's config.json when it is a local folder, else the table below (the paper's models and
their teachers, from their published config.json). Rules of thumb, stated so they can be checked:
- full fine-tuning as harness.distill.train does it: fp32 master weights (4 B/param; bf16 autocast), fp32 gradients
  (4 B), AdamW moments (8 B; 2 B with an 8-bit optimiser); FSDP/ZeRO-3 divide all three by the shard count;
- LoRA: frozen base in bf16 (2 B/param; 4 B without bf16), trainable adapters at 16 B/param;
- activations (Korthikanti et al. 2022, sequence parallel off, flash/SDPA attention so no s^2 term): about
  34 x hidden bytes a token a layer in bf16, all layers without gradient checkpointing; with it, the layer
  inputs (2 x hidden bytes a token a layer) plus one layer's worth; logits and their gradient in fp32
  (8 x vocab bytes a token);
- 2 GB a GPU for the CUDA context, allocator slack and communication buffers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

GB = 1e9
#: CUDA context, allocator fragmentation, NCCL buffers: a flat allowance per GPU.
OVERHEAD_GB = 2.0


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def params(self) -> int:
        kv = self.kv_heads * self.head_dim
        per_layer = 2 * self.hidden * self.hidden + 2 * self.hidden * kv + 3 * self.hidden * self.intermediate \
            + 2 * self.hidden
        return self.layers * per_layer + self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    def lora_params(self, r: int) -> int:
        """Adapter parameters with peft's all-linear targets (q, k, v, o, gate, up, down): r x (in + out) each."""
        kv = self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        pairs = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]
        return self.layers * r * sum(a + b for a, b in pairs)


#: Published shapes (each model's config.json on the Hub), matched by a lower-case substring of the name.
KNOWN_SHAPES: dict[str, ModelShape] = {
    "llama-3.1-8b": ModelShape(32, 4096, 14336, 32, 8, 128256, False),
    "llama-3.1-70b": ModelShape(80, 8192, 28672, 64, 8, 128256, False),
    "llama-3.3-70b": ModelShape(80, 8192, 28672, 64, 8, 128256, False),
    "llama-3.2-1b": ModelShape(16, 2048, 8192, 32, 8, 128256, True),
    "llama-3.2-3b": ModelShape(28, 3072, 8192, 24, 8, 128256, True),
    "qwen2.5-math-7b": ModelShape(28, 3584, 18944, 28, 4, 152064, False),
    "qwen2.5-7b": ModelShape(28, 3584, 18944, 28, 4, 152064, False),
    "qwen2.5-72b": ModelShape(80, 8192, 29568, 64, 8, 152064, False),
    "qwen2.5-3b": ModelShape(36, 2048, 11008, 16, 2, 151936, True),
    "qwen2.5-1.5b": ModelShape(28, 1536, 8960, 12, 2, 151936, True),
    "s1.1-3b": ModelShape(36, 2048, 11008, 16, 2, 151936, True),  # Qwen2.5-3B-Instruct fine-tuned
    "s1.1-7b": ModelShape(28, 3584, 18944, 28, 4, 152064, False),
    "s1.1-32b": ModelShape(64, 5120, 27648, 40, 8, 152064, False),
}


def model_shape(model: str | Path) -> ModelShape | None:
    """The shape from a local folder's config.json, else the table; None when neither knows the model."""
    cfg_path = Path(str(model)).expanduser() / "config.json"
    if cfg_path.is_file():
        c = json.loads(cfg_path.read_text(encoding="utf-8"))
        c = c.get("text_config", c)
        try:
            return ModelShape(c["num_hidden_layers"], c["hidden_size"], c["intermediate_size"],
                              c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"]),
                              c["vocab_size"], bool(c.get("tie_word_embeddings", False)))
        except KeyError:
            return None
    name = str(model).lower()
    for key in sorted(KNOWN_SHAPES, key=len, reverse=True):
        if key in name:
            return KNOWN_SHAPES[key]
    return None


@dataclass(frozen=True)
class TrainMemory:
    """Per-GPU training memory in GB."""

    model: str
    params_b: float
    gpus: int  # processes the job runs on (one a GPU)
    shards: int  # over how many of them weights/gradients/optimiser state are split (1 for DDP)
    weights: float
    gradients: float
    optimizer: float
    activations: float
    overhead: float
    gpu_memory_gb: float
    lora: bool

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_memory_gb

    def line(self) -> str:
        how = ("LoRA" if self.lora else "full fine-tuning") + (
            f", sharded over {self.shards} GPUs" if self.shards > 1 else
            (f", DDP over {self.gpus} GPUs" if self.gpus > 1 else ", one GPU"))
        return (f"train memory per GPU ({self.model}, {self.params_b:.2f}B params, {how}): ~{self.total:.1f} GB "
                f"of {self.gpu_memory_gb:g} (weights {self.weights:.1f}, gradients {self.gradients:.1f}, optimizer "
                f"{self.optimizer:.1f}, activations {self.activations:.1f}, overhead {self.overhead:.1f})")


@dataclass(frozen=True)
class ServeMemory:
    """Per-GPU serving memory: the weights, and how many full-length sequences the KV cache then holds."""

    model: str
    tensor_parallel: int
    weights: float
    kv_per_sequence: float  # GB for one sequence at the full context
    context: int
    batch: int  # the engine's batch size (vLLM: concurrent sequences it may schedule)
    overhead: float
    gpu_memory_gb: float

    @property
    def sequences_that_fit(self) -> int:
        return max(0, int((self.gpu_memory_gb - self.weights - self.overhead) / self.kv_per_sequence))

    @property
    def fits(self) -> bool:
        return self.sequences_that_fit >= 1

    def line(self) -> str:
        return (f"serve memory per GPU ({self.model}, tensor parallel {self.tensor_parallel}): weights "
                f"{self.weights:.1f} GB + KV cache {self.kv_per_sequence * 1000:.0f} MB a sequence at {self.context} "
                f"tokens: {self.sequences_that_fit} full-length sequences fit beside them in {self.gpu_memory_gb:g} "
                f"GB (batch {self.batch}; shorter ones share the rest)")


def train_memory(model: str, shape: ModelShape, tc, gpus: int, gpu_memory_gb: float) -> TrainMemory:
    """``tc``: the TrainConfig; ``gpus``: processes of the job (sharding applies for fsdp/zero3)."""
    p = shape.params
    bf16 = tc.bf16 is not False
    eight_bit = "8bit" in tc.optim
    shards = gpus if tc.distributed.strategy in ("fsdp", "zero3") else 1
    if tc.use_lora:
        trainable = shape.lora_params(tc.lora_r)
        weights = p * (2 if bf16 else 4) / shards + trainable * 4
        grads, opt = trainable * 4, trainable * (2 if eight_bit else 8)
    else:
        weights, grads, opt = 4 * p / shards, 4 * p / shards, p * (2 if eight_bit else 8) / shards
    tokens = tc.per_device_batch_size * tc.max_length
    act_bytes = 2 if bf16 else 4
    per_layer = 17 * act_bytes * shape.hidden * tokens  # 34 x hidden bytes a token a layer in bf16
    if tc.gradient_checkpointing:
        acts = shape.layers * act_bytes * shape.hidden * tokens + per_layer
    else:
        acts = shape.layers * per_layer
    acts += 8 * shape.vocab * tokens  # fp32 logits and their gradient
    return TrainMemory(model=model, params_b=p / 1e9, gpus=gpus, shards=shards, weights=weights / GB,
                       gradients=grads / GB, optimizer=opt / GB, activations=acts / GB, overhead=OVERHEAD_GB,
                       gpu_memory_gb=gpu_memory_gb, lora=tc.use_lora)


def serve_memory(model: str, shape: ModelShape, batch: int, context: int, tensor_parallel: int,
                 gpu_memory_gb: float) -> ServeMemory:
    """bf16 weights; K and V in bf16 for every layer and KV head, a token."""
    kv_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * 2
    return ServeMemory(model=model, tensor_parallel=tensor_parallel, weights=2 * shape.params / tensor_parallel / GB,
                       kv_per_sequence=kv_token * context / tensor_parallel / GB, context=context, batch=batch,
                       overhead=OVERHEAD_GB, gpu_memory_gb=gpu_memory_gb)


def job_gpus(cfg) -> int:
    """GPUs one training job runs on: train.distributed.nproc, at most executor.gpus when that is set."""
    n = cfg.train.distributed.nproc
    return min(n, cfg.executor.gpus) if cfg.executor.gpus else n


def estimate(cfg) -> tuple[TrainMemory | None, ServeMemory | None]:
    """Training and serving memory for the run's student; None where the shape is unknown (a model neither
    local nor in the table) or the run trains on CPU."""
    shape = model_shape(cfg.student.model)
    if shape is None or cfg.student.model == "tiny":
        return None, None
    mem = cfg.executor.gpu_memory_gb
    train = None
    if cfg.methods and cfg.train.device != "cpu":
        train = train_memory(cfg.student.model, shape, cfg.train, max(1, job_gpus(cfg)), mem)
    e = cfg.eval.engine
    budgets = [v for v in (cfg.eval.max_new_tokens or {}).values() if isinstance(v, int)]
    context = 1024 + max(budgets or [1024])  # a long prompt plus the largest generation budget
    tp = int((e.options or {}).get("tensor_parallel_size", 1))
    return train, serve_memory(cfg.student.model, shape, e.batch_size, context, tp, mem)


def check_fits(cfg) -> TrainMemory | None:
    """Refuse a training run whose estimate exceeds the GPU memory, naming the options (raises ValueError with
    one line; the CLI turns it into exit 2)."""
    train, serve = estimate(cfg)
    if serve is not None and not serve.fits and cfg.eval.engine.device != "cpu":
        raise ValueError(f"the student cannot be served: {serve.line()}; options: tensor parallelism over more "
                         "GPUs (eval.engine.options.tensor_parallel_size), or smaller generation budgets "
                         "(eval.max_new_tokens)")
    if train is None or train.fits:
        nproc, gpus = cfg.train.distributed.nproc, cfg.executor.gpus
        if train is not None and gpus and nproc > gpus:
            raise ValueError(f"train.distributed.nproc={nproc} runs one process a GPU but executor.gpus={gpus}; "
                             f"set train.distributed.nproc<={gpus} (the global batch stays) or executor.gpus>={nproc}")
        return train
    shape = model_shape(cfg.student.model)

    def sharded(n: int) -> TrainMemory:
        tc = cfg.train.model_copy(update={"distributed": cfg.train.distributed.model_copy(
            update={"nproc": n, "strategy": "fsdp"})})
        return train_memory(train.model, shape, tc, n, train.gpu_memory_gb)

    # Suggest a shard count with 10% headroom: the estimate is a rule of thumb, not a measurement.
    shard_n = next((n for n in (2, 4, 8, 16, 32, 64) if sharded(n).total <= 0.9 * train.gpu_memory_gb), None)
    shard = (f"shard across {shard_n} GPUs (train.distributed={{nproc: {shard_n}, strategy: fsdp}} and "
             f"executor.gpus>={shard_n})" if shard_n else
             f"shard across more GPUs (64 need ~{sharded(64).total:.0f} GB each)")
    raise ValueError(f"the run cannot fit: {train.line()}; options: {shard}, LoRA (train.use_lora=true), an 8-bit "
                     "optimizer (train.optim=adamw_bnb_8bit, needs bitsandbytes), or a smaller "
                     "train.per_device_batch_size with train.gradient_checkpointing=true")
