"""Training stages: supervised fine-tuning (`sft`); the reward model and RL follow."""
