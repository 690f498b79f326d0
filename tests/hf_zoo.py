"""Tiny ``transformers`` models of any type, built from the type's default config shrunk to seconds.

Shared by the tests (one representative per family) and ``scripts/transformers_census.py``
(every type in transformers' causal-LM and seq2seq mappings). Nothing is downloaded: the
config class's defaults describe the architecture, random weights fill it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

VOCAB = 320
LAYERS = 2
# Size attributes shrunk wherever a config has them (set only when the default config has the attribute).
SMALL: dict[str, Any] = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "rotary_dim": 8,
    "n_embd": 64,
    "n_layer": LAYERS,
    "n_head": 4,
    "n_inner": 96,
    "d_model": 64,
    "d_ff": 96,
    "d_kv": 16,
    "num_layers": LAYERS,
    "num_heads": 4,
    "num_decoder_layers": LAYERS,
    "encoder_layers": LAYERS,
    "decoder_layers": LAYERS,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 96,
    "decoder_ffn_dim": 96,
    "ffn_dim": 96,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "expert_intermediate_size": 32,
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "moe_topk": 2,
    "n_shared_experts": 1,
    "num_shared_experts": 1,
    "first_k_dense_replace": 1,
    "n_group": 1,
    "topk_group": 1,
    "kv_lora_rank": 16,
    "q_lora_rank": 32,
    "qk_rope_head_dim": 16,  # = head_dim, which multi-latent attention's rotary embedding reads
    "qk_nope_head_dim": 16,
    "v_head_dim": 16,
    "max_position_embeddings": 256,
    "n_positions": 256,
    "mamba_d_state": 8,
    "mamba_n_heads": 4,
    "mamba_d_head": 32,  # heads x head = expand (2) x hidden
    "mamba_n_groups": 1,
    "state_size": 8,
    "ssm_state_size": 8,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 16,
}

# Sizes some default configs leave None for a checkpoint to fill (Ministral's head_dim, Nemotron's KV heads):
# set like the others, since the model code reads them (KV heads left None mean as many as the query heads).
# The hand-written decoder configs' sizes (tests/test_generation.py, tests/test_decoder_fusions.py).
TINY_DECODER = {
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 128,
}
UNSET_SIZES = frozenset({"head_dim", "num_key_value_heads"})

# Types whose layer pattern is set by period and offset: one attention (or expert) layer in the two.
OVERRIDES: dict[str, dict[str, Any]] = {
    "jamba": {"attn_layer_offset": 1, "attn_layer_period": 2, "expert_layer_offset": 1, "expert_layer_period": 2},
    "bamba": {"attn_layer_indices": [1]},
    "granitemoehybrid": {"layer_types": ["mamba", "attention"]},
    "nemotron_h": {"layers_block_type": ["linear_attention", "full_attention", "moe"]},
    "recurrent_gemma": {"block_types": ["recurrent", "attention"]},
    "mamba2": {"head_dim": 32, "num_heads": 4, "n_groups": 1},
    "falcon_h1": {"mamba_d_ssm": 128},
    "deepseek_v2": {"num_experts_per_tok": 2, "n_group": 1, "topk_group": 1},
    # Defaults left None for a checkpoint to fill
    "lfm2_moe": {"layer_types": ["conv", "full_attention"]},
    "dots1": {"n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1},
    "dbrx": {"attn_config": {"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0}},
    "zaya": {"num_experts_per_tok": 1},
    "dory": {  # input, looped and output blocks of one layer each; the looped block runs twice
        "num_hidden_layers": 3,
        "n_input_layers": 1,
        "n_recurrent_layers": 1,
        "n_output_layers": 1,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
    },
    "reformer": {"axial_pos_embds_dim": [16, 48], "axial_pos_shape": [16, 16]},
    "kolibri1_1": {"index_num_heads": 2},
    "xmod": {"default_language": "en_XX"},
    "gemma3n_text": {"num_kv_shared_layers": 0},
    "inkling2_text": {"unpadded_vocab_size": VOCAB},
    "inkling2_loop_text": {"unpadded_vocab_size": VOCAB},
    "zamba": {"num_hidden_layers": 4, "layers_block_type": ["linear_attention", "hybrid"] * 2},
    "cohere_compass_text": {
        "rope_parameters": {
            kind: {"rope_type": "default", "rope_theta": 10000.0} for kind in ("full_attention", "sliding_attention")
        }
    },
    "qwen4_exp_text": {
        "indexer_n_heads": 2,
        "indexer_kv_heads": 1,
        "indexer_head_dim": 16,
        "indexer_budget": 64,
        "indexer_compress_ratio": 4,
    },
}


def tiny_config(model_type: str, **overrides: Any) -> Any:
    """The default config of ``model_type`` with every size attribute it has made small."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    if model_type == "encoder-decoder":  # as from_encoder_decoder_pretrained builds it: a decoder with cross-attention
        encoder, decoder = (tiny_config(kind, **overrides) for kind in ("bert", "bert"))
        config = cls.from_encoder_decoder_configs(encoder, decoder)
        config.pad_token_id = encoder.pad_token_id  # what its docs ask for: the tokenizer's pad and CLS ids
        config.decoder_start_token_id = 101  # BERT's [CLS]
        return config
    kwargs = _shrunk(cls, cls())
    if getattr(cls(), "is_decoder", None) is False and model_type in _causal_lm_types():
        kwargs["is_decoder"] = True  # encoders as causal LMs: transformers asks for is_decoder=True
    config = cls(**{**kwargs, **OVERRIDES.get(model_type, {}), **overrides})
    _special_tokens_in_vocabulary(config)
    return config


def _shrunk(cls: Any, default: Any) -> dict[str, Any]:
    """Keyword arguments that rebuild ``default`` small; sub-configs (text, vision, audio) shrunk the same way."""
    from transformers import PretrainedConfig

    layers = getattr(default, "num_hidden_layers", None)
    kwargs: dict[str, Any] = {}
    for name, value in vars(default).items():
        if isinstance(value, PretrainedConfig) and not name.startswith("_"):
            kwargs[name] = type(value)(**{**_shrunk(type(value), value), **OVERRIDES.get(value.model_type, {})})
    for name, value in SMALL.items():
        derived = isinstance(getattr(cls, name, None), property)  # computed from other sizes (Falcon's head_dim)
        unset = name in UNSET_SIZES and name in vars(default) and vars(default)[name] is None
        present = _attribute(default, name) is not None or unset
        if present and not derived:
            kwargs[name] = value
    if "num_key_value_heads" in kwargs and vars(default).get("num_key_value_heads", 0) is None:
        kwargs["num_key_value_heads"] = kwargs.get("num_attention_heads", SMALL["num_attention_heads"])  # None: as many
    if "kv_lora_rank" in kwargs and "num_key_value_heads" in kwargs:  # multi-latent attention: no grouped heads
        kwargs["num_key_value_heads"] = kwargs["num_attention_heads"]
    for name, value in vars(default).items():  # per-layer lists: each kind of layer kept, in order
        if isinstance(value, list) and layers and len(value) == layers and not name.startswith("_"):
            kinds = list(dict.fromkeys(map(_hashable, value)))
            picked = [value[[_hashable(v) for v in value].index(kind)] for kind in kinds][:LAYERS]
            kwargs[name] = picked + [value[0]] * (LAYERS - len(picked))
    vocab = kwargs.get("vocab_size", _attribute(default, "vocab_size")) or VOCAB
    for offset, name in enumerate(("eos_token_id", "bos_token_id", "pad_token_id", "decoder_start_token_id")):
        value = _attribute(default, name)
        if isinstance(value, int) and value >= vocab:
            kwargs[name] = vocab - 1 - offset
        elif isinstance(value, (list, tuple)):
            kwargs[name] = [t if t < vocab else vocab - 1 - offset for t in value]
    return kwargs


def _causal_lm_types() -> set[str]:
    from transformers.models.auto import modeling_auto

    return set(modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def _attribute(config: Any, name: str) -> Any:
    """``getattr`` that reads per-layer attributes (Gemma 4's, which raise on a global read) as absent."""
    try:
        return getattr(config, name, None)
    except Exception:  # transformers' AmbiguousGlobalPerLayerAttributeError and kin
        return None


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _special_tokens_in_vocabulary(config: Any) -> None:
    """Default special ids of full-size vocabularies (GPT-2's 50256, ...) moved inside the small one.

    Suppressed-token lists keep only ids inside it; an encoder-decoder without a decoder start
    token starts from its pad token, as T5's checkpoints do.
    """
    try:
        text = config.get_text_config()
    except ValueError:  # several text configs (MusicGen): the top-level one is the generating one
        text = config
    vocab = int(getattr(text, "vocab_size", VOCAB) or VOCAB)
    for name in ("suppress_tokens", "begin_suppress_tokens"):
        value = getattr(config, name, None)
        if isinstance(value, (list, tuple)):
            setattr(config, name, [t for t in value if t < vocab] or None)
    if getattr(config, "is_encoder_decoder", False) and getattr(config, "decoder_start_token_id", None) is None:
        start = getattr(config, "pad_token_id", None)
        config.decoder_start_token_id = start if isinstance(start, int) and start < vocab else 0
    for offset, name in enumerate(("eos_token_id", "bos_token_id", "pad_token_id", "decoder_start_token_id")):
        for holder in {id(config): config, id(text): text}.values():
            value = getattr(holder, name, None)
            if isinstance(value, int) and value >= vocab:
                setattr(holder, name, vocab - 1 - offset)
            elif isinstance(value, (list, tuple)):
                setattr(holder, name, [t if t < vocab else vocab - 1 - offset for t in value])


def trained_like(model: Any, seed: int = 0) -> Any:
    """``model`` with all-zero weight matrices (a router initialised to zero, as AFMoE's) filled at random.

    A zero router scores every expert the same, so which experts a token reaches comes down to
    how a top-k breaks ties, which torch and onnxruntime do differently; no trained model has
    such ties. Returns the model.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2 and parameter.numel() > 1 and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return model


def prompts(vocab: int, lengths: tuple[int, ...] = (3, 9), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded prompts of the given lengths (ids from 4 on, clear of usual special tokens)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, -length:] = rng.integers(4, vocab - 4, size=length)
        mask[row, -length:] = 1
    return ids, mask


def tiny_tokenizer(vocab_size: int) -> Any:
    """A fast tokenizer of ``vocab_size`` entries (special tokens, bytes, made-up words), built offline.

    Byte fallback makes any text encodable; saved with ``save_pretrained`` it is the
    ``tokenizer.json`` a runtime folder carries.
    """
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"<0x{b:02X}>": 3 + b for b in range(256)}
    vocab |= {f"w{i}": len(vocab) + i for i in range(max(0, vocab_size - len(vocab)))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
