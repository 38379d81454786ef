"""The special tokens every tokenizer here carries: one EOS and a distinct pad.

Below both `reward_model/` and `policy/`, which each make sure a loaded tokenizer has them. Why distinct:
pad == eos makes a sequence-classification model read the token before a trailing EOS, and makes SFT stop
learning to emit EOS.
"""

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
