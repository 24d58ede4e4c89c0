"""Closed-loop evaluation: rollouts of a policy with its execution controller in a task, the
statistics that judge it, and the media that show it (book 16.8, 17.2.2, 17.7, 18.7).

  rollout    `rollout` (jitted, vmap over episodes, lax.scan over time) and `agent_step`, the
             policy + controller step a host-stepped simulator reuses; the `Rollouts` record
  metrics    success rate with its 95% Wilson interval, lengths, returns, outcomes, mode shares
  media      GIF grid of rollouts, trajectory overlay for the 2-D tasks
  evaluator  `evaluate`: all of it for one policy, written to eval.json and media files
"""

from core.evaluation.evaluator import evaluate, summary_text

__all__ = ["evaluate", "summary_text"]
