"""A Llama forward pass for decoding many rows at once from a preallocated KV cache of fixed slots.

Why not the Hugging Face forward with a `DynamicCache`: that cache grows by `torch.cat` at every step (a copy of
the whole cache per token), drops finished rows by copying it again, and cannot take a new row into a running
batch. Here each of the batch's slots owns a fixed region of one preallocated cache; a token's key and value are
written in place at its row's position, a finished row's slot is refilled with the next prompt (continuous
batching), and only the tail of a run (no prompt left to refill with) moves a slot, once per finished row.

The layers are the model's own numbers: its norms, rotary embedding and activation are called as they are; the
q/k/v and gate/up projections are fused into one matrix each (fewer, wider matrix products), each product runs
the kernel that measured fastest at a decode step's few rows (`Product`), and a prompt's tokens are packed into
one sequence for the products (no padding) and attend within their own prompt. A LoRA adapter is merged into the
copy, never into the model.

Only `model_type == "llama"` (SmolLM2, the tiny random model, Llama) takes this path; `apirl.models.engine`
decodes every other model with the generic Hugging Face loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("llama",)


def base_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports(model: Any) -> bool:
    """Whether this forward reproduces `model`'s: a Llama causal LM without extras it does not implement."""
    inner = base_model(model)
    config = getattr(inner, "config", None)
    return (getattr(config, "model_type", None) in SUPPORTED_MODEL_TYPES
            and getattr(config, "pretraining_tp", 1) == 1
            and getattr(config, "hidden_act", "silu") == "silu"
            and hasattr(inner, "model") and hasattr(inner, "lm_head"))


def effective_weight(module: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) a linear layer applies: a LoRA layer's base weight plus its active adapters' deltas."""
    base = getattr(module, "base_layer", None)
    if base is None:
        return module.weight.detach(), None if module.bias is None else module.bias.detach()
    weight = base.weight.detach()
    if not getattr(module, "merged", False) and not getattr(module, "disable_adapters", False):
        for adapter in module.active_adapters:
            if adapter in getattr(module, "lora_A", {}):
                weight = weight + module.get_delta_weight(adapter).detach().to(weight.dtype)
    return weight, None if base.bias is None else base.bias.detach()


def fused(modules: list[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One (weight, bias) for several linear layers that read the same input, stacked along the output."""
    pairs = [effective_weight(module) for module in modules]
    weight = torch.cat([w for w, _b in pairs]).contiguous()
    biases = [b for _w, b in pairs]
    if all(b is None for b in biases):
        return weight, None
    return weight, torch.cat([b if b is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
                              for (w, _), b in zip(pairs, biases, strict=True)])


class Product:
    """x (..., in) times a linear layer's weight (out, in).T, plus its bias, by the fastest kernel measured for a
    decode step's few rows: on a CPU, oneDNN with the weight packed once for `rows` rows (fp32; bf16 only where
    oneDNN has bf16 kernels for the CPU: AVX-512 or AVX-NE-CONVERT), else (weight @ x.T).T, which the BLAS runs
    ~1.5-2x faster than `F.linear` at 16-64 rows; on a GPU `F.linear`. Measured on the model's own matrices,
    AVX2, 2 threads, 32-64 rows: F.linear 27-40 GFLOP/s, weight @ x.T 48-58, oneDNN packed 52-60 (a whole
    decode step 13% faster than weight @ x.T)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> None:
        self.weight, self.bias, self.packed = weight, bias, None
        if weight.device.type == "cpu" and torch.backends.mkldnn.is_available() and (
                weight.dtype == torch.float32
                or (weight.dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported())):
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)

    @property
    def width(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if self.packed is not None:
            out = torch.ops.mkldnn._linear_pointwise(flat, self.packed, self.bias, "none", [], "")
        elif self.weight.device.type == "cpu":
            out = torch.mm(self.weight, flat.t()).t().contiguous()
            if self.bias is not None:
                out = out + self.bias
        else:
            out = F.linear(flat, self.weight, self.bias)
        return out.reshape(*x.shape[:-1], self.width)


@dataclass
class Layer:
    qkv: Product
    out: Product
    gate_up: Product
    down: Product
    input_norm: Any
    post_norm: Any


class SlotDecoder:
    """The model's forward over `slots` rows of at most `capacity` tokens each (prompt + answer).

    `prefill(slots, prompts)` runs the prompts (one padded pass) into those slots and returns the logits of each
    prompt's last token; `step(tokens)` feeds one token to each of the first `active` slots and returns their
    next logits; `move(source, target)` copies a slot's cache into another (compaction at the tail).
    """

    def __init__(self, model: Any, slots: int, capacity: int) -> None:
        inner = base_model(model)
        config = inner.config
        self.device = inner.lm_head.weight.device
        self.dtype = inner.lm_head.weight.dtype
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.embed = inner.model.embed_tokens
        self.rotary = inner.model.rotary_emb
        self.final_norm = inner.model.norm
        self.lm_head = Product(*effective_weight(inner.lm_head), slots)
        self.layers = [Layer(qkv=Product(*fused([block.self_attn.q_proj, block.self_attn.k_proj,
                                                 block.self_attn.v_proj]), slots),
                             out=Product(*effective_weight(block.self_attn.o_proj), slots),
                             gate_up=Product(*fused([block.mlp.gate_proj, block.mlp.up_proj]), slots),
                             down=Product(*effective_weight(block.mlp.down_proj), slots),
                             input_norm=block.input_layernorm, post_norm=block.post_attention_layernorm)
                       for block in inner.model.layers]
        shape = (len(self.layers), slots, self.kv_heads, capacity, self.head_dim)
        self.keys = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.values = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.lengths = torch.zeros(slots, dtype=torch.long, device=self.device)  # tokens cached per slot
        self.intermediate = config.intermediate_size
        self.q_width = self.heads * self.head_dim
        self.kv_width = self.kv_heads * self.head_dim

    def _qkv(self, layer: Layer, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Queries, keys and values (rows, heads, tokens, head_dim) of `x`, rotated by `rope` (the cos and sin of
        the tokens' positions)."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        rows, tokens = x.shape[:2]
        qkv = layer.qkv(layer.input_norm(x))
        q, k, v = qkv.split([self.q_width, self.kv_width, self.kv_width], dim=-1)
        q = q.reshape(rows, tokens, self.heads, self.head_dim).transpose(1, 2)
        k = k.reshape(rows, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.reshape(rows, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return q, k, v

    def _finish_layer(self, layer: Layer, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        rows, tokens = x.shape[:2]
        x = x + layer.out(attended.transpose(1, 2).reshape(rows, tokens, self.q_width))
        gate, up = layer.gate_up(layer.post_norm(x)).split(self.intermediate, dim=-1)
        return x + layer.down(F.silu(gate) * up)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.final_norm(hidden))

    @torch.inference_mode()
    def prefill(self, slots: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Cache the prompts in `slots` (their previous content is forgotten) and return (len(slots), vocab):
        the logits after each prompt's last token. The prompts are packed into one sequence for the matrix
        products (no padding to compute) and attend each within itself, causally."""
        lengths = [len(prompt) for prompt in prompts]
        starts = [sum(lengths[:i]) for i in range(len(prompts))]
        ids = torch.tensor([token for prompt in prompts for token in prompt], device=self.device)[None]
        positions = torch.cat([torch.arange(length, device=self.device) for length in lengths])[None]
        x = self.embed(ids)
        rope = self.rotary(x, positions)
        group = self.heads // self.kv_heads
        for number, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, rope)
            attended = []
            for slot, start, length in zip(slots, starts, lengths, strict=True):
                span = slice(start, start + length)
                self.keys[number, slot, :, :length] = k[0, :, span]
                self.values[number, slot, :, :length] = v[0, :, span]
                attended.append(F.scaled_dot_product_attention(
                    q[:, :, span], k[:, :, span].repeat_interleave(group, dim=1),
                    v[:, :, span].repeat_interleave(group, dim=1), is_causal=True))
            x = self._finish_layer(layer, x, torch.cat(attended, dim=2))
        self.lengths[torch.tensor(slots, device=self.device)] = torch.tensor(lengths, device=self.device)
        last = torch.tensor([start + length - 1 for start, length in zip(starts, lengths, strict=True)],
                            device=self.device)
        return self._logits(x[0, last])

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed token i to slot i (i < len(tokens)); return (len(tokens), vocab) logits for the next tokens."""
        active = tokens.shape[0]
        index = torch.arange(active, device=self.device)
        positions = self.lengths[:active].clone()
        span = int(positions.max()) + 1
        # Slot i sees its cached tokens and the new one: positions 0 .. positions[i].
        mask = (torch.arange(span, device=self.device)[None, :] <= positions[:, None])[:, None, None, :]
        x = self.embed(tokens[:, None])
        rope = self.rotary(x, positions[:, None])
        for number, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, rope)
            self.keys[number, index, :, positions] = k[:, :, 0]
            self.values[number, index, :, positions] = v[:, :, 0]
            keys = self.keys[number, :active, :, :span]
            values = self.values[number, :active, :, :span]
            x = self._finish_layer(layer, x, self._attend_one(q, keys, values, mask))
        self.lengths[:active] += 1
        return self._logits(x[:, 0])

    def _attend_one(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
                    ) -> torch.Tensor:
        """Attention of one new token per row (rows, heads, 1, head_dim) over the cached keys and values (rows,
        kv_heads, span, head_dim). The query heads that share a key-value head become that head's queries (a
        group of `heads // kv_heads` positions), so SDPA runs its flash kernel on the cache as it lies: with
        `enable_gqa` and a mask it takes the math path, which repeats the whole cache per head every step."""
        rows = q.shape[0]
        grouped = q.reshape(rows, self.kv_heads, self.heads // self.kv_heads, self.head_dim)
        attended = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=mask)
        return attended.reshape(rows, self.heads, 1, self.head_dim)

    def move(self, source: int, target: int) -> None:
        """Copy slot `source`'s cache into slot `target` (a finished row's slot, at the tail of a run)."""
        length = int(self.lengths[source])
        self.keys[:, target, :, :length] = self.keys[:, source, :, :length]
        self.values[:, target, :, :length] = self.values[:, source, :, :length]
        self.lengths[target] = length
