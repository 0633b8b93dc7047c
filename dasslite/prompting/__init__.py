"""Shared prompt-learning pieces: config nodes, CLIP classifiers, the context prompt learner, the base trainer."""
