"""Frozen ViT experts with their own preprocessing, VPT-deep prompting across experts, dispatchers and heads (pMoE)."""
