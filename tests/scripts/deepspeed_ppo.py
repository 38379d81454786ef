"""Three PPO updates of a tiny GPT-2 on a token-count reward, with or without DeepSpeed.

    accelerate launch --config_file ZERO2.yaml --num_processes 1 tests/scripts/deepspeed_ppo.py OUT_DIR
    python tests/scripts/deepspeed_ppo.py OUT_DIR               (the same run without DeepSpeed)

Writes OUT_DIR/result.pt: the update history, the initial and final policy and the final value parameters,
the distributed type and the DeepSpeed config the engine was built with. A second run into an OUT_DIR that
holds only an earlier checkpoint resumes from it, so a test can compare ZeRO-2 with plain training and an
interrupted ZeRO-2 run with an uninterrupted one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate.state import AcceleratorState

from policy.ppo import train_ppo
from tests.test_ppo import count_e, make_models, small_cfg, word_prompts, word_tokenizer


def main() -> None:
    out = Path(sys.argv[1])
    tok, prompts = word_tokenizer(), word_prompts()
    policy, ref, value = make_models(tok)
    init = {k: v.detach().float().clone() for k, v in policy.state_dict().items()}
    # 8 rollouts per update in micro-batches of 4 (DeepSpeed accumulates 2), clipped, 3 updates.
    cfg = small_cfg(total_episodes=24, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                    local_rollout_forward_batch_size=8, num_ppo_epochs=2, save_every=1, keep_checkpoints=3,
                    max_grad_norm=0.5, learning_rate=3e-3)
    result = train_ppo(policy, ref, value, tok, prompts, count_e, cfg, out / "ppo")
    state = AcceleratorState()
    plugin = state.deepspeed_plugin
    torch.save(
        {"history": result.history, "init": init, "distributed_type": str(state.distributed_type),
         "deepspeed_config": dict(plugin.deepspeed_config) if plugin is not None else None,
         "policy": {k: v.detach().float().cpu() for k, v in policy.state_dict().items()},
         "value": {k: v.detach().float().cpu() for k, v in value.state_dict().items()}},
        out / "result.pt",
    )


if __name__ == "__main__":
    main()
