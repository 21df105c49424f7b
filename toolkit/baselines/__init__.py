"""Baselines every recipe compares against: a fine-tuned encoder, few-shot prompting."""
