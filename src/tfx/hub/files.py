"""Which files of a repository running a model needs: config, generation config, tokenizer and ONE weights
format (safetensors first, else pytorch_model.bin; never TensorFlow, Flax, ONNX or Rust weights), and the
order they are fetched in so that a cached snapshot with its weights is a complete one."""

from __future__ import annotations

import re

CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "source.spm",
    "target.spm",
    "target_vocab.json",
    "sentencepiece.bpe.model",
    "sentencepiece.model",
    "tokenizer.model",
    "chat_template.jinja",
)
# The files whose presence says "the weights are here": a single weights file, or the index of a sharded one.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_SAFETENSORS_SHARD = re.compile(r"model-\d+-of-\d+\.safetensors")
_BIN_SHARD = re.compile(r"pytorch_model-\d+-of-\d+\.bin")
# sentence-transformers' layout (embed, rank): its module list and configs, and each module's folder
# (1_Pooling/config.json, 2_Dense/model.safetensors, ...); without them pooling and normalisation are lost.
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
_ST_MODULE_FILE = re.compile(r"\d+_[^/]+/(?:[^/]+\.json|model\.safetensors)")


def select_files(filenames: list[str]) -> list[str]:
    """The files running a model needs, from the names a repository holds: config, tokenizer, and one
    weights format (safetensors first). Never TensorFlow, Flax, ONNX or Rust weights, never two formats.

    This cannot be a fixed list of glob patterns for snapshot_download: which weights are wanted depends
    on which exist (pytorch_model.bin only when there is no model.safetensors). So the repository's
    listing is read once, and the exact names chosen here become snapshot_download's allow_patterns;
    they hold no glob characters (* ? [), so each pattern matches only its own file."""
    top = [f for f in filenames if "/" not in f]
    wanted = [f for f in top if f in CONFIG_FILES or f in TOKENIZER_FILES or f in ST_FILES]
    if "modules.json" in top:
        wanted += sorted(f for f in filenames if _ST_MODULE_FILE.fullmatch(f))
    if "model.safetensors" in top:
        wanted.append("model.safetensors")
    elif "model.safetensors.index.json" in top:
        wanted += ["model.safetensors.index.json"] + sorted(f for f in top if _SAFETENSORS_SHARD.fullmatch(f))
    elif "pytorch_model.bin" in top:
        wanted.append("pytorch_model.bin")
    elif "pytorch_model.bin.index.json" in top:
        wanted += ["pytorch_model.bin.index.json"] + sorted(f for f in top if _BIN_SHARD.fullmatch(f))
    return wanted


def download_groups(files: list[str]) -> list[list[str]]:
    """The selected files in the order they are fetched: everything but the weights, then the weights
    (shards in parallel), then the index of sharded weights. snapshot_download fetches one call's files
    in parallel, in no set order, so each group is its own call: a snapshot holding a file of WEIGHT_FILES
    then holds everything fetched before it, which is what `cache.cached_snapshot` relies on after an
    interrupted download."""
    index = [f for f in files if f.endswith(".index.json") and f in WEIGHT_FILES]
    weights = [f for f in files if f not in index and (f in WEIGHT_FILES or _SAFETENSORS_SHARD.fullmatch(f) or _BIN_SHARD.fullmatch(f))]
    rest = [f for f in files if f not in index and f not in weights]
    return [group for group in (rest, weights, index) if group]
