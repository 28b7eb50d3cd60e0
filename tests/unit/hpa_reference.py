"""An independent, deliberately plain re-implementation of the Kubernetes HPA controller.

It follows the structure of pkg/controller/podautoscaler/horizontal.go (v1.27+) and
replica_calculator.go function by function, with the same mutable state the controller keeps
per HPA: a `recommendations` list and `scale_up_events` / `scale_down_events` lists whose
outdated entries are overwritten in place. It shares no code with scalekeeper.engine; the
differential test feeds both the same inputs and compares every step.

Only what a single External AverageValue metric needs is modelled (that is what the web
request-rate floor is): the replica calculation with the tolerance band, then
normalizeDesiredReplicasWithBehaviors. Time is a float of seconds instead of time.Now().
"""

from __future__ import annotations

import math

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


class ReferenceHPA:
    """One HPA object and the controller state kept for it.

    `behavior` is a dict shaped like the autoscaling/v2 API (camelCase keys, fully defaulted):
    {"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                 "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
     "scaleDown": {...}}
    """

    def __init__(self, min_replicas, max_replicas, target_average_value, tolerance, behavior):
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.target_average_value = target_average_value
        self.tolerance = tolerance
        self.behavior = behavior
        # Controller state, keyed by HPA in the real thing; one HPA here.
        self.recommendations = None  # list of [replicas, timestamp] once initialised
        self.scale_up_events = []  # list of [replica_change, timestamp, outdated]
        self.scale_down_events = []

    # ------------------------------------------------------------ replica_calculator.go

    def get_external_per_pod_metric_replicas(self, status_replicas, usage):
        replica_count = status_replicas
        if status_replicas == 0:
            # float64 division by zero gives +Inf (or NaN for 0/0) in Go, never an error.
            usage_ratio = math.nan if usage == 0 else math.inf
        else:
            usage_ratio = usage / (self.target_average_value * replica_count)
        within = (1.0 - self.tolerance) <= usage_ratio <= (1.0 + self.tolerance)
        if not within:
            replica_count = math.ceil(usage / self.target_average_value)
        return replica_count

    # ------------------------------------------------------------------ horizontal.go

    def record_initial_recommendation(self, current_replicas, now):
        if self.recommendations is None:
            self.recommendations = [[current_replicas, now]]

    def reconcile(self, current_replicas, metric_value, now):
        """One reconcileAutoscaler pass; returns the replicas the target has afterwards.

        `metric_value` None means the metric could not be fetched (an error from the
        metrics client), which with a single metric makes every metric invalid.
        """
        self.record_initial_recommendation(current_replicas, now)
        min_replicas = self.min_replicas
        rescale = True
        if current_replicas == 0 and min_replicas != 0:
            desired_replicas = 0
            rescale = False
        elif current_replicas > self.max_replicas:
            desired_replicas = self.max_replicas
        elif current_replicas < min_replicas:
            desired_replicas = min_replicas
        else:
            if metric_value is None:
                # computeReplicasForMetrics returns -1 and an error: nothing else happens.
                return current_replicas
            metric_desired = self.get_external_per_pod_metric_replicas(current_replicas, metric_value)
            desired_replicas = 0
            if metric_desired > desired_replicas:
                desired_replicas = metric_desired
            desired_replicas = self.normalize_desired_replicas_with_behaviors(
                current_replicas, desired_replicas, min_replicas, now
            )
            rescale = desired_replicas != current_replicas

        if rescale:
            self.store_scale_event(current_replicas, desired_replicas, now)
            return desired_replicas
        return current_replicas

    def normalize_desired_replicas_with_behaviors(self, current, prenormalized, min_replicas, now):
        stabilized = self.stabilize_recommendation_with_behaviors(current, prenormalized, now)
        return self.convert_desired_replicas_with_behavior_rate(current, stabilized, min_replicas, now)

    def stabilize_recommendation_with_behaviors(self, current, desired, now):
        up_recommendation = desired
        up_cutoff = now - self.behavior["scaleUp"]["stabilizationWindowSeconds"]
        down_recommendation = desired
        down_cutoff = now - self.behavior["scaleDown"]["stabilizationWindowSeconds"]
        found_old_sample = False
        old_sample_index = 0
        for i, rec in enumerate(self.recommendations):
            replicas, timestamp = rec
            if timestamp > up_cutoff:
                up_recommendation = min(replicas, up_recommendation)
            if timestamp > down_cutoff:
                down_recommendation = max(replicas, down_recommendation)
            if timestamp < up_cutoff and timestamp < down_cutoff:
                found_old_sample = True
                old_sample_index = i
        recommendation = current
        if recommendation < up_recommendation:
            recommendation = up_recommendation
        if recommendation > down_recommendation:
            recommendation = down_recommendation
        if found_old_sample:
            self.recommendations[old_sample_index] = [desired, now]
        else:
            self.recommendations.append([desired, now])
        return recommendation

    def convert_desired_replicas_with_behavior_rate(self, current, desired, min_replicas, now):
        if desired > current:
            scale_up_limit = calculate_scale_up_limit_with_scaling_rules(
                current, self.scale_up_events, self.scale_down_events, self.behavior["scaleUp"], now
            )
            if scale_up_limit < current:
                scale_up_limit = current
            maximum_allowed = self.max_replicas
            if maximum_allowed > scale_up_limit:
                maximum_allowed = scale_up_limit
            if desired > maximum_allowed:
                return maximum_allowed
        elif desired < current:
            scale_down_limit = calculate_scale_down_limit_with_behaviors(
                current, self.scale_up_events, self.scale_down_events, self.behavior["scaleDown"], now
            )
            if scale_down_limit > current:
                scale_down_limit = current
            minimum_allowed = min_replicas
            if minimum_allowed < scale_down_limit:
                minimum_allowed = scale_down_limit
            if desired < minimum_allowed:
                return minimum_allowed
        return desired

    def store_scale_event(self, prev_replicas, new_replicas, now):
        if new_replicas > prev_replicas:
            events = self.scale_up_events
            longest = get_longest_policy_period(self.behavior["scaleUp"])
            change = new_replicas - prev_replicas
        else:
            events = self.scale_down_events
            longest = get_longest_policy_period(self.behavior["scaleDown"])
            change = prev_replicas - new_replicas
        mark_scale_events_outdated(events, longest, now)
        found_old_sample = False
        old_sample_index = 0
        for i, event in enumerate(events):
            if event[2]:
                found_old_sample = True
                old_sample_index = i
        new_event = [change, now, False]
        if found_old_sample:
            events[old_sample_index] = new_event
        else:
            events.append(new_event)


def mark_scale_events_outdated(events, longest_policy_period, now):
    cutoff = now - longest_policy_period
    for event in events:
        if event[1] < cutoff:
            event[2] = True


def get_longest_policy_period(rules):
    longest = 0
    for policy in rules["policies"]:
        if policy["periodSeconds"] > longest:
            longest = policy["periodSeconds"]
    return longest


def get_replicas_change_per_period(period_seconds, events, now):
    cutoff = now - period_seconds
    replicas = 0
    for event in events:
        if event[1] > cutoff:
            replicas += event[0]
    return replicas


def calculate_scale_up_limit_with_scaling_rules(current, up_events, down_events, rules, now):
    if rules["selectPolicy"] == "Disabled":
        return current
    if rules["selectPolicy"] == "Min":
        result = INT32_MAX
        select = min
    else:
        result = INT32_MIN
        select = max
    for policy in rules["policies"]:
        added = get_replicas_change_per_period(policy["periodSeconds"], up_events, now)
        deleted = get_replicas_change_per_period(policy["periodSeconds"], down_events, now)
        period_start = current - added + deleted
        if policy["type"] == "Pods":
            proposed = period_start + policy["value"]
        else:
            proposed = math.ceil(float(period_start) * (1 + float(policy["value"]) / 100))
        result = select(result, proposed)
    return result


def calculate_scale_down_limit_with_behaviors(current, up_events, down_events, rules, now):
    if rules["selectPolicy"] == "Disabled":
        return current
    if rules["selectPolicy"] == "Min":
        result = INT32_MIN
        select = max
    else:
        result = INT32_MAX
        select = min
    for policy in rules["policies"]:
        added = get_replicas_change_per_period(policy["periodSeconds"], up_events, now)
        deleted = get_replicas_change_per_period(policy["periodSeconds"], down_events, now)
        period_start = current - added + deleted
        if policy["type"] == "Pods":
            proposed = period_start - policy["value"]
        else:
            # Go's int32(float64) conversion truncates toward zero.
            proposed = math.trunc(float(period_start) * (1 - float(policy["value"]) / 100))
        result = select(result, proposed)
    return result
