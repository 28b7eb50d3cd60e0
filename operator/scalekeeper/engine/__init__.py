"""The decision engine: pure functions from (spec, observations, history, now) to replica counts.

No I/O, no clock, no state between calls: whatever must survive a cycle is in the returned
`TargetHistory`, which the caller stores and hands back.

Modules:
  types   frozen value types (Behavior, ScalingRules, TargetHistory, Proposal, TargetDecision, ...)
  rules   the HPA's behavior normalization for one target (`decide_target`)
  sizing  raw recommendations per tier from metric readings (web, workers, read replicas)
  forecast  the opt-in seasonal forecast that can raise a recommendation ahead of a known rise
  decide  the policy-level `decide(spec, observed, samples, histories, now)`
"""
