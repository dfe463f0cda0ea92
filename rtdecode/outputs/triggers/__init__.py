"""Closed-loop triggers: rules on the decoded stream (rules.py), where a trigger goes (sinks.py), and
the engine that ties them to the live loop and fails safe (engine.py)."""

from rtdecode.outputs.triggers.engine import TriggerEngine
from rtdecode.outputs.triggers.rules import CallableRule, LuminanceRule, MotionEnergyRule, Rule, SimilarityRule

__all__ = ["TriggerEngine", "Rule", "SimilarityRule", "LuminanceRule", "MotionEnergyRule", "CallableRule"]
