"""open_clip BiomedCLIP-style checkpoints -> `mammo_keras.models.clip.build_clip` models.

What a user downloads (e.g. microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224) is a
folder with `open_clip_config.json`, the weights (`open_clip_pytorch_model.bin`, a torch
pickle, or `open_clip_model.safetensors`) and the tokenizer files (`vocab.txt`). The sizes
are read from the weights' shapes; head counts, which shapes do not tell, from the text
model's `config.json` where the config names a local one, else BERT's and timm's 64-wide
heads (`test_vit`: 32). Every weight of the checkpoint is used, or the conversion fails.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np

from mammo_keras.compat import transformer_encoder_parts
from mammo_keras.errors import UserError
from mammo_keras.models.clip import LOGIT_SCALE_RANGE, CLIPConfig, build_clip
from mammo_keras.models.clip_tokenizer import CLIPTokenizer

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
MAX_CONFIG_BYTES = 1 << 20  # a model config is a few kB
MAX_CONTEXT = 4096  # tokens; a context past the position table is refused anyway
# timm ViTs whose attention heads are not 64 wide
VISION_HEADS = {"test_vit": 2, "test_vit2": 2, "test_vit3": 2}
SUPPORTED = {"vision": ("timm_model_name",), "text": ("hf_model_name",)}


def read_open_clip_folder(directory: str | Path) -> tuple[dict, dict[str, np.ndarray], Path]:
    """(open_clip model_cfg, {weight name: float32 array}, vocab.txt path) of a folder."""
    folder = Path(directory)
    config_path = folder / "open_clip_config.json"
    if not config_path.is_file():
        raise UserError(f"{folder}: no open_clip_config.json (the folder open_clip's "
                        "'local-dir:' or 'hf-hub:' models come in)")
    document = read_json_file(config_path)
    model_cfg = document.get("model_cfg") if isinstance(document, dict) else None
    if not isinstance(model_cfg, dict):
        raise UserError(f"{config_path}: not an open_clip config (no 'model_cfg' mapping)")
    for tower in ("vision_cfg", "text_cfg"):
        if not isinstance(model_cfg.get(tower, {}), dict):
            raise UserError(f"{config_path}: model_cfg.{tower} is not a mapping")
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise UserError(f"{folder}: no weights file ({' or '.join(WEIGHT_FILES)})")
    vocab = _vocabulary_file(folder, model_cfg)
    return model_cfg, _read_weights(weights), vocab


def read_json_file(path: Path) -> object:
    """The JSON value of `path`; a UserError naming it when it is too large, not JSON, or
    nested too deeply for Python's parser."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise UserError(f"{path}: {path.stat().st_size:,} bytes, more than a model config "
                            f"holds ({MAX_CONFIG_BYTES:,}); refused")
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to be a model config") from None
    except (ValueError, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{path}: not a readable JSON file ({first})") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    """{name: float32 array} of a safetensors or torch file; a UserError naming it when it is
    not a readable checkpoint of arrays (truncated, lying header, a pickle of other things)."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError as error:
            raise UserError(f"{path}: reading it needs safetensors (pip install safetensors)"
                            ) from error
        try:  # SafetensorError and friends: a truncated file, a header that lies
            loaded = load_file(path)
            return {key: np.asarray(value, np.float32) for key, value in loaded.items()}
        except Exception as error:  # noqa: BLE001 - safetensors' Rust errors have no common base
            raise UserError(f"{path}: not a readable safetensors file "
                            f"({_first_line(error)})") from None
    try:
        import torch
    except ImportError as error:
        raise UserError(f"{path}: a torch checkpoint; reading it needs torch "
                        "(pip install \"mammo-keras[torch]\")") from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        return {key.removeprefix("module."): value.float().numpy()
                for key, value in state.items()}
    except Exception as error:  # noqa: BLE001 - a torch file fails in many ways
        raise UserError(f"{path}: not a readable torch checkpoint of weights "
                        f"({_first_line(error)})") from None


def _vocabulary_file(folder: Path, model_cfg: dict) -> Path:
    candidates = [folder / "vocab.txt"]
    tokenizer_name = model_cfg.get("text_cfg", {}).get("hf_tokenizer_name")
    if tokenizer_name and Path(tokenizer_name).is_dir():
        candidates.append(Path(tokenizer_name) / "vocab.txt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(f"{folder}: no vocab.txt (the tokenizer's WordPiece vocabulary) beside "
                    "open_clip_config.json")


def _text_heads(model_cfg: dict, width: int) -> int:
    name = model_cfg.get("text_cfg", {}).get("hf_model_name")
    config = Path(name) / "config.json" if isinstance(name, str) else None
    if config is not None and config.is_file():
        document = read_json_file(config)
        heads = document.get("num_attention_heads") if isinstance(document, dict) else None
        return _heads(heads, width, f"{config}: num_attention_heads")
    return _heads(width // 64, width, "text tower (64-wide BERT heads)")


def _heads(heads: object, width: int, where: str) -> int:
    """`heads` when it is a whole number >= 1 dividing `width`; else a UserError naming `where`."""
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or width % heads:
        raise UserError(f"{where} is {heads!r}; it must be a whole number >= 1 that divides "
                        f"the width {width}")
    return heads


def _checked_values(state: dict[str, np.ndarray]) -> None:
    """A UserError naming the first weight that is not finite, or a logit scale outside the
    range open_clip trains it in."""
    for key, value in state.items():
        if not np.all(np.isfinite(value)):
            raise UserError(f"checkpoint weight {key!r} holds values that are not finite "
                            "(NaN or infinity): the model would answer NaN")
    if "logit_scale" in state:
        scale = float(np.asarray(state["logit_scale"]).reshape(-1)[0])
        low, high = LOGIT_SCALE_RANGE
        if not low - 1e-3 <= scale <= high + 1e-3:
            raise UserError(f"checkpoint logit_scale is {scale:g}, outside [{low:g}, "
                            f"{high:.4f}] (ln 100), where open_clip keeps it")


def clip_config_from(model_cfg: dict, state: dict[str, np.ndarray]) -> CLIPConfig:
    """The sizes of the checkpoint `state` (its shapes) with what model_cfg adds."""
    _checked_values(state)
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    for tower, keys in (("vision", vision), ("text", text)):
        if not any(key in keys for key in SUPPORTED[tower]):
            raise UserError(f"open_clip {tower}_cfg {sorted(keys)}: only timm ViT image towers "
                            "and Hugging Face BERT text towers (BiomedCLIP's design) convert")
    if text.get("hf_proj_type", "mlp") != "mlp" or text.get(
            "hf_pooler_type", "cls_last_hidden_state_pooler") != "cls_last_hidden_state_pooler":
        raise UserError("open_clip text_cfg: only the MLP projection of the [CLS] token "
                        "(BiomedCLIP's) converts")
    patch = state["visual.trunk.patch_embed.proj.weight"]
    if patch.ndim != 4:
        raise UserError(f"checkpoint weight 'visual.trunk.patch_embed.proj.weight' has shape "
                        f"{patch.shape}; a ViT patch embedding is (width, 3, patch, patch)")
    positions = state["visual.trunk.pos_embed"].shape[1] - 1
    grid = int(round(math.sqrt(positions)))
    vision_width = patch.shape[0]
    text_width = state["text.transformer.embeddings.word_embeddings.weight"].shape[1]
    max_positions = state["text.transformer.embeddings.position_embeddings.weight"].shape[0]
    context = text.get("context_length", 77)
    if isinstance(context, bool) or not isinstance(context, int) or \
            not 1 <= context <= min(max_positions, MAX_CONTEXT):
        raise UserError(f"open_clip text_cfg.context_length is {context!r}; it must be a whole "
                        f"number from 1 to {min(max_positions, MAX_CONTEXT)} (the text "
                        "tower's position table)")
    return CLIPConfig(
        embed_dim=state["visual.head.proj.weight"].shape[0],
        image_size=grid * patch.shape[2], patch_size=patch.shape[2], vision_width=vision_width,
        vision_layers=_count(state, "visual.trunk.blocks."),
        vision_heads=_heads(VISION_HEADS.get(vision.get("timm_model_name"), vision_width // 64),
                            vision_width, "image tower (64-wide timm heads)"),
        vision_mlp=state["visual.trunk.blocks.0.mlp.fc1.weight"].shape[0],
        vocab_size=state["text.transformer.embeddings.word_embeddings.weight"].shape[0],
        text_width=text_width, text_layers=_count(state, "text.transformer.encoder.layer."),
        text_heads=_text_heads(model_cfg, text_width),
        text_intermediate=state[
            "text.transformer.encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_positions=max_positions,
        type_vocab_size=state[
            "text.transformer.embeddings.token_type_embeddings.weight"].shape[0],
        projection_hidden=state["text.proj.0.weight"].shape[0],
        context_length=context,
        logit_scale=float(state["logit_scale"]))


def _count(state: dict, prefix: str) -> int:
    return len({key[len(prefix):].split(".")[0] for key in state if key.startswith(prefix)})


class _Porter:
    """Assigns checkpoint arrays to Keras variables, checking shapes and that none is left."""

    def __init__(self, state: dict[str, np.ndarray]):
        self.state, self.used = state, set()

    def __call__(self, variable, key: str, transform=None) -> None:
        if key not in self.state:
            raise UserError(f"checkpoint has no weight {key!r}")
        value = self.state[key]
        value = transform(value) if transform is not None else value
        if tuple(value.shape) != tuple(variable.shape):
            raise UserError(f"weight {key!r}: shape {tuple(value.shape)} does not fit "
                            f"{variable.path} {tuple(variable.shape)}")
        variable.assign(value.astype(np.float32))
        self.used.add(key)

    def check_all_used(self) -> None:
        left = sorted(set(self.state) - self.used - {"logit_scale"})
        if left:
            raise UserError(f"{len(left)} checkpoint weights have no place in the Keras model, "
                            f"e.g. {left[:3]}")


def _port_attention(port: _Porter, attention, prefix: str, names: tuple, heads: int,
                    width: int) -> None:
    """Linear q / k / v / output weights (out, in) onto a Keras MultiHeadAttention."""
    head = width // heads
    for dense, key in zip((attention.query_dense, attention.key_dense, attention.value_dense),
                          names[:3]):
        port(dense.kernel, f"{prefix}{key}.weight", lambda w: w.T.reshape(width, heads, head))
        port(dense.bias, f"{prefix}{key}.bias", lambda b: b.reshape(heads, head))
    port(attention.output_dense.kernel, f"{prefix}{names[3]}.weight",
         lambda w: w.T.reshape(heads, head, width))
    port(attention.output_dense.bias, f"{prefix}{names[3]}.bias")


def _port_norm(port: _Porter, layer, key: str) -> None:
    port(layer.gamma, f"{key}.weight")
    port(layer.beta, f"{key}.bias")


def _port_dense(port: _Porter, layer, key: str) -> None:
    port(layer.kernel, f"{key}.weight", np.transpose)
    if layer.use_bias:
        port(layer.bias, f"{key}.bias")


def _split_qkv(state: dict, prefix: str, width: int) -> None:
    """timm's fused qkv (3W, W) -> separate q / k / v entries, as the other towers have."""
    weight, bias = state.pop(f"{prefix}qkv.weight"), state.pop(f"{prefix}qkv.bias")
    for index, name in enumerate(("q", "k", "v")):
        state[f"{prefix}{name}.weight"] = weight[index * width:(index + 1) * width]
        state[f"{prefix}{name}.bias"] = bias[index * width:(index + 1) * width]


def port_open_clip_weights(model: keras.Model, config: CLIPConfig,
                           state: dict[str, np.ndarray]) -> None:
    """Copy an open_clip state dict into a `build_clip(config)` model, every weight."""
    state = dict(state)
    port = _Porter(state)
    vit = model.get_layer("image_tower").get_layer("vit")
    embedding = vit.get_layer("vit_patching_and_embedding")
    trunk = "visual.trunk."
    port(embedding.class_token, f"{trunk}cls_token")
    port(embedding.patch_embedding.kernel, f"{trunk}patch_embed.proj.weight",
         lambda w: w.transpose(2, 3, 1, 0))
    port(embedding.patch_embedding.bias, f"{trunk}patch_embed.proj.bias")
    port(embedding.position_embedding.embeddings, f"{trunk}pos_embed", lambda p: p[0])
    encoder = vit.get_layer("vit_encoder")
    for index, block in enumerate(encoder.encoder_layers):
        prefix = f"{trunk}blocks.{index}."
        _split_qkv(state, f"{prefix}attn.", config.vision_width)
        _port_norm(port, block.layer_norm_1, f"{prefix}norm1")
        _port_attention(port, block.mha, f"{prefix}attn.", ("q", "k", "v", "proj"),
                        config.vision_heads, config.vision_width)
        _port_norm(port, block.layer_norm_2, f"{prefix}norm2")
        _port_dense(port, block.mlp.dense_1, f"{prefix}mlp.fc1")
        _port_dense(port, block.mlp.dense_2, f"{prefix}mlp.fc2")
    _port_norm(port, encoder.layer_norm, f"{trunk}norm")
    _port_dense(port, model.get_layer("image_tower").get_layer("image_projection"),
                "visual.head.proj")

    text = model.get_layer("text_tower")
    embeddings = text.get_layer("text_embeddings")
    bert = "text.transformer."
    port(embeddings.word.embeddings, f"{bert}embeddings.word_embeddings.weight")
    port(embeddings.position.embeddings, f"{bert}embeddings.position_embeddings.weight")
    port(embeddings.segment.embeddings, f"{bert}embeddings.token_type_embeddings.weight")
    _port_norm(port, embeddings.norm, f"{bert}embeddings.LayerNorm")
    for index in range(config.text_layers):
        layer = text.get_layer(f"text_layer_{index}")
        prefix = f"{bert}encoder.layer.{index}."
        parts = transformer_encoder_parts(layer)
        _port_attention(port, parts["_self_attention_layer"], f"{prefix}attention.",
                        ("self.query", "self.key", "self.value", "output.dense"),
                        config.text_heads, config.text_width)
        _port_norm(port, parts["_self_attention_layer_norm"],
                   f"{prefix}attention.output.LayerNorm")
        _port_dense(port, parts["_feedforward_intermediate_dense"], f"{prefix}intermediate.dense")
        _port_dense(port, parts["_feedforward_output_dense"], f"{prefix}output.dense")
        _port_norm(port, parts["_feedforward_layer_norm"], f"{prefix}output.LayerNorm")
    _port_dense(port, text.get_layer("text_projection_hidden"), "text.proj.0")
    _port_dense(port, text.get_layer("text_projection"), "text.proj.2")
    state.pop("text.transformer.embeddings.position_ids", None)  # a buffer, not a weight
    port.check_all_used()


def open_clip_to_keras(directory: str | Path) -> keras.Model:
    """The open_clip folder `directory` as a `build_clip` model holding the checkpoint's
    weights, logit scale and tokenizer (`load_clip` gives both back from the `.keras` file)."""
    model_cfg, state, vocab = read_open_clip_folder(directory)
    try:
        config = clip_config_from(model_cfg, state)
    except KeyError as error:
        raise UserError(f"{directory}: the weights lack {error} (not a BiomedCLIP-style "
                        "checkpoint)") from None
    tokenizer = CLIPTokenizer.from_vocab_file(vocab, context_length=config.context_length)
    try:
        model = build_clip(config, tokenizer=tokenizer.to_dict(), name="biomedclip")
        port_open_clip_weights(model, config, state)
    except (ValueError, TypeError, IndexError) as error:
        if isinstance(error, UserError):
            raise UserError(f"{directory}: {error}") from None
        raise UserError(f"{directory}: the weights do not make a BiomedCLIP-style model "
                        f"({_first_line(error)})") from None
    return model
