"""A tiny real CLIP text model saved to disk, made here with transformers (no download)."""

from __future__ import annotations

from pathlib import Path


def tiny_clip_folder(folder: Path) -> Path:
    """A CLIPTextModel of width 32 (2 layers) and a character-level CLIP tokenizer, written by save_pretrained
    (config.json, model.safetensors, tokenizer files) as the real openai/clip-vit-base-patch16 folder is."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = [chr(c) for c in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
                            eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"])
    torch.manual_seed(0)
    CLIPTextModel(config).save_pretrained(folder)
    return Path(folder)
