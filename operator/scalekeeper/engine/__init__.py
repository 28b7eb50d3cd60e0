"""The decision engine: pure functions on its own types, from a target's proposal, limits and history
to its replica count, with every HPA rule (tolerance, stabilization windows, rate limits) applied.

No I/O, no clock, no state between calls: whatever must survive a cycle is in the returned
`TargetHistory`, which the caller stores and hands back. The tiers (../tiers/) turn a spec and its
metric samples into the engine's inputs; ../decision.py runs it for a whole policy.

Modules:
  types     frozen value types (EffectiveBehavior, ScalingRules, TargetHistory, Proposal, TargetPlan, ...)
  rules     the HPA's behavior normalization for one target (`decide_target`, `decide_plan`)
  sizing    raw recommendations from metric readings (by rate, and a queue's workers)
  forecast  the opt-in seasonal forecast that can raise a recommendation ahead of a known rise
  budget    the connection budget that holds scale-ups back across tiers
  claims    which policy sizes a workload several policies name
"""
