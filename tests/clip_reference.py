"""open_clip models built offline, the reference of the Keras CLIP towers (a test helper).

open_clip and timm import torchvision; beside this machine's CPU torch wheel pip resolves a
CUDA torchvision whose operator registrations fail on import ("operator torchvision::nms does
not exist"). Neither open_clip's CLIP models nor timm's ViTs use those operators, so the
module that registers them is stubbed before the import (test-only).
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

SMALL_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "breast", "breasts", "is",
               "are", "fatty", "fat", "dense", "extremely", "heterogeneously", "scattered",
               "areas", "of", "pattern", "density", "densities", "characterized", "by",
               "predominance", "almost", "entirely", "fibro", "##glandular", ".", ",", "which",
               "may", "obscure", "small", "masses", "##s"] + [f"w{i}" for i in range(30)]


def prepare_open_clip_import() -> None:
    """Offline Hugging Face libraries, torchvision's operator registrations stubbed (see the
    module docstring): call before open_clip, timm or torchvision is first imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.modules.setdefault("torchvision._meta_registrations",
                           types.ModuleType("torchvision._meta_registrations"))


def import_open_clip():
    """open_clip, imported after `prepare_open_clip_import`."""
    prepare_open_clip_import()
    import open_clip

    return open_clip


def write_open_clip_folder(root: Path, *, full: bool = False, context_length: int = 24,
                           seed: int = 0):
    """A folder as a BiomedCLIP download holds it (open_clip_config.json, weights, vocab),
    with a randomly initialised model: small (timm's test_vit, a 2-layer BERT) by default,
    BiomedCLIP's ViT-B/16 + BERT-base sizes with `full`. Returns the open_clip model."""
    import torch
    from transformers import BertConfig, BertTokenizerFast

    open_clip = import_open_clip()
    root.mkdir(parents=True, exist_ok=True)
    text = root / "text"
    words = SMALL_WORDS if not full else SMALL_WORDS + [f"v{i}" for i in range(30522 - 66)]
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    sizes = (dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, max_position_embeddings=512) if full else
             dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64))
    BertConfig(vocab_size=len(words), **sizes).save_pretrained(text)
    tokenizer = BertTokenizerFast(vocab={word: index for index, word in enumerate(words)},
                                  do_lower_case=True)
    tokenizer.save_pretrained(text)
    tokenizer.save_pretrained(root)  # a local-dir model's tokenizer lives in the folder itself
    config = {"model_cfg": {
        "embed_dim": 512 if full else 16,
        "vision_cfg": {"timm_model_name": "vit_base_patch16_224" if full else "test_vit",
                       "timm_model_pretrained": False, "timm_pool": "", "timm_proj": "linear",
                       "image_size": 224 if full else 160},
        "text_cfg": {"hf_model_name": str(text), "hf_tokenizer_name": str(text),
                     "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                     "context_length": 256 if full else context_length}},
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                           "std": [0.26862954, 0.26130258, 0.27577711]}}
    (root / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{root}", pretrained_text=False)
    with torch.no_grad():  # a trained-looking scale, not open_clip's initial one
        model.logit_scale.fill_(4.2)
    model.eval()
    torch.save(model.state_dict(), root / "open_clip_pytorch_model.bin")
    return model


def write_small_random_clip(path: Path, prompt_sets=("birads", "mama"), image_size: int = 32):
    """A tiny random `build_clip` model (no open_clip needed) whose vocabulary holds the words
    of `prompt_sets`, saved to `path`."""
    from mammo_keras.models.clip import CLIPConfig, build_clip
    from mammo_keras.models.zero_shot import DENSITY_PROMPTS
    from mammo_keras.models.clip_tokenizer import CLIPTokenizer
    from mammo_keras.training.contrastive import word_vocabulary

    texts = [text for name in prompt_sets for prompts in DENSITY_PROMPTS[name].values()
             for text in prompts]
    tokenizer = CLIPTokenizer(word_vocabulary(texts), context_length=32)
    config = CLIPConfig(embed_dim=16, image_size=image_size, patch_size=8, vision_width=32,
                        vision_layers=1, vision_heads=2, vision_mlp=32,
                        vocab_size=len(tokenizer.vocabulary), text_width=32, text_layers=1,
                        text_heads=2, text_intermediate=32, max_positions=32,
                        projection_hidden=16, context_length=32)
    build_clip(config, tokenizer=tokenizer.to_dict()).save(path)
    return path
