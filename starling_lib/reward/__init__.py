"""Reward models: listwise data collation, training with K-wise or pairwise losses, metrics, theory.

- ``collate``: all K answers of a prompt in one batch, rendered with the reward model's chat template.
- ``train``: ``transformers.Trainer`` subclass with ``loss_type`` kwise | pairwise | adjacent.
- ``metrics``: pairwise / adjacent / top-1 accuracy and Kendall τ against a ranking (and gold).
- ``theory``: linear rewards on random features; the K-wise MLE vs the split-pairs MLE.
- ``starling_rm``: the Starling-RM-7B-alpha checkpoint format (Llama-2 trunk + ``v_head``).
- ``bench``: the Starling authors' reward-model benchmark (human preference, truthfulness, safety,
  verbosity): loaders, scoring, metrics with bootstrap intervals, length bias (``starling rm bench``).
- ``study``, ``findings``, ``figures``: what notebooks 02 and 05 compute, say and draw (one call per cell).
"""
