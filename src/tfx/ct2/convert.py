"""Conversion with ctranslate2.converters.TransformersConverter, from the cached snapshot, plus the shims
transformers 5 needs (each one small and tested in tests/test_ct2.py):

  * BART/mBART configs no longer carry fairseq's `normalize_before`: set from the model's structure (a final
    encoder layer norm means pre-norm), as transformers itself builds it;
  * BERT/RoBERTa configs may lack `position_embedding_type`: "absolute", transformers' own default;
  * T5: transformers 5 forces `tie_word_embeddings=True` and keeps the real flag as `scale_decoder_outputs`,
    which the converter must read to scale the decoder outputs (or not: T5 v1.1, flan-t5);
  * a vocabulary smaller than the embedding matrix is padded with unused names, and repeated names are made
    unique (CTranslate2 maps names to ids);
  * Marian: the converter starts the decoder from a zero vector, assuming <pad>'s embedding is zero; where
    it is not, <pad> is kept and the decoder starts from it, as transformers does.

The only module of the ct2 backend that imports torch and transformers (through the converter)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger("tfx")


def convert(snapshot: Path, out_dir: Path, quantization: str, trust_remote_code: bool = False, verbose: bool = False) -> None:
    """Convert the transformers model in `snapshot` into `out_dir` (which may exist and be empty)."""
    from tfx.ct2 import require

    require()
    _quiet(verbose)
    converter = _converter_class()(str(snapshot), trust_remote_code=trust_remote_code)
    converter.convert(str(out_dir), quantization=quantization, force=True)


def _quiet(verbose: bool) -> None:
    import transformers

    if verbose:
        return
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")


def _converter_class():
    from ctranslate2.converters import TransformersConverter

    class TfxConverter(TransformersConverter):
        """TransformersConverter with the transformers-5 shims; keeps the model it loaded for the spec fixes."""

        def load_model(self, model_class, model_name_or_path, **kwargs):
            model = super().load_model(model_class, model_name_or_path, **kwargs)
            fix_config(model)
            self._tfx_model = model
            return model

        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            self._tfx_tokenizer = super().load_tokenizer(tokenizer_class, model_name_or_path, **kwargs)
            return self._tfx_tokenizer

        def _load(self):
            spec = super()._load()
            model = getattr(self, "_tfx_model", None)
            if spec is not None and model is not None:
                if model.config.model_type == "marian":
                    keep_marian_pad(spec, model, self._tfx_tokenizer)
                fix_vocabularies(spec)
            self._tfx_model = self._tfx_tokenizer = None
            return spec

    return TfxConverter


def fix_config(model) -> None:
    """The config attributes the converter reads that transformers 5 no longer keeps."""
    config = model.config
    kind = config.model_type
    if kind in ("bart", "mbart") and not hasattr(config, "normalize_before"):
        encoder = model.get_encoder()
        config.normalize_before = getattr(encoder, "layer_norm", None) is not None
    if kind in ("bert", "roberta", "xlm-roberta", "camembert") and not hasattr(config, "position_embedding_type"):
        config.position_embedding_type = "absolute"
    if kind in ("t5", "mt5") and hasattr(config, "scale_decoder_outputs"):
        # read by the converter only to decide the output scaling; the loaded weights are already tied
        config.tie_word_embeddings = bool(config.scale_decoder_outputs)


def _vocabulary_lists(spec) -> list[tuple[list[str], int]]:
    """(registered token list, the size the weights expect) for each vocabulary of the spec, once each."""
    pairs = []
    if hasattr(spec, "_vocabularies"):  # sequence-to-sequence: source and target lists
        for name, size_of in (("source", spec.get_source_vocabulary_size), ("target", spec.get_target_vocabulary_size)):
            sizes = size_of()
            sizes = sizes if isinstance(sizes, list) else [sizes]
            pairs += list(zip(spec._vocabularies[name], sizes))
    elif hasattr(spec, "_vocabulary"):
        pairs.append((spec._vocabulary, spec.get_vocabulary_size()))
    seen, unique = set(), []
    for tokens, size in pairs:
        if id(tokens) not in seen:
            seen.add(id(tokens))
            unique.append((tokens, size))
    return unique


def fix_vocabularies(spec) -> None:
    """Pad each vocabulary to its embedding's rows and make repeated names unique, in place."""
    for tokens, size in _vocabulary_lists(spec):
        names: set[str] = set()
        for i, token in enumerate(tokens):
            if token in names:
                tokens[i] = f"<tfx_repeated_{i}>"
            names.add(tokens[i])
        tokens.extend(f"<tfx_unused_{i}>" for i in range(len(tokens), size))


def keep_marian_pad(spec, model, tokenizer) -> None:
    """Start the decoder from <pad>'s own embedding when it is not zero (the converter assumes it is)."""
    pad = model.config.pad_token_id
    weight = model.get_decoder().embed_tokens.weight
    if pad is None or pad != weight.shape[0] - 1 or float(weight[pad].abs().sum()) == 0.0:
        return
    log.info("marian: <pad> embedding is not zero; the decoder starts from <pad>")
    spec.decoder.start_from_zero_embedding = False
    spec.encoder.embeddings[0].weight = model.get_encoder().embed_tokens.weight
    spec.decoder.embeddings.weight = weight
    spec.decoder.projection.weight = model.lm_head.weight
    bias = getattr(model, "final_logits_bias", None)
    if bias is not None and bias.nonzero().numel() != 0:
        spec.decoder.projection.bias = bias.squeeze()
    for tokens, _size in _vocabulary_lists(spec):
        if len(tokens) == pad:
            tokens.append(tokenizer.pad_token)
    spec.config.decoder_start_token = tokenizer.pad_token
