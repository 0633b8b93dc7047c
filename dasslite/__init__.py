"""dasslite: a Dassl-compatible engine for CLIP prompt learning (MoCoOp, FSMoE, pMoE and baselines)."""
__version__ = "0.1.0"
