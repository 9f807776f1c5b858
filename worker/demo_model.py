"""Build the tiny demo model: small Llama config, random weights, tokenizer trained locally.

THE DEMO MODEL PRODUCES MEANINGLESS TEXT. It exists because this project's machines have no
model hub: it lets the worker, the proxy and the tests run the real loading and generation code
(`from_pretrained` on a local folder, `generate`, chat templates) end to end. Point the worker
at a real model (`--model Qwen/Qwen2.5-0.5B-Instruct` or a local path) for real answers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEMO_NAME = "sprout-demo-tiny"
DEFAULT_DIR = Path("var/models") / DEMO_NAME
CORPUS = Path(__file__).with_name("corpus") / "demo.txt"

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}{% endif %}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_demo_model(out_dir: Path, *, seed: int = 0, vocab_size: int = 384,
                     hidden_size: int = 64, layers: int = 2,
                     initializer_range: float = 0.02) -> Path:
    """Train a byte-level BPE tokenizer on the local corpus and save a random tiny Llama."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>",
                "<|developer|>", "<|tool|>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train([str(CORPUS)], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        pad_token="<pad>",
    )
    fast.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, initializer_range=initializer_range,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    (out_dir / "SPROUT_DEMO.json").write_text(json.dumps({
        "warning": "random weights: this model produces meaningless text",
        "built_by": "worker.demo_model", "seed": seed,
    }, indent=2))
    return out_dir


def main() -> None:
    """`python -m worker.demo_model --out DIR`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(build_demo_model(args.out, seed=args.seed))


if __name__ == "__main__":
    main()
