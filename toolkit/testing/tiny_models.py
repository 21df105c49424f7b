"""Tiny random models built from config and saved to disk, so tests (and benchmarks) never touch the Hub.

Sizes are hidden 32, 2 layers: big enough to exercise every code path (attention masks, padding,
generation, LoRA targets), small enough that a training step takes milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    ByT5Tokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

# A small corpus so the on-the-fly tokenizer knows real words from our datasets' domains.
_CORPUS = [
    "source: she go to school yesterday . candidates: she went to school yesterday .",
    "The answer is (a) math problem . So the answer is 42 . explain: predict: [label] [rationale]",
    "Der Hund läuft schnell nach Hause . The dog runs home quickly .",
    "name[The Eagle], eatType[coffee shop], food[French], priceRange[moderate], area[riverside]",
    "play the song by the beatles on spotify . intent: PlayMusic slots: artist=the beatles",
    "book a table for two at a restaurant in paris tonight . topic: sci.space rec.autos",
    "premise: a man plays a guitar . hypothesis: a person makes music . entailment neutral contradiction",
    "Jack had 8 apples and gave 3 away . How many are left ? ( 8.0 - 3.0 ) = 5",
    "this movie was great , i loved it . positive negative . world sports business sci/tech",
    "0 1 2 3 4 5 6 7 8 9 + - * / = ( ) . , ? ! : ; ' \" < > [ ] { } | _ @ # $ % & user assistant system",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(save_dir: str | Path | None = None):
    """Train a small byte-level BPE tokenizer offline and wrap it as a ``PreTrainedTokenizerFast``."""
    specials = ["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    if save_dir is not None:
        fast.save_pretrained(save_dir)
    return fast


def build_tiny_llama(save_dir: str | Path, *, for_classification: int | None = None) -> Path:
    """Save a 2-layer Llama (causal LM, or sequence classifier with ``for_classification`` labels)."""
    save_dir = Path(save_dir)
    tok = build_tokenizer(save_dir)
    dims = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=512, tie_word_embeddings=True, **dims, **ids)
    torch.manual_seed(0)
    if for_classification:
        config.num_labels = for_classification
        model = LlamaForSequenceClassification(config)
    else:
        model = LlamaForCausalLM(config)
        model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(save_dir)
    return save_dir


def build_tiny_t5(save_dir: str | Path) -> Path:
    """Save a 2-layer T5 with a ``ByT5Tokenizer`` (needs no vocabulary files)."""
    save_dir = Path(save_dir)
    tok = ByT5Tokenizer()
    tok.save_pretrained(save_dir)
    dims = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4)
    ids = dict(decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    config = T5Config(vocab_size=len(tok), **dims, **ids)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(save_dir)
    return save_dir


def build_tiny_bert(save_dir: str | Path, *, num_labels: int | None = None) -> Path:
    """Save a 2-layer BERT encoder (base model, or sequence classifier) with a WordPiece vocab."""
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    words = sorted({w for line in _CORPUS for w in line.lower().split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + [w for w in words if w not in vocab]
    tok = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    tok.save_pretrained(save_dir)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    if num_labels:
        config.num_labels = num_labels
        BertForSequenceClassification(config).save_pretrained(save_dir)
    else:
        BertModel(config).save_pretrained(save_dir)
    return save_dir
