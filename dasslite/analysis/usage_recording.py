"""A trainer mixin that records which experts a router picks per class during a test evaluation (MoCoOp's prompt
experts, FSMoE's layer experts) and writes ``expert_usage.{json,csv,png}`` next to the results.

The model calls its ``routing_hook(routing)`` (a ``dasslite.prompting.routing.Routing``) once per evaluated batch;
the mixin remembers each test batch's labels and feeds both to an :class:`ExpertUsage`. It records only on the
test split, when ``OUTPUT_DIR`` is set and the method's ``EXPERT_USAGE`` key is on. The per-dataset summary
(``python -m dasslite.analysis.expert_usage``) then reads these files whatever the experts are.
"""
from __future__ import annotations

import os.path as osp
from typing import List

from .expert_usage import ExpertUsage


class ExpertUsageRecording:
    """Mix in before the trainer base; implement ``expert_names`` (one unique name per router slot)."""

    usage_title = "routing weight per class"

    def expert_names(self) -> List[str]:
        raise NotImplementedError

    def usage_extra(self) -> dict:
        """Extra fields stored in the JSON (beside the subsample and the seed)."""
        return {}

    def parse_batch_test(self, batch):
        input, label = super().parse_batch_test(batch)
        self._batch_labels = label
        return input, label

    def test(self, split=None):
        cfg = self.cfg
        if not self.method_cfg.EXPERT_USAGE or not cfg.OUTPUT_DIR or (split or cfg.TEST.SPLIT) != "test":
            return super().test(split)
        usage = ExpertUsage(list(self.dm.dataset.classnames), self.expert_names())
        self.model.routing_hook = lambda r: usage.update(self._batch_labels, r.indices, r.weights)
        try:
            result = super().test(split)
        finally:
            self.model.routing_hook = None
        extra = {"subsample_classes": cfg.DATASET.SUBSAMPLE_CLASSES, "seed": cfg.SEED, **self.usage_extra()}
        paths = usage.write(cfg.OUTPUT_DIR, title=f"{cfg.DATASET.NAME}: {self.usage_title}",
                            dataset=cfg.DATASET.NAME, extra=extra)
        print(f"Expert usage written to {', '.join(osp.basename(p) for p in paths)} in {cfg.OUTPUT_DIR}")
        load = usage.router_load()
        if load is not None:
            print(f"Router load: entropy {load['entropy']:.3f} (1 = even over {usage.num_experts} experts); busiest "
                  f"expert {load['busiest_expert']!r}: {100 * load['busiest_share']:.1f}% of the routing weight, in "
                  f"the top-{usage.top_k} of {100 * load['busiest_picked']:.1f}% of the images")
        return result
